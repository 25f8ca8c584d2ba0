"""The admin API's OpenAPI description: complete, offline docs, and good enough for a
client generator nobody here wrote (openapi-python-client) to drive a real server."""

from __future__ import annotations

import base64
import contextlib
import importlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ADMIN_TOKEN, PASS_TYPE_ID, SECRET_KEY, TEMPLATE_JSON
from factories import IssuedPass
from passhouse import devmode
from passhouse.pkpass.bundle import PKPASS_MEDIA_TYPE

METHODS = ("get", "put", "post", "delete", "patch")


async def spec_of(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = response.json()
    return spec


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


async def test_every_admin_operation_needs_the_bearer_key_and_says_so(
    client: httpx.AsyncClient,
) -> None:
    spec = await spec_of(client)
    schemes = spec["components"]["securitySchemes"]
    assert schemes == {"apiKey": {"type": "http", "scheme": "bearer", "description": ANY_TEXT}}
    found = operations(spec)
    assert len(found) >= 20
    for path, method, operation in found:
        assert operation.get("security") == [{"apiKey": []}], (method, path)
        response = await client.request(method.upper(), path.replace("{", "x").replace("}", ""))
        assert response.status_code == 401, (method, path)


class _AnyText:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and len(other) > 10


ANY_TEXT: Any = _AnyText()


def _free_text(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The string schemas in a parameter's schema that take any text (no enum, no format)."""
    branches = schema.get("anyOf", [schema])
    return [
        branch
        for branch in branches
        if branch.get("type") == "string" and "enum" not in branch and "format" not in branch
    ]


async def test_every_operation_documents_its_answers_and_parameters(
    client: httpx.AsyncClient,
) -> None:
    spec = await spec_of(client)
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    takes_nul: list[str] = []
    for path, method, operation in operations(spec):
        where = f"{method.upper()} {path}"
        assert operation.get("description"), where
        assert operation["operationId"].isidentifier(), where
        responses = operation["responses"]
        successes = [code for code in responses if code.startswith("2")]
        assert successes, where
        for code in successes:
            if code == "204":
                assert "content" not in responses[code], where
                continue
            content = responses[code]["content"]
            (media_type,) = content
            schema = content[media_type]["schema"]
            if media_type == PKPASS_MEDIA_TYPE:
                assert schema == {"type": "string", "format": "binary"}, where
            else:
                assert media_type == "application/json", where
                assert "$ref" in schema, where
        for code in ("400", "401", "422"):
            assert responses[code]["content"]["application/json"]["schema"] == error_ref, where
        for parameter in operation.get("parameters", []):
            assert parameter.get("description"), (where, parameter["name"])
            assert parameter.get("examples") or parameter["schema"].get("examples"), where
            # The edge refuses a URL holding NUL (400): the schema must not allow one.
            if any("pattern" not in text for text in _free_text(parameter["schema"])):
                takes_nul.append(f"{where} {parameter['name']}")
        if "requestBody" in operation:
            assert {"400", "413"} <= set(responses), where
    assert takes_nul == [], "\n".join(takes_nul)


async def test_the_spec_describes_the_admin_api_only(client: httpx.AsyncClient) -> None:
    """The PassKit device endpoints follow Apple's protocol (apple-wallet.md) and the /v1
    routes PassNinja's: each is described by its owner, so neither is in this spec."""
    spec = await spec_of(client)
    assert all(path.startswith("/api/v1/") for path in spec["paths"])


async def test_a_405_allows_every_method_the_path_has(
    admin: httpx.AsyncClient, template: str
) -> None:
    cases = {
        ("OPTIONS", f"/api/v1/templates/{template}"): "DELETE, GET, PUT",
        ("PATCH", "/api/v1/templates"): "GET, POST",
        ("GET", "/api/v1/templates/upload"): "POST",
        ("POST", f"/api/v1/passes/{PASS_TYPE_ID}/s1"): "DELETE, GET, PATCH, PUT",
    }
    for (method, path), allow in cases.items():
        response = await admin.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == allow, (method, path)
        assert response.json()["error"]["code"] == "method_not_allowed"


async def test_post_void_voids_the_pass(admin: httpx.AsyncClient, wallet_pass: IssuedPass) -> None:
    path = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    first = await admin.post(f"{path}/void")
    again = await admin.post(f"{path}/void")
    assert first.status_code == 200
    assert (first.json()["voided"], first.json()["changed"]) == (True, True)
    assert again.json()["changed"] is False
    assert (await admin.get(path)).json()["voided"] is True


async def test_the_docs_load_nothing_from_another_origin(client: httpx.AsyncClient) -> None:
    page = await client.get("/api/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    urls += re.findall(r"""url:\s*['"]([^'"]+)['"]""", page.text)
    assert urls
    assert not [url for url in urls if "//" in url], urls
    for url in urls:
        response = await client.get(url)
        assert response.status_code == 200, url
    script = await client.get("/api/docs/static/swagger-ui-bundle.js")
    assert "javascript" in script.headers["content-type"]
    assert len(script.content) > 100_000


# --- a generated client against a real server --------------------------------------------

GENERATOR_CONFIG = """\
post_hooks: []
content_type_overrides:
  application/vnd.apple.pkpass: application/octet-stream
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def generate_client(spec: bytes, folder: Path) -> Any:
    (folder / "openapi.json").write_bytes(spec)
    (folder / "generator.yaml").write_text(GENERATOR_CONFIG)
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("openapi-python-client")),
            "generate",
            "--path",
            str(folder / "openapi.json"),
            "--config",
            str(folder / "generator.yaml"),
            "--meta",
            "none",
            "--output-path",
            str(folder / "passhouse_api"),
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(folder))
    return importlib.import_module("passhouse_api")


@contextlib.contextmanager
def serving(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A real `passhouse serve` on loopback (no dev mode, no worker); its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSHOUSE_")}
    env |= {
        "PASSHOUSE_DATABASE_URL": database_url,
        "PASSHOUSE_DATA_DIR": str(tmp_path / "data"),
        "PASSHOUSE_ADMIN_TOKEN": ADMIN_TOKEN,
        "PASSHOUSE_SECRET_KEY": SECRET_KEY,
        "PASSHOUSE_PUBLIC_URL": base,
        "PASSHOUSE_DEV_MODE": "false",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "passhouse", "serve", "--port", str(port), "--no-worker"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        wait_until_up(base, process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
    output = log.read_text()
    assert "Traceback" not in output
    # The banner points at the dashboard and the docs.
    assert re.search(rf"dashboard: +{re.escape(base)}/dashboard\n", output), output
    assert re.search(rf"API docs: +{re.escape(base)}/api/docs\n", output), output


@pytest.mark.slow
def test_a_generated_client_makes_a_template_and_issues_updates_and_voids_a_pass(
    database_url: str, pass_type: str, tmp_path: Path
) -> None:
    with serving(database_url, tmp_path) as base:
        try:
            client_package = generate_client(
                httpx.get(f"{base}/api/openapi.json").content, tmp_path
            )
            run_the_client(client_package, base)
        finally:
            if str(tmp_path) in sys.path:
                sys.path.remove(str(tmp_path))
            for name in [name for name in sys.modules if name.startswith("passhouse_api")]:
                del sys.modules[name]


@pytest.mark.slow
async def test_swagger_ui_authorizes_and_calls_the_api_with_no_other_origin(
    database_url: str, template: str, tmp_path: Path
) -> None:
    try:
        import playwright.async_api as playwright_api
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the browser tests: playwright is not installed")
        pytest.skip("playwright is not installed (pip install -e '.[test,browser]')")
    with serving(database_url, tmp_path) as base:
        async with playwright_api.async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            )
            try:
                page = await browser.new_page()
                page.set_default_timeout(60_000)
                elsewhere: list[str] = []
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))

                async def only_this_origin(route: Any) -> None:
                    if route.request.url.startswith(base):
                        await route.continue_()
                    else:
                        elsewhere.append(route.request.url)
                        await route.abort()

                await page.route("**/*", only_this_origin)
                await page.goto(f"{base}/api/docs")
                await page.locator("button.authorize").first.click()
                await page.locator(".modal-ux input").first.fill(ADMIN_TOKEN)
                await page.locator(".modal-ux button.authorize").click()
                await page.locator(".modal-ux button.btn-done").click()
                await page.locator("#operations-templates-list_templates").click()
                await page.locator("#operations-templates-list_templates .try-out__btn").click()
                await page.locator("#operations-templates-list_templates .execute").click()
                body = page.locator("#operations-templates-list_templates .live-responses-table")
                await body.get_by_text('"card"').first.wait_for()
                status = body.locator("tr.response td.response-col_status").first
                assert (await status.inner_text()).strip() == "200"
            finally:
                await browser.close()
    assert elsewhere == []
    assert errors == []


def wait_until_up(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the server did not answer /healthz in time")


def run_the_client(package: Any, base: str) -> None:
    api = importlib.import_module("passhouse_api.api")
    models = importlib.import_module("passhouse_api.models")
    templates = importlib.import_module("passhouse_api.api.templates")
    passes = importlib.import_module("passhouse_api.api.passes")
    assert api is not None
    with (
        package.AuthenticatedClient(base_url=base, token=ADMIN_TOKEN) as client,
        package.Client(base_url=base) as anonymous,
    ):
        drive(client, anonymous, models, templates, passes)


def drive(client: Any, anonymous: Any, models: Any, templates: Any, passes: Any) -> None:
    assets = {name: base64.b64encode(data).decode() for name, data in devmode.demo_assets().items()}
    body = models.TemplateIn.from_dict(
        {"name": "client-card", "pass_type_id": PASS_TYPE_ID, "pass_json": TEMPLATE_JSON}
        | {"assets": assets}
    )
    created = importlib.import_module(f"{templates.__name__}.create_template").sync_detailed(
        client=client, body=body
    )
    assert created.status_code == 201, created.content
    assert isinstance(created.parsed, models.TemplateView)
    assert created.parsed.name == "client-card"

    issued = importlib.import_module(f"{passes.__name__}.issue_pass").sync_detailed(
        client=client,
        body=models.PassIn.from_dict(
            {"template": "client-card", "data": {"name": "Ada", "balance": 12.5}}
        ),
    )
    assert issued.status_code == 201, issued.content
    wallet_pass = issued.parsed
    assert isinstance(wallet_pass, models.PassView)
    ids = {"pass_type_id": wallet_pass.pass_type_id, "serial_number": wallet_pass.serial_number}

    updated = importlib.import_module(f"{passes.__name__}.patch_pass").sync(
        client=client, body=models.PassData.from_dict({"data": {"balance": 20}}), **ids
    )
    assert isinstance(updated, models.PassChanged)
    assert (updated.version, updated.changed) == (2, True)
    assert updated.data.to_dict() == {"name": "Ada", "balance": 20}

    pkpass = importlib.import_module(f"{passes.__name__}.download_pkpass").sync_detailed(
        client=client, **ids
    )
    assert pkpass.status_code == 200
    assert pkpass.headers["content-type"] == PKPASS_MEDIA_TYPE
    assert pkpass.content[:2] == b"PK"

    voided = importlib.import_module(f"{passes.__name__}.void_pass").sync(client=client, **ids)
    assert isinstance(voided, models.PassChanged)
    assert voided.voided is True

    missing = importlib.import_module(f"{passes.__name__}.get_pass").sync(
        client=client, pass_type_id=PASS_TYPE_ID, serial_number="nope"
    )
    assert isinstance(missing, models.ErrorBody)
    assert missing.error.code == "not_found"

    refused = importlib.import_module(f"{templates.__name__}.list_templates").sync(client=anonymous)
    assert isinstance(refused, models.ErrorBody)
    assert refused.error.code == "unauthorized"
