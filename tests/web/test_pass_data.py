"""Nested pass data: PATCH is a JSON Merge Patch (RFC 7396), and {{a.b}} reads it."""

from __future__ import annotations

import base64
import copy
from typing import Any

import httpx

from conftest import PASS_TYPE_ID, TEMPLATE_JSON
from passhouse import devmode, issuing

SEAT = {"number": 7, "section": "A"}


def seat_template() -> dict[str, Any]:
    pass_json = copy.deepcopy(TEMPLATE_JSON)
    pass_json["storeCard"]["auxiliaryFields"] = [
        {"key": "seat", "label": "Seat", "value": "{{seat.section}}-{{seat.number}}"}
    ]
    assets = {name: base64.b64encode(data).decode() for name, data in devmode.demo_assets().items()}
    return {"name": "seats", "pass_type_id": PASS_TYPE_ID, "pass_json": pass_json, "assets": assets}


async def issue_seat(admin: httpx.AsyncClient, **data: Any) -> str:
    created = await admin.post("/api/v1/templates", json=seat_template())
    assert created.status_code == 201, created.text
    issued = await admin.post(
        "/api/v1/passes",
        json={"template": "seats", "data": {"name": "Ada", "balance": 1, "seat": SEAT, **data}},
    )
    assert issued.status_code == 201, issued.text
    return f"/api/v1/passes/{PASS_TYPE_ID}/{issued.json()['serial_number']}"


async def shown_seat(admin: httpx.AsyncClient, path: str) -> Any:
    pkpass = await admin.get(f"{path}/pkpass")
    fields = issuing.pass_json_of(pkpass.content)["storeCard"]["auxiliaryFields"]
    return fields[0]["value"]


async def test_patching_a_nested_value_keeps_its_siblings(
    admin: httpx.AsyncClient, pass_type: str
) -> None:
    path = await issue_seat(admin)

    patched = await admin.patch(path, json={"data": {"seat": {"number": 8}}})

    assert patched.status_code == 200, patched.text
    assert patched.json()["changed"] is True
    assert patched.json()["data"]["seat"] == {"number": 8, "section": "A"}
    assert await shown_seat(admin, path) == "A-8"


async def test_null_in_a_patch_removes_the_key(admin: httpx.AsyncClient, pass_type: str) -> None:
    path = await issue_seat(admin, note={"text": "hi", "lang": "en"})

    patched = await admin.patch(path, json={"data": {"note": {"lang": None}, "balance": 2}})
    removed = await admin.patch(path, json={"data": {"note": None}})
    again = await admin.patch(path, json={"data": {"note": None}})

    assert patched.json()["data"]["note"] == {"text": "hi"}
    assert "note" not in removed.json()["data"]
    assert again.json()["changed"] is False  # removing what is not there changes nothing


async def test_a_patch_value_that_is_not_an_object_replaces(
    admin: httpx.AsyncClient, pass_type: str
) -> None:
    path = await issue_seat(admin, tags={"a": 1})

    patched = await admin.patch(path, json={"data": {"tags": ["x", "y"]}})

    assert patched.json()["data"]["tags"] == ["x", "y"]


async def test_a_stray_literal_dotted_key_does_not_hide_the_nested_value(
    admin: httpx.AsyncClient, pass_type: str
) -> None:
    # What `pass update ... seat.number=99` stored before it set nested keys.
    path = await issue_seat(admin, **{"seat.number": 99})

    patched = await admin.patch(path, json={"data": {"seat": {"number": 8}}})

    assert patched.json()["changed"] is True
    assert await shown_seat(admin, path) == "A-8"


def test_merge_patch_follows_rfc_7396_examples() -> None:
    # The examples of RFC 7396, appendix A.
    cases = [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ]

    results = [issuing.merge_patch(target, patch) for target, patch, _ in cases]

    assert results == [expected for _, _, expected in cases]
