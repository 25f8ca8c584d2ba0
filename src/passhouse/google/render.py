"""A template's `google` section, and the class and object it renders to for one pass.

`class` and `object` are Google's JSON; `object` takes the same {{placeholders}} as
pass.json. Left out, they are derived from the Apple pass.json (mapping.py). The server
owns the ids, the class reference, the object's state and the callback URL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from passhouse.google import mapping
from passhouse.google.ids import TYPES, class_id, is_issuer_id, object_id
from passhouse.google.validate import validate_class, validate_object
from passhouse.pkpass.errors import TemplateError
from passhouse.pkpass.report import Report
from passhouse.pkpass.template import Template

_SECTION_KEYS = {"issuer_id", "type", "class", "object"}
# Keys of class and object that passhouse sets; a template's value is replaced.
SERVER_OBJECT_KEYS = ("id", "classId", "state")
SERVER_CLASS_KEYS = ("id", "callbackOptions")


class GoogleConfigError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class GoogleConfig:
    issuer_id: str
    type: str
    google_class: dict[str, Any] | None
    google_object: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"issuer_id": self.issuer_id, "type": self.type}
        if self.google_class is not None:
            body["class"] = self.google_class
        if self.google_object is not None:
            body["object"] = self.google_object
        return body


def parse_config(raw: Any, pass_json: Mapping[str, Any]) -> GoogleConfig:
    """The `google` section (or google.json), checked; `type` defaults from the style."""
    if not isinstance(raw, Mapping):
        raise GoogleConfigError(["google: must be a JSON object"])
    problems = [f"google.{key}: unknown key" for key in sorted(set(raw) - _SECTION_KEYS)]
    issuer_id = raw.get("issuer_id")
    if not isinstance(issuer_id, str) or not is_issuer_id(issuer_id):
        problems.append("google.issuer_id: required, the issuer id (digits) from Google's console")
    google_type = raw.get("type", mapping.derived_type(pass_json))
    if google_type not in TYPES:
        problems.append(f"google.type: must be one of {', '.join(TYPES)}")
    sections: dict[str, dict[str, Any] | None] = {}
    for key in ("class", "object"):
        value = raw.get(key)
        if value is not None and not isinstance(value, Mapping):
            problems.append(f"google.{key}: must be a JSON object (Google's {key} JSON)")
            value = None
        sections[key] = dict(value) if value is not None else None
    if google_type in ("flight", "transit"):
        for key in ("class", "object"):
            if sections[key] is None:
                problems.append(
                    f"google.{key}: required for {google_type} passes (Google needs itinerary "
                    "data that pass.json does not hold)"
                )
    google_class = sections["class"]
    if google_class is not None and "{{" in repr(google_class):
        problems.append(
            "google.class: a class is shared by every pass of the template, so it cannot use "
            "{{placeholders}}; put per-pass values in google.object"
        )
    if problems:
        raise GoogleConfigError(problems)
    assert isinstance(issuer_id, str)
    return GoogleConfig(issuer_id, str(google_type), google_class, sections["object"])


def render_class(
    config: GoogleConfig,
    template_pass_json: Mapping[str, Any],
    images: Mapping[str, str],
    *,
    template_id: int,
    callback_url: str,
) -> tuple[dict[str, Any], Report]:
    """The class of a template, and its problems (errors block the template)."""
    report = Report()
    if config.google_class is not None:
        google_class = dict(config.google_class)
    else:
        derived = mapping.derive_class(template_pass_json, config.type, images)
        google_class = derived.google_class
        report.warnings.extend(derived.warnings)
    google_class["id"] = class_id(config.issuer_id, template_id)
    google_class["callbackOptions"] = {"url": callback_url}
    if config.type != "generic":
        google_class.setdefault("reviewStatus", "UNDER_REVIEW")
    report.extend(validate_class(config.type, google_class, config.issuer_id))
    return google_class, report


def render_object(
    config: GoogleConfig,
    pass_json: Mapping[str, Any],
    data: Mapping[str, Any],
    images: Mapping[str, str],
    *,
    template_id: int,
    pass_type_id: str,
    serial_number: str,
    voided: bool,
    now: dt.datetime,
) -> tuple[dict[str, Any], Report]:
    """The object of one pass from its rendered pass.json and data, and its problems."""
    report = Report()
    if config.google_object is not None:
        try:
            filled, _ = Template({"object": config.google_object}, {}, name="google.json").render(
                data
            )
        except TemplateError as error:
            report.errors.append(f"google.object: {error.message}")
            return {}, report
        google_object = dict(filled["object"])
    else:
        derived = mapping.derive_object(pass_json, config.type, images, voided=voided, now=now)
        google_object = derived.google_object
        report.warnings.extend(derived.warnings)
    google_object["id"] = object_id(config.issuer_id, pass_type_id, serial_number)
    google_object["classId"] = class_id(config.issuer_id, template_id)
    google_object["state"] = mapping.state_of(pass_json, voided=voided, now=now)
    report.extend(validate_object(config.type, google_object, config.issuer_id))
    return google_object, report


def object_inputs(
    template: Template,
    data: Mapping[str, Any],
    personalization: Mapping[str, Any] | None,
    *,
    serial_number: str,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The rendered pass.json and the data a pass's object is rendered from: the template
    filled as for the device, with the pass's serial and without `voided` (the object's
    state carries that): the steps of google_sync's _sync_one, which is to call this too,
    so the card a preview draws is the object Google gets (a test compares them). Raises
    PkpassError as Template.render does."""
    filled = dict(data)
    if personalization:
        filled.setdefault("personalization", dict(personalization))
    apple, _ = template.render(filled, overrides={"serialNumber": serial_number, "voided": None})
    return apple, filled
