"""`passhouse pkpass ...` and `passhouse certs ...`: build, verify and inspect passes offline."""

from __future__ import annotations

import click


@click.group("pkpass")
def pkpass_group() -> None:
    """Build and verify .pkpass files from templates."""


@click.group("certs")
def certs_group() -> None:
    """Inspect pass type certificates."""


def _attach() -> None:
    # passhouse.cli imports this module while it is being set up, so `main` already exists.
    from passhouse.cli import main

    main.add_command(pkpass_group)
    main.add_command(certs_group)


_attach()
