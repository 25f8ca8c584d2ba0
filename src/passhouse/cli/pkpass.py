"""`passhouse pkpass ...` and `passhouse certs ...`: build, verify and inspect passes offline."""

from __future__ import annotations

import functools
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from click._termui_impl import ProgressBar

from passhouse.pkpass.bundle import build_pkpass, build_pkpasses, verify_pkpass
from passhouse.pkpass.certs import check_credentials_in_detail, load_p12
from passhouse.pkpass.devcerts import make_dev_credentials
from passhouse.pkpass.errors import PkpassError
from passhouse.pkpass.json_input import JsonRejected, parse_json
from passhouse.pkpass.report import Report
from passhouse.pkpass.signing import PassSigner
from passhouse.pkpass.template import Template, set_data_path

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _user_errors(command: Callable[P, R]) -> Callable[P, R]:
    # A user error is one sentence on stderr and exit status 1, never a traceback.
    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except PkpassError as error:
            raise click.ClickException(error.message) from None
        except OSError as error:
            raise click.ClickException(f"{error.filename or 'file'}: {error.strerror}") from None

    return wrapper


def _password(value: str | None) -> bytes | None:
    return value.encode() if value is not None else None


def _progress(items: Sequence[T], label: str) -> ProgressBar[T]:
    # On stderr: stdout keeps only the result lines scripts read. Off a terminal click
    # prints the label once and no bar.
    return click.progressbar(items, label=label, file=sys.stderr)


def _print_report(report: Report) -> None:
    for message in report.errors:
        click.echo(f"error: {message}")
    for message in report.warnings:
        click.echo(f"warning: {message}")


