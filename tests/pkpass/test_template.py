from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from passhouse.pkpass.errors import TemplateError
from passhouse.pkpass.strings import encode_strings, parse_strings
from passhouse.pkpass.template import Template, TemplateLimits

from .conftest import SAMPLE_DATA, STYLES, TEMPLATES
from .pngs import minimal_assets

PASS_JSON: dict[str, Any] = {
    "formatVersion": 1,
    "passTypeIdentifier": "pass.test.passhouse",
    "teamIdentifier": "TESTTEAM42",
    "serialNumber": "{{serial}}",
    "organizationName": "Passhouse",
    "description": "Card for {{member.name}}",
    "storeCard": {
        "primaryFields": [{"key": "balance", "value": "{{balance}}"}],
        "secondaryFields": [{"key": "vip", "value": "{{ vip }}"}],
    },
}


def make_template(**assets: bytes) -> Template:
    return Template(copy.deepcopy(PASS_JSON), {**minimal_assets(), **assets}, name="coffee")


def test_placeholders_are_listed() -> None:
    assert make_template().placeholders() == {"serial", "member.name", "balance", "vip"}


def test_whole_value_placeholder_keeps_the_data_type() -> None:
    pass_json, _ = make_template().render(
        {"serial": 42, "member": {"name": "Ada"}, "balance": 12.5, "vip": True}
    )

    assert pass_json["serialNumber"] == 42
    assert pass_json["storeCard"]["primaryFields"][0]["value"] == 12.5
    assert pass_json["storeCard"]["secondaryFields"][0]["value"] is True
    assert pass_json["description"] == "Card for Ada"


def test_missing_values_name_the_placeholders_and_the_template() -> None:
    with pytest.raises(TemplateError) as caught:
        make_template().render({"serial": "1"})

    assert caught.value.message == (
        'Template "coffee" needs a value for {{balance}}, {{member.name}}, {{vip}}: '
        "add it to the pass data."
    )


def test_overrides_win_and_none_removes() -> None:
    pass_json, _ = make_template().render(
        {"serial": "1", "member.name": "Ada", "balance": 1, "vip": "no"},
        overrides={"serialNumber": "forced", "voided": True, "description": None},
    )

    assert pass_json["serialNumber"] == "forced"
    assert pass_json["voided"] is True
    assert "description" not in pass_json


def test_render_does_not_change_the_template() -> None:
    template = make_template()

    template.render({"serial": "1", "member.name": "Ada", "balance": 1, "vip": "no"})

    assert template.pass_json == PASS_JSON


def test_personalized_pass_drops_personalization_json() -> None:
    template = make_template(**{"personalization.json": b"{}"})
    data = {"serial": "1", "member.name": "Ada", "balance": 1, "vip": "no"}

    _, plain = template.render(data)
    _, personalized = template.render(data, personalized=True)

    assert "personalization.json" in plain
    assert "personalization.json" not in personalized


def test_strings_are_rendered_and_written_as_utf16() -> None:
    template = make_template(**{"en.lproj/pass.strings": b'"hello" = "Hi {{member.name}}";'})

    _, assets = template.render({"serial": "1", "member.name": "Ada", "balance": 1, "vip": 0})

    assert assets["en.lproj/pass.strings"][:2] == b"\xff\xfe"
    assert parse_strings(assets["en.lproj/pass.strings"]) == {"hello": "Hi Ada"}


@pytest.mark.parametrize(
    "strings",
    [b'"hello" = "{{nickname}}";', b'"hello" = "Hi {{nickname}}!";'],
    ids=["whole", "inside"],
)
@pytest.mark.parametrize("data", [{}, {"nickname": None}], ids=["missing", "null"])
def test_a_placeholder_without_a_value_in_pass_strings_is_an_error(
    strings: bytes, data: dict[str, Any]
) -> None:
    template = make_template(**{"en.lproj/pass.strings": strings})

    with pytest.raises(TemplateError) as caught:
        template.render({"serial": "1", "member.name": "Ada", "balance": 1, "vip": 0, **data})

    assert caught.value.message == (
        'Template "coffee" needs a value for {{nickname}}: add it to the pass data.'
    )


