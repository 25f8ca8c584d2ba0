"""Checks of a Google class and object before Google sees them, with key-path messages.

Required fields per type are those of Google's discovery document (walletobjects v1);
lengths are Google's recommended maxima (warnings, as Google only truncates them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from passhouse.google.ids import resource_id_problem
from passhouse.pkpass.report import Report

REQUIRED_CLASS = {
    "generic": ("id",),
    "loyalty": ("id", "issuerName", "programName", "programLogo", "reviewStatus"),
    "offer": ("id", "issuerName", "title", "provider", "redemptionChannel", "reviewStatus"),
    "eventTicket": ("id", "issuerName", "eventName", "reviewStatus"),
    "giftCard": ("id", "issuerName", "reviewStatus"),
    "flight": (
        "id",
        "issuerName",
        "reviewStatus",
        "flightHeader",
        "origin",
        "destination",
        "localScheduledDepartureDateTime",
    ),
    "transit": ("id", "issuerName", "reviewStatus", "transitType", "logo"),
}
REQUIRED_OBJECT = {
    "generic": ("id", "classId", "cardTitle", "header"),
    "loyalty": ("id", "classId", "state"),
    "offer": ("id", "classId", "state"),
    "eventTicket": ("id", "classId", "state"),
    "giftCard": ("id", "classId", "state", "cardNumber"),
    "flight": ("id", "classId", "state", "passengerName", "reservationInfo"),
    "transit": ("id", "classId", "state", "tripType"),
}
LOCALIZED = {"cardTitle", "header", "subheader", "eventName", "passengerName"}
IMAGES = {"logo", "programLogo", "heroImage", "wideLogo", "titleImage", "wideProgramLogo"}
STATES = {"ACTIVE", "COMPLETED", "EXPIRED", "INACTIVE"}
REVIEW_STATUSES = {"UNDER_REVIEW", "DRAFT"}
BARCODE_TYPES = {
    "AZTEC",
    "CODE_39",
    "CODE_128",
    "CODABAR",
    "DATA_MATRIX",
    "EAN_8",
    "EAN_13",
    "ITF_14",
    "PDF_417",
    "QR_CODE",
    "UPC_A",
    "TEXT_ONLY",
}
_HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
MAX_MODULES = 10
MAX_HEADER = 35
MAX_BODY = 500


def validate_class(google_type: str, google_class: Mapping[str, Any], issuer_id: str) -> Report:
    report = Report()
    _require(REQUIRED_CLASS[google_type], google_class, "google.class", report)
    status = google_class.get("reviewStatus")
    if status is not None and str(status).upper() not in REVIEW_STATUSES:
        report.errors.append(
            "google.class.reviewStatus: only UNDER_REVIEW or DRAFT may be sent to Google"
        )
    if status is not None and str(status).upper() == "DRAFT":
        report.errors.append(
            "google.class.reviewStatus: a DRAFT class cannot hold objects; use UNDER_REVIEW"
        )
    _check_common(google_class, "google.class", issuer_id, report)
    return report


def validate_object(google_type: str, google_object: Mapping[str, Any], issuer_id: str) -> Report:
    report = Report()
    _require(REQUIRED_OBJECT[google_type], google_object, "google.object", report)
    state = google_object.get("state")
    if state is not None and str(state).upper() not in STATES:
        report.errors.append(
            f"google.object.state: must be one of {', '.join(sorted(STATES))}, not {state!r}"
        )
    barcode = google_object.get("barcode")
    if barcode is not None:
        if not isinstance(barcode, Mapping):
            report.errors.append("google.object.barcode: must be an object")
        elif str(barcode.get("type", "")).upper() not in BARCODE_TYPES:
            report.errors.append(
                f"google.object.barcode.type: {barcode.get('type')!r} is not a Google barcode type"
            )
        elif barcode.get("alternateText") and str(barcode.get("type")).upper() == "TEXT_ONLY":
            report.errors.append("google.object.barcode.alternateText: not allowed with TEXT_ONLY")
    _check_common(google_object, "google.object", issuer_id, report)
    class_id = google_object.get("classId")
    if isinstance(class_id, str) and (problem := resource_id_problem(class_id, issuer_id)):
        report.errors.append(f"google.object.classId: {problem}")
    return report


def _require(keys: tuple[str, ...], body: Mapping[str, Any], where: str, report: Report) -> None:
    for key in keys:
        if body.get(key) in (None, "", [], {}):
            report.errors.append(f"{where}.{key}: required key is missing")


def _check_common(body: Mapping[str, Any], where: str, issuer_id: str, report: Report) -> None:
    resource_id = body.get("id")
    if isinstance(resource_id, str) and (problem := resource_id_problem(resource_id, issuer_id)):
        report.errors.append(f"{where}.id: {problem}")
    for key in LOCALIZED & body.keys():
        if not _is_localized(body[key]):
            report.errors.append(
                f'{where}.{key}: must be a localized string {{"defaultValue": '
                '{"language": "en", "value": "..."}}'
            )
    for key in IMAGES & body.keys():
        uri = body[key].get("sourceUri", {}).get("uri") if isinstance(body[key], Mapping) else None
        if not isinstance(uri, str) or not uri.startswith("https://"):
            report.errors.append(
                f"{where}.{key}.sourceUri.uri: must be a public https:// URL that Google can fetch"
            )
    color = body.get("hexBackgroundColor")
    if color is not None and not (isinstance(color, str) and _HEX_COLOR.fullmatch(color)):
        report.errors.append(f"{where}.hexBackgroundColor: must be #rrggbb or #rgb")
    modules = body.get("textModulesData")
    if modules is not None:
        if not isinstance(modules, list):
            report.errors.append(f"{where}.textModulesData: must be an array")
        else:
            if len(modules) > MAX_MODULES:
                report.warnings.append(
                    f"{where}.textModulesData: Google shows only the first {MAX_MODULES}"
                )
            for index, module in enumerate(modules):
                _check_module(module, f"{where}.textModulesData[{index}]", report)
    for key in ("merchantLocations", "messages"):
        value = body.get(key)
        if isinstance(value, list) and len(value) > 10:
            report.errors.append(f"{where}.{key}: Google accepts at most 10")


def _check_module(module: Any, where: str, report: Report) -> None:
    if not isinstance(module, Mapping):
        report.errors.append(f"{where}: must be an object")
        return
    module_id = module.get("id")
    if isinstance(module_id, str) and "." in module_id:
        report.errors.append(f"{where}.id: may not contain dots")
    if len(str(module.get("header", ""))) > MAX_HEADER:
        report.warnings.append(f"{where}.header: longer than {MAX_HEADER} characters")
    if len(str(module.get("body", ""))) > MAX_BODY:
        report.warnings.append(f"{where}.body: longer than {MAX_BODY} characters")


def _is_localized(value: Any) -> bool:
    default = value.get("defaultValue") if isinstance(value, Mapping) else None
    return (
        isinstance(default, Mapping)
        and isinstance(default.get("language"), str)
        and isinstance(default.get("value"), str)
        and bool(default["value"])
    )
