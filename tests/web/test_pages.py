"""Which clients get a page rather than the API's JSON error."""

from __future__ import annotations

import pytest

from passhouse.web.pages import prefers_html

CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
SAFARI = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.mark.parametrize("accept", [CHROME, SAFARI, FIREFOX, "text/html", "TEXT/HTML", "text/*"])
def test_a_browser_gets_a_page(accept: str) -> None:
    assert prefers_html(accept)


@pytest.mark.parametrize(
    "accept",
    [
        "",
        "*/*",
        "application/json",
        "application/json, text/html;q=0.5",
        "text/html;q=0.1, */*",
        "text/html;q=0, */*;q=0.1",
        "text/html;q=2",
        "text/html;q=oops",
        "application/*, text/*",
        ",;,;q=",
    ],
)
def test_a_client_that_asks_for_json_or_anything_keeps_the_json_error(accept: str) -> None:
    assert not prefers_html(accept)
