"""The `passhouse` command: one door into the same use cases as the admin API."""

from __future__ import annotations

import click

from passhouse import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="passhouse")
def main() -> None:
    """Issue Apple Wallet passes and keep every installed copy up to date."""


def _register_commands() -> None:
    # Each area adds its commands in its own module; imported here so `main` sees them all.
    from passhouse.cli import bulk as _bulk  # noqa: F401
    from passhouse.cli import google as _google  # noqa: F401
    from passhouse.cli import manage as _manage  # noqa: F401
    from passhouse.cli import pkpass as _pkpass  # noqa: F401
    from passhouse.cli import schedule as _schedule  # noqa: F401
    from passhouse.cli import server as _server  # noqa: F401
    from passhouse.cli import webhooks as _webhooks  # noqa: F401
    from passhouse.cli import worker as _worker  # noqa: F401


_register_commands()