def _signing_options(command: Callable[P, R]) -> Callable[P, R]:
    options = [
        click.option("--cert", type=_FILE, help="Pass type certificate (PEM or DER)."),
        click.option("--key", type=_FILE, help="Its private key (PEM, may be encrypted)."),
        click.option("--wwdr", type=_FILE, help="Apple WWDR intermediate certificate (G4)."),
        click.option("--p12", type=_FILE, help="Certificate and key exported as .p12."),
        click.option(
            "--password",
            envvar="PASSHOUSE_CERT_PASSWORD",
            help="Password of the key or .p12 (or env PASSHOUSE_CERT_PASSWORD).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _load_signer(
    cert: Path | None,
    key: Path | None,
    wwdr: Path | None,
    p12: Path | None,
    password: str | None,
) -> PassSigner:
    wwdr_pem = wwdr.read_bytes() if wwdr else None
    if p12 is not None:
        return PassSigner.from_p12(p12.read_bytes(), _password(password), wwdr_pem)
    if cert is None or key is None:
        raise click.UsageError("Give --cert and --key (and --wwdr), or --p12.")
    if wwdr_pem is None:
        raise click.UsageError(
            "Give --wwdr: passes signed without Apple's WWDR intermediate do not install."
        )
    return PassSigner.from_pem(
        cert.read_bytes(), key.read_bytes(), wwdr_pem, password=_password(password)
    )


def _load_template(path: Path) -> Template:
    if path.is_dir():
        return Template.from_directory(path)
    return Template.from_zip(path.read_bytes(), name=path.stem)


def _load_data(path: Path | None, assignments: tuple[str, ...]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = [{}]
    if path is not None:
        try:
            loaded = parse_json(path.read_bytes())
        except JsonRejected as error:
            raise PkpassError(f"{path}: {error.message}") from None
        except ValueError as error:
            raise PkpassError(f"{path}: not valid JSON ({error}).") from None
        items = loaded if isinstance(loaded, list) else [loaded]
        if not items or not all(isinstance(item, dict) for item in items):
            raise PkpassError(f"{path}: give a JSON object, or a list of objects (one per pass).")
        records = items
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep:
            raise click.BadParameter(f"{assignment!r} is not NAME=VALUE", param_hint="--set")
        for record in records:
            set_data_path(record, name, value)
    return records


@click.group("pkpass")
def pkpass_group() -> None:
    """Build and verify .pkpass files from templates."""


@pkpass_group.command("build")
@click.argument("template", type=click.Path(exists=True, path_type=Path))
@click.option("--data", "data_file", type=_FILE, help="JSON object (or list of up to 10).")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set one value (a.b=x sets a nested one).",
)
@click.option(
    "--serial",
    help="serialNumber of the pass (default: the template's, else a random one).",
)
@_signing_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Output .pkpass (or .pkpasses when the data is a list).",
)
@_user_errors
def build_command(
    template: Path,
    data_file: Path | None,
    assignments: tuple[str, ...],
    serial: str | None,
    cert: Path | None,
    key: Path | None,
    wwdr: Path | None,
    p12: Path | None,
    password: str | None,
    output: Path,
) -> None:
    """Render TEMPLATE (a folder or zip) with data and write a signed pass.

    As the server does, a template without passTypeIdentifier and teamIdentifier gets
    them from the certificate; the serial comes from --serial, the template, or is made up.
    """
    signer = _load_signer(cert, key, wwdr, p12, password)
    loaded = _load_template(template)
    template_report = loaded.check()
    if template_report.errors:
        _print_report(template_report)
        raise click.ClickException(f'Template "{loaded.name}" has errors; fix them first.')
    records = _load_data(data_file, assignments)
    if serial is not None and len(records) > 1:
        raise click.UsageError("--serial names one pass; leave it out for a list of data.")
    passes = []
    generated = []
    with _progress(records, "signing passes") as bar:
        for record in bar:
            pass_json, assets = loaded.render(record)
            # A template that names its own pass type keeps it: a mismatch with the
            # certificate is then reported, not silently signed for another pass type.
            pass_json.setdefault("passTypeIdentifier", signer.pass_type_id)
            pass_json.setdefault("teamIdentifier", signer.team_id)
            if serial is not None:
                pass_json["serialNumber"] = serial
            elif not pass_json.get("serialNumber"):
                pass_json["serialNumber"] = secrets.token_hex(8)
                generated.append(pass_json["serialNumber"])
            passes.append(build_pkpass(pass_json, assets, signer))
    for warning in template_report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if len(passes) == 1 and output.suffix != ".pkpasses":
        output.write_bytes(passes[0])
    else:
        output.write_bytes(build_pkpasses(passes))
    click.echo(f"wrote {output} ({len(passes)} pass{'es' if len(passes) > 1 else ''})")
    if generated:
        click.echo(f"generated serial numbers: {', '.join(generated)}")