def test_a_null_inside_a_pass_json_text_is_an_error_not_none() -> None:
    with pytest.raises(TemplateError, match=r"needs a value for \{\{member.name\}\}"):
        make_template().render({"serial": "1", "member": {"name": None}, "balance": 1, "vip": 0})


@pytest.mark.parametrize("style", STYLES)
def test_golden_templates_load_check_and_render(style: str) -> None:
    template = Template.from_directory(TEMPLATES / style)

    report = template.check()
    _, assets = template.render(SAMPLE_DATA[style])

    assert report.errors == []
    assert template.style == style
    assert template.placeholders() <= set(SAMPLE_DATA[style]) | {"member.name"}
    assert "icon.png" in assets
    assert "en.lproj/pass.strings" in assets


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_of_a_folder_is_unwrapped_and_litter_ignored() -> None:
    files = {f"card/{name}": data for name, data in minimal_assets().items()}
    files["card/pass.json"] = json.dumps(PASS_JSON).encode()
    files["card/.DS_Store"] = b"junk"
    files["__MACOSX/card/._icon.png"] = b"junk"

    template = Template.from_zip(zipped(files), name="card")

    assert sorted(template.assets) == sorted(minimal_assets())
    assert template.pass_json == PASS_JSON


def test_corrupt_zip_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match='Template "broken" is not a valid zip file'):
        Template.from_zip(b"PK\x03\x04 definitely not a zip", name="broken")


def test_bad_json_names_line_and_column() -> None:
    with pytest.raises(TemplateError, match=r"pass.json is not valid JSON \(line 1, column"):
        Template.from_files({"pass.json": b'{"formatVersion": 1,,}'}, name="t")


def test_missing_pass_json_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match=r"has no pass\.json"):
        Template.from_files({"icon.png": b""}, name="t")


def test_unsafe_paths_are_refused() -> None:
    with pytest.raises(TemplateError, match="unsafe file name"):
        Template.from_files({"pass.json": b"{}", "../evil.png": b""}, name="t")


def test_check_reports_missing_icon_and_bad_png() -> None:
    template = Template(copy.deepcopy(PASS_JSON), {"logo.png": b"GIF89a..."}, name="t")

    report = template.check()

    assert any(error.startswith("icon.png: required") for error in report.errors)
    assert "logo.png: is not a PNG file (wrong signature)" in report.errors


def test_check_reports_lproj_key_mismatch_and_utf8_strings() -> None:
    template = make_template(
        **{
            "en.lproj/pass.strings": encode_strings({"a": "A", "b": "B"}),
            "fr.lproj/pass.strings": b'"a" = "A";',
        }
    )

    report = template.check()

    assert report.errors == ['fr.lproj/pass.strings: missing "b"; every .lproj needs the same keys']
    assert any("fr.lproj/pass.strings: Apple asks for UTF-16" in w for w in report.warnings)


def test_check_reports_bad_strings_syntax() -> None:
    template = make_template(**{"en.lproj/pass.strings": b'"a" = A;'})

    assert any("syntax error" in error for error in template.check().errors)


def test_check_validates_personalization_json() -> None:
    bad = json.dumps({"requiredPersonalizationFields": ["name"]}).encode()

    report = make_template(**{"personalization.json": bad}).check()

    assert any("requiredPersonalizationFields[0]" in error for error in report.errors)
    assert "personalization.json.description: required key is missing" in report.errors


def test_check_warns_about_sizes_and_missing_variants() -> None:
    from .pngs import make_png

    template = Template(
        copy.deepcopy(PASS_JSON),
        {"icon.png": make_png(40, 40), "logo.png": make_png(400, 50)},
        name="t",
    )

    warnings = template.check().warnings

    assert "icon.png: 40 x 40 px; Apple's space for it is 29 x 29 px" in warnings
    assert any(w.startswith("logo.png: 400 x 50 px does not fit") for w in warnings)
    assert any(w.startswith("icon.png: no icon@2x.png or icon@3x.png") for w in warnings)


