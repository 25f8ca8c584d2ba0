"""The deployment files say only what passhouse really has: every command, option, setting
and health path they name exists, and their limits match the server's.

No container engine runs here: compose.yaml is checked for structure, the Dockerfile by
hadolint in .ci/run. Neither is built or started by these tests.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import httpx
import yaml

from passhouse.cli import main
from passhouse.settings import Settings

ROOT = Path(__file__).parent.parent
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY = ROOT / "deploy"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def passhouse_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if str(service.get("image", "")).startswith("passhouse")
    }


def command_problems(argv: list[str]) -> list[str]:
    """What in `passhouse ARGV` is not a real command or option, as 'command --option'."""
    command: click.Command = main
    words = list(argv)
    path: list[str] = []
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        name = words.pop(0)
        found = command.commands.get(name)
        if found is None:
            return [" ".join([*path, name])]
        command, path = found, [*path, name]
    known = {opt for param in command.params for opt in param.opts + param.secondary_opts}
    return [
        f"{' '.join(path)} {word.split('=')[0]}"
        for word in words
        if word.startswith("--") and word.split("=")[0] not in known
    ]


def test_compose_has_postgres_a_migration_web_and_a_worker() -> None:
    services = compose()["services"]

    assert set(services) >= {"postgres", "migrate", "web", "worker"}
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("web", "worker"):
        depends = services[name]["depends_on"]
        assert depends == {"migrate": {"condition": "service_completed_successfully"}}
    web = services["web"]["command"]
    assert web[0] == "serve"
    assert "--no-migrate" in web  # the migrate service ran them, once
    assert "--no-worker" in web  # pushes are the worker's
    assert services["worker"]["command"][0] == "worker"
    assert "postgresql://" in services["web"]["environment"]["PASSHOUSE_DATABASE_URL"]


def test_every_command_in_compose_and_the_units_is_a_real_one() -> None:
    commands = [service["command"] for service in passhouse_services().values()]
    for unit in (DEPLOY / "systemd").glob("*.service"):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart="))
                assert argv[0] == "/opt/passhouse/bin/passhouse", unit.name
                commands.append(argv[1:])
    dockerfile_cmd = re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.MULTILINE)
    assert dockerfile_cmd is not None
    commands.append(yaml.safe_load(dockerfile_cmd.group(1)))

    problems = [p for argv in commands for p in command_problems(argv)]

    assert len(commands) == 7
    assert problems == []


def test_a_made_up_command_or_option_is_caught() -> None:
    assert command_problems(["serve", "--host", "::1", "--hots", "x"]) == ["serve --hots"]
    assert command_problems(["pass", "lst"]) == ["pass lst"]
    assert command_problems(["template", "list", "--json"]) == []


def test_every_setting_named_in_compose_and_the_env_file_exists() -> None:
    names = set()
    for service in passhouse_services().values():
        names |= set(service["environment"])
    for line in (DEPLOY / "systemd" / "passhouse.env").read_text().splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("=", 1)[0])
    settings = {f"PASSHOUSE_{field.upper()}" for field in Settings.model_fields}

    assert names - settings == set()
    assert {"PASSHOUSE_TRUSTED_PROXIES", "PASSHOUSE_SECRET_KEY"} <= names


async def test_the_health_checks_probe_readiness_and_the_paths_answer(
    client: httpx.AsyncClient,
) -> None:
    web = compose()["services"]["web"]["healthcheck"]["test"]
    dockerfile = DOCKERFILE.read_text()
    image_check = re.search(r"^\s+CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert image_check is not None

    image_probe = yaml.safe_load(image_check.group(1))
    # The same probe; web runs no worker, so its readiness leaves the push check out.
    assert ["CMD", *image_probe] == [part.replace("?skip=push", "") for part in web]
    assert "'http://127.0.0.1:8000/readyz'" in image_probe[-1]
    assert "'http://127.0.0.1:8000/readyz?skip=push'" in web[-1]
    assert "/livez" in (ROOT / "docs" / "deployment.md").read_text()
    for path in ("/readyz?skip=push", "/livez"):
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text)


def test_the_image_runs_as_a_numeric_non_root_user_on_the_served_port() -> None:
    dockerfile = DOCKERFILE.read_text()

    assert re.search(r"^USER 10001:10001$", dockerfile, re.MULTILINE)
    assert dockerfile.count("FROM python:3.11-slim") == 2  # build stage, runtime stage
    assert "EXPOSE 8000" in dockerfile
    assert 'CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]' in dockerfile


def test_the_proxies_pass_the_bodies_passhouse_accepts_and_no_more() -> None:
    limit = Settings(_env_file=None).max_request_bytes
    nginx = (DEPLOY / "nginx" / "passhouse.conf").read_text()
    caddy = (DEPLOY / "caddy" / "Caddyfile").read_text()

    assert f"client_max_body_size {limit // 2**20}m;" in nginx
    assert f"max_size {limit // 2**20}MiB" in caddy
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in nginx
    assert "ssl_certificate " in nginx
    assert "proxy_read_timeout" in nginx


def test_docker_ignores_everything_but_what_the_image_is_built_from() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            copied |= set(line.split()[1:-1])

    assert "*" in lines
    assert kept == copied == {"pyproject.toml", "README.md", "LICENSE", "src"}
    for name in copied:
        assert (ROOT / name).exists(), name
