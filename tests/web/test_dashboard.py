"""The issuer dashboard: its files as served, then the whole flow in a real browser."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import socket
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from pydantic import SecretStr

from conftest import ADMIN_TOKEN, PASS_TYPE_ID, SECRET_KEY, TEMPLATE_JSON
from passhouse import devmode, issuing
from passhouse.bootstrap import Runtime
from passhouse.push.sender import PushResult
from passhouse.settings import Settings
from passhouse.storage import push_jobs
from passhouse.storage.database import Database
from passhouse.storage.sealing import Sealer
from passhouse.storage.tables import pass_types
from passhouse.web.app import create_app
from passhouse.worker import send_due_pushes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Set to a folder to keep a screenshot of every view the browser test visits.
SCREENSHOTS_ENV = "PASSHOUSE_DASHBOARD_SCREENSHOTS"
DEVICE = "a3c2f0e98b7d4c61a5e2d9f0b8c7a6e1"
PUSH_TOKEN = "5f0c" * 16


# --- the files as served -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/dashboard", "text/html; charset=utf-8"),
        ("/dashboard/static/dashboard.js", "text/javascript; charset=utf-8"),
        ("/dashboard/static/dashboard.css", "text/css; charset=utf-8"),
    ],
)
async def test_dashboard_files_are_served_with_their_type_and_a_strict_csp(
    client: httpx.AsyncClient, path: str, content_type: str
) -> None:
    response = await client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"  # no 'unsafe-inline', no remote origin
    assert policy["connect-src"] == "'self'"
    assert "http" not in response.headers["content-security-policy"]


async def test_the_page_loads_only_its_own_files_and_runs_nothing_inline(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/dashboard")).text

    assert '<script src="/dashboard/static/dashboard.js" defer></script>' in page
    assert page.count("<script") == 1
    assert "<style" not in page
    assert not re.search(r"\son[a-z]+\s*=", page)  # no inline event handlers
    assert "http://" not in page
    assert "https://" not in page


async def test_the_script_never_writes_html(client: httpx.AsyncClient) -> None:
    script = (await client.get("/dashboard/static/dashboard.js")).text

    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


async def test_the_dashboard_needs_no_api_key_and_is_not_in_the_api_schema(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/api/openapi.json")).json()

    assert (await client.get("/dashboard")).status_code == 200
    assert not [path for path in schema["paths"] if path.startswith("/dashboard")]


@pytest.mark.parametrize(
    "name", ["dashboard.html", "app.py", "dashboard.JS", "dashboard.js.map", ".dashboard.js"]
)
async def test_an_unknown_static_name_is_a_json_404(client: httpx.AsyncClient, name: str) -> None:
    response = await client.get(f"/dashboard/static/{name}")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "raw_path",
    [
        b"/dashboard/static/../dashboard.py",
        b"/dashboard/static/../../app.py",
        b"/dashboard/static/%2e%2e/dashboard.py",
        b"/dashboard/static/..%5cdashboard.py",
        b"/dashboard/static/....//dashboard.py",
        b"/dashboard/static/dashboard.js/../../../etc/passwd",
        b"/dashboard/static/%2fetc%2fpasswd",
        b"/dashboard/static//etc/passwd",
        b"/dashboard/static/",
    ],
)
async def test_path_traversal_finds_nothing(app: Any, raw_path: bytes) -> None:
    # Sent byte for byte: httpx would tidy the dots away before the server saw them.
    status, body = await _raw_get(app, raw_path)

    assert status in (400, 404)  # an encoded slash is refused (400) before routing
    assert b'"error"' in body
    assert b"import" not in body
    assert b"root:" not in body


def test_the_package_holds_every_file_the_page_names() -> None:
    static = Path(__file__).parents[2] / "src" / "passhouse" / "web" / "static"

    assert sorted(path.name for path in static.iterdir()) == [
        "dashboard.css",
        "dashboard.html",
        "dashboard.js",
    ]


async def _raw_get(app: Any, raw_path: bytes) -> tuple[int, bytes]:
    path = raw_path.decode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path.replace("%2e", ".").replace("%5c", "\\"),
        "raw_path": raw_path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"passes.example.test")],
        "client": ("127.0.0.1", 1234),
        "server": ("passes.example.test", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


# --- in a real browser -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server_url(settings: Settings) -> Iterator[str]:
    """The app under uvicorn on a free port, in a thread with its own event loop and its own
    engine on the test database (an engine's connections belong to one loop)."""
    port = _free_port()
    server_settings = settings.model_copy(
        update={"public_url": f"http://127.0.0.1:{port}", "admin_token": SecretStr(ADMIN_TOKEN)}
    )
    runtime = Runtime(
        settings=server_settings,
        database=Database(settings.database_url),
        sealer=Sealer(SECRET_KEY),
    )
    config = uvicorn.Config(
        create_app(runtime),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard-uvicorn", daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _browser_or_skip() -> Any:
    """playwright's API, or a skip on a machine without it; CI must run the browser tests."""
    problem = None
    try:
        import playwright.async_api as playwright_api
    except ImportError:
        problem = "playwright is not installed (pip install -e '.[test,browser]')"
    if not CHROMIUM.exists():
        problem = f"no Chromium at {CHROMIUM} (apt install chromium)"
    if problem is None:
        return playwright_api
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser tests: {problem}")
    pytest.skip(problem)


@pytest.fixture
async def browser_page(server_url: str) -> AsyncIterator[Any]:
    playwright_api = _browser_or_skip()
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(accept_downloads=True)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: _keep_console_error(message, errors))
            page.set_default_timeout(30_000)  # generous: 2 loaded cores run the whole suite
            yield page
            assert not errors, errors  # no script error and no CSP violation on the way
        finally:
            await browser.close()


def _keep_console_error(message: Any, errors: list[str]) -> None:
    # A 401 or 404 the page handles is logged by Chromium too; a CSP refusal is kept.
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        errors.append(message.text)


async def _shot(page: Any, name: str) -> None:
    folder = os.environ.get(SCREENSHOTS_ENV)
    if folder:
        await page.screenshot(path=str(Path(folder) / f"dashboard-{name}.png"), full_page=True)


async def _api_pass(admin: httpx.AsyncClient, template: str) -> dict[str, Any]:
    listing = (await admin.get("/api/v1/passes", params={"template": template})).json()
    assert len(listing["items"]) == 1
    item: dict[str, Any] = listing["items"][0]
    return item


def _template_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pass.json", json.dumps(TEMPLATE_JSON))
        for name, data in devmode.demo_assets().items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def _accept(dialog: Any) -> None:
    await dialog.accept()


def _nav(page: Any, name: str) -> Any:
    return page.locator("#nav").get_by_role("link", name=name, exact=True)


class _ApnsAcceptsEverything:
    """APNs, the one fake: every push is delivered."""

    async def send(
        self, push_token: str, pass_type_id: str, push_service_url: str = ""
    ) -> PushResult:
        return PushResult(200, latency=0.004)

    def stop_sending(self) -> None:
        pass

    async def forget_credentials(self, pass_type_id: str) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def _register_device(pkpass: bytes) -> None:
    """What Wallet does with a pass it has added: register at the pass's web service."""
    pass_json = _pass_json(pkpass)
    url = (
        f"{pass_json['webServiceURL']}/v1/devices/{DEVICE}/registrations/"
        f"{pass_json['passTypeIdentifier']}/{pass_json['serialNumber']}"
    )
    async with httpx.AsyncClient(trust_env=False) as http:
        response = await http.post(
            url,
            json={"pushToken": PUSH_TOKEN},
            headers={"Authorization": f"ApplePass {pass_json['authenticationToken']}"},
        )
    assert response.status_code == 201, response.text


def _pass_json(pkpass: bytes) -> dict[str, Any]:
    with zipfile.ZipFile(io.BytesIO(pkpass)) as archive:
        loaded: dict[str, Any] = json.loads(archive.read("pass.json"))
    return loaded


async def _assert_reads_cleanly(page: Any) -> None:
    """No placeholder of a missing value leaks into the page's text."""
    text = await page.locator("main").inner_text()
    leaked = re.findall(r"\b(?:null|undefined|NaN|Invalid Date)\b|\[object \w+\]|1970", text)
    assert not leaked, text
    assert "Something went wrong" not in text, text


async def _download(page: Any) -> bytes:
    async with page.expect_download() as download_info:
        await page.get_by_role("button", name="Download .pkpass").click()
    download = await download_info.value
    assert download.suggested_filename == "dash-0001.pkpass"
    return await asyncio.to_thread(Path(await download.path()).read_bytes)


async def _save(page: Any, data: str) -> None:
    await page.get_by_label("Data").fill(data)
    await page.get_by_role("button", name="Save data").click()


def _notice(page: Any, text: str) -> Any:
    return page.locator("main > .banner.note", has_text=text)


@pytest.mark.slow
async def test_an_issuer_signs_in_issues_edits_and_voids_a_pass_in_the_browser(
    browser_page: Any,
    server_url: str,
    admin: httpx.AsyncClient,
    client: httpx.AsyncClient,
    runtime: Runtime,
    template: str,
) -> None:
    page = browser_page
    page.on("dialog", _accept)
    refused_at_ms = int(time.time() * 1000) - 3_600_000
    async with runtime.database.transaction() as conn:
        await conn.execute(
            sa.update(pass_types).values(
                apns_error="BadCertificate", apns_error_at=refused_at_ms, dev_mode=True
            )
        )

    # A wrong key: the form stays, with the API's own message.
    await page.goto(f"{server_url}/dashboard")
    await page.get_by_label("API key").fill("not-the-key")
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("The API key is not valid.").wait_for()
    await _shot(page, "sign-in")

    await page.get_by_label("API key").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Overview").wait_for()
    alert = page.get_by_role("alert").filter(has_text="APNs rejected the certificate")
    assert "BadCertificate" in await alert.inner_text()
    assert "will not install on a real iPhone" in await page.locator("main").inner_text()
    assert "Queue depth" in await page.locator("main").inner_text()
    refused = page.locator(f'time[datetime^="{_iso_ms(refused_at_ms).removesuffix("Z")}"]')
    assert await refused.count() == 1  # the blocked pass type's refusal time
    await _assert_reads_cleanly(page)
    await _shot(page, "overview")
    async with runtime.database.transaction() as conn:  # the certificate was replaced
        await push_jobs.clear_apns_error(conn, PASS_TYPE_ID)

    # Issue a pass from the template.
    await _nav(page, "Passes").click()
    await page.get_by_role("heading", name="Passes").wait_for()
    await page.get_by_role("link", name="Issue a pass").click()
    await page.get_by_label("Template", exact=True).select_option(template)
    await page.get_by_label("Data").fill('{"name": "Ada <b>", "balance": 5}')
    await page.get_by_label("Serial number").fill("dash-0001")
    await _shot(page, "issue")
    await page.get_by_role("button", name="Issue pass").click()
    await page.get_by_role("heading", name="dash-0001").wait_for()

    issued = await _api_pass(admin, template)
    assert (issued["serial_number"], issued["version"], issued["voided"]) == ("dash-0001", 1, False)
    assert issued["data"] == {"name": "Ada <b>", "balance": 5}
    assert await page.locator("#pass-version").inner_text() == "1"
    await _assert_reads_cleanly(page)

    # Invalid JSON never reaches the API; an API refusal shows the API's message.
    await _save(page, "{not json")
    await page.get_by_role("alert").filter(has_text="not valid JSON").wait_for()

    # Edit its data: saving replaces it, so a key left out is removed; each save says so.
    await _save(page, '{"name": "Ada <b>", "balance": 42, "tier": "gold"}')
    await page.locator("#pass-version", has_text="2").wait_for()
    await _notice(page, "Saved as version 2.").wait_for()
    await _shot(page, "saved")
    await _save(page, '{"name": "Ada <b>", "balance": 42}')
    await page.locator("#pass-version", has_text="3").wait_for()
    await _notice(page, "Saved as version 3.").wait_for()
    await _save(page, '{"name": "Ada <b>", "balance": 42}')
    await _notice(page, "No change").wait_for()

    edited = await _api_pass(admin, template)
    assert edited["version"] == 3
    assert edited["data"] == {"name": "Ada <b>", "balance": 42}
    assert '"Ada <b>"' in await page.get_by_label("Data").input_value()

    # The signed file, through the authorised fetch; a device adds it and registers.
    pkpass = await _download(page)
    assert pkpass[:2] == b"PK"
    await _register_device(pkpass)

    # A change now reaches that device; the page lists the device and the push.
    await _save(page, '{"name": "Ada <b>", "balance": 50}')
    await _notice(page, "Saved as version 4.").wait_for()
    assert await send_due_pushes(runtime.database, _ApnsAcceptsEverything(), runtime.settings)
    await page.reload()
    await page.locator("main h1").wait_for()
    await _assert_reads_cleanly(page)  # not "Something went wrong: Invalid time value"
    registrations = (await admin.get(f"{_api_path(issued)}/registrations")).json()["items"]
    assert len(registrations) == 1
    devices = page.locator("table", has=page.get_by_role("columnheader", name="Registered"))
    device_row = devices.locator("tbody tr")
    assert await device_row.count() == 1
    assert registrations[0]["device_library_id"] in await device_row.inner_text()
    assert "Apple Wallet" in await device_row.inner_text()  # the app it registered from
    registered = device_row.locator(f'time[datetime="{registrations[0]["registered_at"]}"]')
    assert await registered.count() == 1
    pushes = page.locator("table", has=page.get_by_role("columnheader", name="Outcome"))
    push_row = pushes.locator("tbody tr")
    assert await push_row.count() == 1
    assert "delivered" in await push_row.inner_text()
    assert await push_row.locator("time").count() == 1
    await _shot(page, "pass")

    # Its share page offers the pass to a customer.
    share_url = await page.get_by_role("link", name="Share page").get_attribute("href")
    assert share_url.startswith(f"{server_url}/p/")
    await page.goto(share_url)
    await page.get_by_role("link", name="Add to Apple Wallet").wait_for()
    await _shot(page, "share")
    await page.go_back()
    await page.get_by_role("heading", name="dash-0001").wait_for()

    # Void it (the confirm dialog is accepted): nothing can be saved any more.
    await page.get_by_role("button", name="Void pass").click()
    await page.locator("#pass-status", has_text="voided").wait_for()
    await _assert_reads_cleanly(page)
    await _shot(page, "pass-voided")

    voided = await _api_pass(admin, template)
    assert (voided["voided"], voided["version"]) == (True, 5)
    assert await page.get_by_role("button", name="Save data").count() == 0
    assert '"balance": 50' in await page.locator("#pass-data").inner_text()

    await page.goto(share_url)
    await page.get_by_text("This pass is no longer valid").wait_for()
    assert await page.get_by_role("link", name="Add to Apple Wallet").count() == 0
    await _shot(page, "share-voided")
    await page.go_back()
    await page.get_by_role("heading", name="dash-0001").wait_for()

    # The list shows it; the other views render.
    await _nav(page, "Passes").click()
    await page.get_by_role("link", name="dash-0001").wait_for()
    await _assert_reads_cleanly(page)
    await _shot(page, "passes")
    await _nav(page, "Templates").click()
    await page.get_by_role("link", name=template, exact=True).click()
    await page.get_by_role("heading", name="pass.json").wait_for()
    assert '"organizationName"' in await page.locator("pre").inner_text()
    await _shot(page, "template")
    await _nav(page, "Templates").click()
    await page.get_by_role("heading", name="New template from a zip").wait_for()
    await _assert_reads_cleanly(page)
    await _shot(page, "templates")

    # Upload a template zip: a broken one shows the API's refusal, a good one is created.
    await page.get_by_label("Name").fill("uploaded")
    await page.get_by_label("Template zip").set_input_files(
        {"name": "broken.zip", "mimeType": "application/zip", "buffer": b"not a zip"}
    )
    await page.get_by_role("button", name="Upload template").click()
    refusal = page.locator("#template-upload").get_by_role("alert")  # next to its button
    await refusal.wait_for()
    assert await refusal.inner_text()
    assert (await admin.get("/api/v1/templates/uploaded")).status_code == 404

    # The same form again, as it stands after the refusal (once, the retry's click landed
    # in a gallery preview frame and no request went out).
    await page.get_by_label("Template zip").set_input_files(
        {"name": "card.zip", "mimeType": "application/zip", "buffer": _template_zip()}
    )
    await page.get_by_role("button", name="Upload template").click()
    await page.get_by_role("heading", name="uploaded", exact=True).wait_for()
    uploaded = (await admin.get("/api/v1/templates/uploaded")).json()
    assert "icon.png" in uploaded["assets"]
    assert uploaded["pass_json"]["organizationName"] == TEMPLATE_JSON["organizationName"]

    await client.post("/passkit/v1/log", json={"logs": ["<script>alert(1)</script> from a device"]})
    await _nav(page, "Device logs").click()
    await page.get_by_role("cell", name="<script>alert(1)</script> from a device").wait_for()
    await _assert_reads_cleanly(page)
    await _shot(page, "device-logs")

    await page.set_viewport_size({"width": 390, "height": 844})
    await _nav(page, "Overview").click()
    await page.get_by_role("heading", name="Overview").wait_for()
    await _shot(page, "overview-phone")
    await page.goto(f"{server_url}/dashboard#/passes/{PASS_TYPE_ID}/dash-0001")
    await page.get_by_role("heading", name="Recent pushes").wait_for()
    await _shot(page, "pass-phone")

    # Signing out forgets the key.
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_label("API key").wait_for()
    assert await page.evaluate("sessionStorage.length") == 0


@pytest.mark.slow
async def test_a_new_install_shows_every_page_without_errors(
    browser_page: Any, server_url: str, database: Database
) -> None:
    page = browser_page
    await page.goto(f"{server_url}/dashboard")
    await page.get_by_label("API key").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()

    await page.get_by_role("heading", name="Overview").wait_for()
    assert "No pass type yet" in await page.locator("main").inner_text()
    await _assert_reads_cleanly(page)
    await _shot(page, "empty-overview")
    for name, heading, hint in [
        ("Templates", "Templates", "No templates yet"),
        ("Passes", "Passes", "No passes yet"),
        ("Device logs", "Device logs", "No device has logged anything"),
    ]:
        await _nav(page, name).click()
        await page.get_by_role("heading", name=heading, exact=True).wait_for()
        assert hint in await page.locator("main").inner_text()
        await _assert_reads_cleanly(page)
        await _shot(page, f"empty-{name.lower().replace(' ', '-')}")
    await _nav(page, "Passes").click()
    await page.get_by_role("link", name="Issue a pass").click()
    await page.get_by_role("heading", name="Issue a pass").wait_for()
    assert "Create a template first" in await page.locator("main").inner_text()
    await _assert_reads_cleanly(page)
    await _shot(page, "empty-issue")

    await page.goto(f"{server_url}/dashboard#/no-such-page")
    await page.get_by_role("heading", name="Not found").wait_for()
    await page.get_by_role("link", name="Go to the overview").wait_for()
    await _shot(page, "not-found")
    response = await page.goto(f"{server_url}/p/no-such-share-link")
    assert response.status == 404
    await page.get_by_role("heading", name="Pass not found").wait_for()
    await _shot(page, "share-not-found")


def _api_path(wallet_pass: dict[str, Any]) -> str:
    return f"/api/v1/passes/{wallet_pass['pass_type_id']}/{wallet_pass['serial_number']}"


def _iso_ms(ms: int) -> str:
    return issuing.iso_time(ms // 1000)


async def test_the_issue_form_fills_dotted_placeholders_nested(
    browser_page: Any, server_url: str, admin: httpx.AsyncClient, template: str
) -> None:
    page = browser_page
    pass_json = json.loads(json.dumps(TEMPLATE_JSON))
    pass_json["storeCard"]["auxiliaryFields"] = [
        {"key": "seat", "label": "Seat", "value": "{{seat.section}}-{{ seat.number }}"}
    ]
    assets = {name: base64.b64encode(data).decode() for name, data in devmode.demo_assets().items()}
    created = await admin.post(
        "/api/v1/templates",
        json={"name": "seats", "pass_type_id": PASS_TYPE_ID, "pass_json": pass_json,
              "assets": assets},
    )  # fmt: skip
    assert created.status_code == 201, created.text

    await page.goto(f"{server_url}/dashboard#/passes/new?template=seats")
    await page.get_by_label("API key").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("heading", name="Issue a pass").wait_for()
    await page.get_by_label("Template", exact=True).select_option("seats")
    prefilled = json.loads(await page.get_by_label("Data").input_value())
    filled = {"name": "Ada", "balance": 1, "seat": {"section": "B", "number": 12}}
    await page.get_by_label("Data").fill(json.dumps(filled))
    await page.get_by_label("Serial number").fill("seat-0001")
    await page.get_by_role("button", name="Issue pass").click()
    await page.get_by_role("heading", name="seat-0001").wait_for()

    assert prefilled == {"name": "", "balance": "", "seat": {"section": "", "number": ""}}
    issued = await _api_pass(admin, "seats")
    assert issued["data"] == filled


async def test_an_expired_pass_shows_as_expired_in_the_list_and_on_its_page(
    browser_page: Any, server_url: str, admin: httpx.AsyncClient, pass_type: str
) -> None:
    page = browser_page
    assets = {name: base64.b64encode(data).decode() for name, data in devmode.demo_assets().items()}
    pass_json = {**TEMPLATE_JSON, "expirationDate": "{{expires}}"}
    created = await admin.post(
        "/api/v1/templates",
        json={"name": "dated", "pass_type_id": pass_type, "pass_json": pass_json, "assets": assets},
    )
    assert created.status_code == 201, created.text
    for serial, expires in [
        ("gone-1", "2020-01-01T00:00:00Z"),
        ("fresh-1", "2999-01-01T00:00:00Z"),
    ]:
        issued = await admin.post(
            "/api/v1/passes",
            json={"template": "dated", "serial_number": serial,
                  "data": {"name": "Ada", "balance": 1, "expires": expires}},
        )  # fmt: skip
        assert issued.status_code == 201, issued.text

    await page.goto(f"{server_url}/dashboard#/passes")
    await page.get_by_label("API key").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    rows = page.locator("tbody tr")
    await rows.filter(has_text="gone-1").locator(".pill", has_text="expired").wait_for()
    assert "active" in await rows.filter(has_text="fresh-1").inner_text()
    await page.get_by_role("link", name="gone-1").click()
    await page.locator("#pass-status", has_text="expired").wait_for()

    assert "This pass expired on 2020-01-01T00:00:00Z" in await page.locator("main").inner_text()
    assert await page.get_by_role("button", name="Void pass").is_enabled()
    await _assert_reads_cleanly(page)
    await _shot(page, "pass-expired")
