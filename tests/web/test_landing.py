"""The landing page of a share link: the right button per phone, its language, the
operator's brand and artwork, and honesty about voided, expired and dev-mode passes."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import httpx
import pytest

from conftest import TEMPLATE_JSON
from factories import IssuedPass
from passhouse import devmode
from passhouse.bootstrap import Runtime
from passhouse.web import landing
from passhouse.web.app import create_app

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
ANDROID = (
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
DESKTOP = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


async def share_path(admin: httpx.AsyncClient, wallet_pass: IssuedPass) -> str:
    path = f"/api/v1/passes/{wallet_pass.pass_type_id}/{wallet_pass.serial_number}"
    return httpx.URL((await admin.get(path)).json()["urls"]["share"]).path


def buttons(page: str) -> list[str]:
    return re.findall(r'<a class="(?:add|download)[^"]*" href="[^"]*">(.*?)</a>', page)


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        (IPHONE, ["Add to Apple Wallet"]),
        (ANDROID, ["Download the pass (.pkpass) for a wallet app"]),
        (DESKTOP, ["Add to Apple Wallet"]),
    ],
)
async def test_each_phone_gets_its_button_and_a_computer_gets_a_qr_code(
    admin: httpx.AsyncClient,
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    agent: str,
    expected: list[str],
) -> None:
    path = await share_path(admin, wallet_pass)
    response = await client.get(path, headers={"User-Agent": agent})

    assert response.status_code == 200
    assert buttons(response.text) == expected
    assert ('class="qr"' in response.text) == (agent == DESKTOP)
    assert "Test café" in response.text  # the issuer
    assert 'class="pkp pkp-storeCard"' in response.text  # the preview
    assert "<script" not in response.text
    assert response.headers["vary"] == "Accept-Language, User-Agent"


def page_for(**changes: object) -> str:
    pass_json, files = devmode.DEMO_PASS_JSON | {"description": "Card"}, devmode.demo_assets()
    arguments: dict[str, object] = {
        "pass_json": pass_json,
        "files": files,
        "page_url": "https://passes.example/p/abc",
        "download_url": "/p/abc/pass.pkpass",
        "google_url": None,
        "voided": False,
        "dev_mode": False,
        "platform": "desktop",
        "language": "en",
        "brand": landing.Brand(),
        "now": NOW,
    }
    arguments.update(changes)
    return landing.landing_page(**arguments).html  # type: ignore[arg-type]


def test_the_google_button_appears_only_where_the_pass_has_a_google_link() -> None:
    google = "https://pay.google.com/gp/v/save/eyJ"
    assert buttons(page_for(platform="android", google_url=google)) == [
        "Add to Google Wallet",
        "Download the pass (.pkpass) for a wallet app",
    ]
    assert buttons(page_for(platform="desktop", google_url=google)) == [
        "Add to Apple Wallet",
        "Add to Google Wallet",
    ]
    assert buttons(page_for(platform="ios", google_url=google)) == ["Add to Apple Wallet"]
    assert "Google" not in page_for(platform="desktop")


@pytest.mark.parametrize(
    ("header", "language", "apple"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "de", "Zu Apple Wallet hinzufügen"),
        ("fr-CA", "fr", "Ajouter à Apple Wallet"),
        ("es-MX,es;q=0.9", "es", "Añadir a Apple Wallet"),
        ("it-IT,fr;q=0.5,de;q=0.7", "de", "Zu Apple Wallet hinzufügen"),
        ("ja", "en", "Add to Apple Wallet"),
        ("", "en", "Add to Apple Wallet"),
        ("de;q=0, fr;q=x", "en", "Add to Apple Wallet"),
    ],
)
async def test_the_page_speaks_the_browsers_language(
    admin: httpx.AsyncClient,
    client: httpx.AsyncClient,
    wallet_pass: IssuedPass,
    header: str,
    language: str,
    apple: str,
) -> None:
    path = await share_path(admin, wallet_pass)
    response = await client.get(path, headers={"Accept-Language": header, "User-Agent": IPHONE})
    assert f'<html lang="{language}">' in response.text
    assert response.headers["content-language"] == language
    assert buttons(response.text) == [apple]


def test_voided_expired_and_dev_passes_are_said_plainly() -> None:
    voided = page_for(voided=True, language="fr")
    assert "Ce pass n&#x27;est plus valable." in voided or "Ce pass n'est plus valable." in voided
    assert buttons(voided) == []
    expired = page_for(pass_json=TEMPLATE_JSON | {"expirationDate": "2026-06-30T10:00:00Z"})
    assert "This pass expired on June 30, 2026." in expired
    assert buttons(expired) == []
    dev = page_for(dev_mode=True, language="de")
    assert "Entwicklungszertifikat" in dev
    assert buttons(dev) == ["Zu Apple Wallet hinzufügen"]


async def test_the_operator_brand_and_official_artwork_come_from_settings(
    admin: httpx.AsyncClient,
    runtime: Runtime,
    wallet_pass: IssuedPass,
    tmp_path: Path,
) -> None:
    art = tmp_path / "buttons"
    art.mkdir()
    (art / "add-to-apple-wallet-en.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    logo = tmp_path / "logo.png"
    logo.write_bytes(devmode.solid_png(40, 20))
    settings = runtime.settings.model_copy(
        update={
            "landing_logo_file": logo,
            "landing_brand_name": "Example Tickets",
            "landing_background_color": "#102030",
            "landing_text_color": "#ffffff",
            "wallet_button_dir": art,
        }
    )
    branded = create_app(
        Runtime(settings=settings, database=runtime.database, sealer=runtime.sealer)
    )
    path = await share_path(admin, wallet_pass)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=branded), base_url="http://test"
    ) as client:
        page = (await client.get(path, headers={"User-Agent": IPHONE})).text
        german = (
            await client.get(path, headers={"User-Agent": IPHONE, "Accept-Language": "de"})
        ).text
    assert "<span>Example Tickets</span>" in page
    assert '<img src="data:image/png;base64,' in page
    assert "--page-bg:#102030;--page-fg:#ffffff" in page
    assert re.search(
        r'<a class="add art apple" href="[^"]+"><img src="data:image/svg\+xml;base64,[^"]+" '
        r'alt="Add to Apple Wallet"></a>',
        page,
    )
    # No German artwork: the English file, with the German words as its text alternative.
    assert 'alt="Zu Apple Wallet hinzufügen"' in german


def test_platforms_are_told_from_the_user_agent() -> None:
    assert landing.platform_of(IPHONE) == "ios"
    assert landing.platform_of("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)") == "ios"
    assert landing.platform_of(ANDROID) == "android"
    assert landing.platform_of(DESKTOP) == "desktop"
    assert landing.platform_of("") == "desktop"