def test_personalization_json_placeholders_are_filled() -> None:
    personalization = {
        "requiredPersonalizationFields": ["PKPassPersonalizationFieldName"],
        "description": "Join {{club}}",
    }
    template = make_template(**{"personalization.json": json.dumps(personalization).encode()})
    data = {"serial": "1", "member.name": "Ada", "balance": 1, "vip": "no", "club": "Gold"}

    _, assets = template.render(data)

    assert "club" in template.placeholders()
    assert json.loads(assets["personalization.json"])["description"] == "Join Gold"


def test_top_level_image_hiding_a_localized_one_is_a_warning() -> None:
    from .pngs import image_set

    template = make_template(**{f"fr.lproj/{k}": v for k, v in image_set("icon", 29, 29).items()})

    warnings = template.check().warnings

    assert any(w.startswith("fr.lproj/icon.png: never shown") for w in warnings)


def test_check_validates_pass_json_except_placeholder_values() -> None:
    template = make_template()
    template.pass_json["backgroundColor"] = "red"
    template.pass_json["labelColor"] = "{{color}}"
    template.pass_json["storeCard"]["primaryFields"].append({"key": "{{serial}}", "value": 1})

    errors = template.check().errors

    assert errors == [
        'backgroundColor: "red" is not a color of the form "rgb(r, g, b)" with 0-255 values'
    ]


def test_check_leaves_server_set_keys_to_the_build() -> None:
    template = make_template()
    del template.pass_json["serialNumber"]
    template.pass_json["webServiceURL"] = "https://passes.example.com/"

    assert template.check().errors == []


@pytest.mark.parametrize(
    ("files", "limits", "words"),
    [
        ({"pass.json": b"{}", "a.png": b"1", "b.png": b"2"}, {"max_files": 2}, "more than 2 files"),
        ({"pass.json": b"{}", "a.png": bytes(2000)}, {"max_file_bytes": 1024}, "a.png is larger"),
        ({"pass.json": b"{}", "a.png": bytes(800), "b.png": bytes(800)}, {"max_bytes": 1024},
         "larger than 1024 bytes unpacked"),
        ({"pass.json": b'{"a": ' * 9 + b"1" + b"}" * 9}, {"max_json_depth": 8}, "limit is 8"),
    ],
    ids=["files", "file bytes", "total bytes", "json depth"],
)  # fmt: skip
def test_a_template_folder_is_held_to_the_limits(
    tmp_path: Path, files: dict[str, bytes], limits: dict[str, int], words: str
) -> None:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    with pytest.raises(TemplateError) as caught:
        Template.from_directory(tmp_path, limits=TemplateLimits(**limits))

    assert words in caught.value.message


def test_personalization_json_nested_past_the_limit_is_a_check_error() -> None:
    template = make_template(**{"personalization.json": b"[" * 40 + b"]" * 40})

    errors = template.check(max_json_depth=32).errors

    assert any("the limit is 32 levels" in error for error in errors), errors


def test_static_strings_are_one_shared_file_and_templated_ones_differ_per_pass() -> None:
    static = make_template(**{"en.lproj/pass.strings": b'"hello" = "Hi";'})
    templated = make_template(**{"en.lproj/pass.strings": b'"hello" = "Hi {{member.name}}";'})
    ada = {"serial": "1", "member.name": "Ada", "balance": 1, "vip": 0}
    bob = {**ada, "serial": "2", "member.name": "Bob"}

    first, second = (static.render(data)[1]["en.lproj/pass.strings"] for data in (ada, bob))
    assert first is second
    assert parse_strings(first) == {"hello": "Hi"}
    assert [
        parse_strings(templated.render(data)[1]["en.lproj/pass.strings"]) for data in (ada, bob)
    ] == [{"hello": "Hi Ada"}, {"hello": "Hi Bob"}]