@pkpass_group.command("bundle")
@click.argument("passes", type=_FILE, nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@_user_errors
def bundle_command(passes: tuple[Path, ...], output: Path) -> None:
    """Bundle up to 10 .pkpass files into one .pkpasses file."""
    contents = []
    with _progress(passes, "reading passes") as bar:
        for path in bar:
            contents.append(path.read_bytes())
    output.write_bytes(build_pkpasses(contents))
    click.echo(f"wrote {output} ({len(passes)} passes)")


@pkpass_group.command("verify")
@click.argument("file", type=_FILE)
@click.option("--ca", type=_FILE, help="Root certificate to check the chain against.")
@_user_errors
def verify_command(file: Path, ca: Path | None) -> None:
    """Check a .pkpass: layout, manifest, signature, certificates, pass.json, images."""
    report = verify_pkpass(file.read_bytes(), ca_pem=ca.read_bytes() if ca else None)
    _print_report(report)
    if report.errors:
        raise click.ClickException(f"{file} is not a valid pass ({len(report.errors)} error(s)).")
    click.echo(f"{file}: valid pass ({len(report.warnings)} warning(s))")


@pkpass_group.command("check")
@click.argument("template", type=click.Path(exists=True, path_type=Path))
@_user_errors
def check_command(template: Path) -> None:
    """Check a template (icon, images, localizations) and list its placeholders."""
    loaded = _load_template(template)
    report = loaded.check()
    _print_report(report)
    placeholders = ", ".join(sorted(loaded.placeholders())) or "none"
    click.echo(f"placeholders: {placeholders}")
    if report.errors:
        raise click.ClickException(f'Template "{loaded.name}" has {len(report.errors)} error(s).')


@click.group("certs")
def certs_group() -> None:
    """Inspect pass type certificates."""


@certs_group.command("check")
@_signing_options
@click.option("--ca", type=_FILE, help="Root certificate to check the WWDR certificate against.")
@_user_errors
def certs_check_command(
    cert: Path | None,
    key: Path | None,
    wwdr: Path | None,
    p12: Path | None,
    password: str | None,
    ca: Path | None,
) -> None:
    """Show what a pass type certificate is for and whether it can sign passes."""
    key_password = _password(password)
    key_pem: bytes | None
    wwdr_pem: bytes | None
    if p12 is not None:
        cert_pem, key_pem, chain_pem = load_p12(p12.read_bytes(), key_password)
        wwdr_pem = wwdr.read_bytes() if wwdr else chain_pem
        key_password = None
    elif cert is not None:
        cert_pem = cert.read_bytes()
        key_pem = key.read_bytes() if key else None
        wwdr_pem = wwdr.read_bytes() if wwdr else None
    else:
        raise click.UsageError("Give --p12 FILE, or --cert FILE (with --key and --wwdr).")
    result = check_credentials_in_detail(
        cert_pem, key_pem, wwdr_pem, password=key_password, ca_pem=ca.read_bytes() if ca else None
    )

    def yes_no(value: bool | None) -> str:
        return "not checked" if value is None else ("yes" if value else "NO")

    if result.info is not None:
        info = result.info
        click.echo(f"pass type id:   {info.pass_type_id or '(none)'}")
        click.echo(f"team id:        {info.team_id or '(none)'}")
        click.echo(f"subject:        {info.subject}")
        click.echo(f"issuer:         {info.issuer}")
        click.echo(f"valid from:     {info.not_before:%Y-%m-%d %H:%M} UTC")
        click.echo(f"valid until:    {info.not_after:%Y-%m-%d %H:%M} UTC")
    click.echo(f"key matches:    {yes_no(result.key_matches)}")
    click.echo(f"chain verifies: {yes_no(result.chain_verifies)}")
    click.echo(f"WWDR:           {result.wwdr_generation or 'unknown'} (G4 expected)")
    for problem in result.problems:
        click.echo(f"{problem.severity}: {problem.message}")
    if not result.ok:
        raise click.ClickException("The credentials cannot sign passes; see the errors above.")
    click.echo("ok: these credentials can sign passes")


@certs_group.command("dev")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--pass-type-id", default="pass.dev.passhouse", show_default=True)
@click.option("--team-id", default="DEVTEAM123", show_default=True)
@_user_errors
def certs_dev_command(directory: Path, pass_type_id: str, team_id: str) -> None:
    """Write throwaway dev certificates (root, WWDR-like, pass certificate) to DIRECTORY.

    Passes signed with them never install on a real iPhone.
    """
    credentials = make_dev_credentials(pass_type_id, team_id)
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in (
        ("root.pem", credentials.root_cert_pem),
        ("wwdr.pem", credentials.wwdr_cert_pem),
        ("cert.pem", credentials.cert_pem),
        ("key.pem", credentials.key_pem),
    ):
        (directory / name).write_bytes(data)
    (directory / "key.pem").chmod(0o600)
    click.echo(f"wrote root.pem, wwdr.pem, cert.pem and key.pem to {directory}")


def _attach() -> None:
    # passhouse.cli imports this module while it is being set up, so `main` already exists.
    from passhouse.cli import main

    main.add_command(pkpass_group)
    main.add_command(certs_group)


_attach()
