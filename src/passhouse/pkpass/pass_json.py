"""Typed model of pass.json and the checks Wallet applies (apple-wallet.md §3.2-3.4, §3.9).

Hard rules become errors that name the key path; display guidelines become warnings. Unknown
keys are allowed and left untouched, so keys Apple adds later work before we model them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from passhouse.pkpass.report import Report

STYLE_KEYS = ("boardingPass", "coupon", "eventTicket", "generic", "storeCard")
FIELD_GROUPS = (
    "headerFields",
    "primaryFields",
    "secondaryFields",
    "auxiliaryFields",
    "backFields",
    "additionalInfoFields",
)

_W3C_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")
_RGB = re.compile(r"^rgb\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)$")


def is_w3c_date(value: str) -> bool:
    if not _W3C_DATE.match(value):
        return False
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _check_date(value: str) -> str:
    if not is_w3c_date(value):
        raise ValueError(
            f'"{value}" is not a W3C date with a time zone, e.g. "2026-03-01T19:30:00+01:00"'
        )
    return value


def _check_color(value: str) -> str:
    match = _RGB.match(value)
    if match is None or any(int(part) > 255 for part in match.groups()):
        raise ValueError(f'"{value}" is not a color of the form "rgb(r, g, b)" with 0-255 values')
    return value


def _check_field_value(value: Any) -> Any:
    # JSON true/false would pass as int in Python; Wallet wants a string, number or date.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("must be a string, a number or a date string")
    return value


W3CDate = Annotated[str, AfterValidator(_check_date)]
Color = Annotated[str, AfterValidator(_check_color)]
FieldValue = Annotated[Any, AfterValidator(_check_field_value)]

BarcodeFormat = Literal[
    "PKBarcodeFormatQR",
    "PKBarcodeFormatPDF417",
    "PKBarcodeFormatAztec",
    "PKBarcodeFormatCode128",
    "PKBarcodeFormatCode39",
    "PKBarcodeFormatCodabar",
    "PKBarcodeFormatEAN13",
    "PKBarcodeFormatI2of5",
]
DateStyle = Literal[
    "PKDateStyleNone", "PKDateStyleShort", "PKDateStyleMedium", "PKDateStyleLong", "PKDateStyleFull"
]
NumberStyle = Literal[
    "PKNumberStyleDecimal",
    "PKNumberStylePercent",
    "PKNumberStyleScientific",
    "PKNumberStyleSpellOut",
]
TextAlignment = Literal[
    "PKTextAlignmentLeft", "PKTextAlignmentCenter", "PKTextAlignmentRight", "PKTextAlignmentNatural"
]
DataDetectorType = Literal[
    "PKDataDetectorTypePhoneNumber",
    "PKDataDetectorTypeLink",
    "PKDataDetectorTypeAddress",
    "PKDataDetectorTypeCalendarEvent",
]
TransitType = Literal[
    "PKTransitTypeAir", "PKTransitTypeBoat", "PKTransitTypeBus", "PKTransitTypeGeneric",
    "PKTransitTypeTrain",
]  # fmt: skip
PersonalizationField = Literal[
    "PKPassPersonalizationFieldName",
    "PKPassPersonalizationFieldPostalCode",
    "PKPassPersonalizationFieldEmailAddress",
    "PKPassPersonalizationFieldPhoneNumber",
]


class _AppleModel(BaseModel):
    # strict: JSON types must be exact ("1" is not 1); extra: new Apple keys pass through.
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class PassFieldContent(_AppleModel):
    key: str
    value: FieldValue
    label: str | None = None
    attributed_value: FieldValue | None = Field(None, alias="attributedValue")
    change_message: str | None = Field(None, alias="changeMessage")
    currency_code: str | None = Field(None, alias="currencyCode")
    number_style: NumberStyle | None = Field(None, alias="numberStyle")
    date_style: DateStyle | None = Field(None, alias="dateStyle")
    time_style: DateStyle | None = Field(None, alias="timeStyle")
    is_relative: bool | None = Field(None, alias="isRelative")
    ignores_time_zone: bool | None = Field(None, alias="ignoresTimeZone")
    text_alignment: TextAlignment | None = Field(None, alias="textAlignment")
    data_detector_types: list[DataDetectorType] | None = Field(None, alias="dataDetectorTypes")
    row: Literal[0, 1] | None = None
    semantics: dict[str, Any] | None = None


class PassStructure(_AppleModel):
    header_fields: list[PassFieldContent] | None = Field(None, alias="headerFields")
    primary_fields: list[PassFieldContent] | None = Field(None, alias="primaryFields")
    secondary_fields: list[PassFieldContent] | None = Field(None, alias="secondaryFields")
    auxiliary_fields: list[PassFieldContent] | None = Field(None, alias="auxiliaryFields")
    back_fields: list[PassFieldContent] | None = Field(None, alias="backFields")
    additional_info_fields: list[PassFieldContent] | None = Field(
        None, alias="additionalInfoFields"
    )
    transit_type: TransitType | None = Field(None, alias="transitType")


class Barcode(_AppleModel):
    format: BarcodeFormat
    message: str
    message_encoding: str = Field(alias="messageEncoding")
    alt_text: str | None = Field(None, alias="altText")


class Location(_AppleModel):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    altitude: float | None = None
    relevant_text: str | None = Field(None, alias="relevantText")


class Beacon(_AppleModel):
    proximity_uuid: str = Field(alias="proximityUUID")
    major: int | None = Field(None, ge=0, le=65535)
    minor: int | None = Field(None, ge=0, le=65535)
    relevant_text: str | None = Field(None, alias="relevantText")


class RelevantDate(_AppleModel):
    date: W3CDate | None = None
    start_date: W3CDate | None = Field(None, alias="startDate")
    end_date: W3CDate | None = Field(None, alias="endDate")


class Nfc(_AppleModel):
    message: str
    encryption_public_key: str | None = Field(None, alias="encryptionPublicKey")
    requires_authentication: bool | None = Field(None, alias="requiresAuthentication")


class PassJson(_AppleModel):
    """pass.json; field names are Apple's keys in snake_case, aliases the JSON spelling."""

    format_version: Literal[1] = Field(alias="formatVersion")
    pass_type_identifier: str = Field(alias="passTypeIdentifier")
    serial_number: str = Field(alias="serialNumber", min_length=1)
    team_identifier: str = Field(alias="teamIdentifier", min_length=1)
    organization_name: str = Field(alias="organizationName")
    description: str

    boarding_pass: PassStructure | None = Field(None, alias="boardingPass")
    coupon: PassStructure | None = None
    event_ticket: PassStructure | None = Field(None, alias="eventTicket")
    generic: PassStructure | None = None
    store_card: PassStructure | None = Field(None, alias="storeCard")

    web_service_url: str | None = Field(None, alias="webServiceURL")
    authentication_token: str | None = Field(None, alias="authenticationToken", min_length=16)

    background_color: Color | None = Field(None, alias="backgroundColor")
    foreground_color: Color | None = Field(None, alias="foregroundColor")
    label_color: Color | None = Field(None, alias="labelColor")
    footer_background_color: Color | None = Field(None, alias="footerBackgroundColor")
    logo_text: str | None = Field(None, alias="logoText")
    event_logo_text: str | None = Field(None, alias="eventLogoText")
    suppress_strip_shine: bool | None = Field(None, alias="suppressStripShine")
    suppress_header_darkening: bool | None = Field(None, alias="suppressHeaderDarkening")
    use_automatic_colors: bool | None = Field(None, alias="useAutomaticColors")
    grouping_identifier: str | None = Field(None, alias="groupingIdentifier")
    preferred_style_schemes: list[str] | None = Field(None, alias="preferredStyleSchemes")

    locations: list[Location] | None = Field(None, max_length=10)
    max_distance: float | None = Field(None, alias="maxDistance", ge=0)
    beacons: list[Beacon] | None = Field(None, max_length=10)
    relevant_date: W3CDate | None = Field(None, alias="relevantDate")
    relevant_dates: list[RelevantDate] | None = Field(None, alias="relevantDates")

    expiration_date: W3CDate | None = Field(None, alias="expirationDate")
    voided: bool | None = None

    barcodes: list[Barcode] | None = None
    barcode: Barcode | None = None

    associated_store_identifiers: list[int] | None = Field(None, alias="associatedStoreIdentifiers")
    auxiliary_store_identifiers: list[int] | None = Field(None, alias="auxiliaryStoreIdentifiers")
    app_launch_url: str | None = Field(None, alias="appLaunchURL")

    user_info: Any = Field(None, alias="userInfo")
    semantics: dict[str, Any] | None = None
    sharing_prohibited: bool | None = Field(None, alias="sharingProhibited")
    nfc: Nfc | None = None

    # Poster event ticket and boarding pass links (iOS 18+): plain URL strings.
    accessibility_url: str | None = Field(None, alias="accessibilityURL")
    add_on_url: str | None = Field(None, alias="addOnURL")
    bag_policy_url: str | None = Field(None, alias="bagPolicyURL")
    contact_venue_email: str | None = Field(None, alias="contactVenueEmail")
    contact_venue_phone_number: str | None = Field(None, alias="contactVenuePhoneNumber")
    contact_venue_website: str | None = Field(None, alias="contactVenueWebsite")
    directions_information_url: str | None = Field(None, alias="directionsInformationURL")
    merchandise_url: str | None = Field(None, alias="merchandiseURL")
    order_food_url: str | None = Field(None, alias="orderFoodURL")
    parking_information_url: str | None = Field(None, alias="parkingInformationURL")
    purchase_parking_url: str | None = Field(None, alias="purchaseParkingURL")
    sell_url: str | None = Field(None, alias="sellURL")
    transfer_url: str | None = Field(None, alias="transferURL")
    transit_information_url: str | None = Field(None, alias="transitInformationURL")
    change_seat_url: str | None = Field(None, alias="changeSeatURL")
    entertainment_url: str | None = Field(None, alias="entertainmentURL")
    purchase_additional_baggage_url: str | None = Field(None, alias="purchaseAdditionalBaggageURL")
    purchase_lounge_access_url: str | None = Field(None, alias="purchaseLoungeAccessURL")
    purchase_wifi_url: str | None = Field(None, alias="purchaseWifiURL")
    upgrade_url: str | None = Field(None, alias="upgradeURL")
    management_url: str | None = Field(None, alias="managementURL")
    register_service_animal_url: str | None = Field(None, alias="registerServiceAnimalURL")
    report_lost_bag_url: str | None = Field(None, alias="reportLostBagURL")
    request_wheelchair_url: str | None = Field(None, alias="requestWheelchairURL")
    track_bags_url: str | None = Field(None, alias="trackBagsURL")
    transit_provider_email: str | None = Field(None, alias="transitProviderEmail")
    transit_provider_phone_number: str | None = Field(None, alias="transitProviderPhoneNumber")
    transit_provider_website_url: str | None = Field(None, alias="transitProviderWebsiteURL")
    upcoming_pass_information: list[Any] | None = Field(None, alias="upcomingPassInformation")


class Personalization(_AppleModel):
    """personalization.json (rewards enrollment, NFC passes only)."""

    required_personalization_fields: list[PersonalizationField] = Field(
        alias="requiredPersonalizationFields", min_length=1
    )
    description: str
    terms_and_conditions: str | None = Field(None, alias="termsAndConditions")


def key_path(location: Sequence[str | int]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
    return path


def _pydantic_problems(error: ValidationError, prefix: str = "") -> list[str]:
    problems = []
    for item in error.errors(include_url=False):
        location = [part for part in item["loc"] if not str(part).startswith("function-after")]
        path = key_path([prefix, *location] if prefix else location) or prefix or "pass.json"
        if item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "value_error":
            message = str(item["ctx"]["error"]) if "ctx" in item else item["msg"]
        else:
            message = item["msg"][0].lower() + item["msg"][1:]
        problems.append(f"{path}: {message}")
    return problems


def validate_pass_json(pass_json: Mapping[str, Any]) -> Report:
    """Every hard error and display warning in a pass.json, each starting with its key path."""
    report = Report()
    if not isinstance(pass_json, Mapping):
        report.errors.append("pass.json: must be a JSON object")
        return report
    try:
        PassJson.model_validate(pass_json)
    except ValidationError as error:
        report.errors.extend(_pydantic_problems(error))
    _check_rules(pass_json, report)
    return report


def validate_personalization(data: Any) -> list[str]:
    try:
        Personalization.model_validate(data)
    except ValidationError as error:
        return _pydantic_problems(error, "personalization.json")
    return []


# Front-of-pass field limits (Guide-Creating): more fields than these may not be shown.
_FIELD_LIMITS = {"headerFields": 3, "primaryFields": 1, "secondaryFields": 4, "auxiliaryFields": 4}
_BOARDING_LIMITS = {**_FIELD_LIMITS, "primaryFields": 2, "auxiliaryFields": 5}


def _check_rules(pass_json: Mapping[str, Any], report: Report) -> None:
    errors, warnings = report.errors, report.warnings
    styles = [key for key in STYLE_KEYS if key in pass_json]
    if len(styles) != 1:
        found = ", ".join(styles) if styles else "none"
        errors.append(
            "pass.json: exactly one style key is required (boardingPass, coupon, eventTicket, "
            f"generic or storeCard); found {found}"
        )

    pass_type_id = pass_json.get("passTypeIdentifier")
    if isinstance(pass_type_id, str) and not pass_type_id.startswith("pass."):
        errors.append(f'passTypeIdentifier: "{pass_type_id}" must start with "pass."')

    url, token = pass_json.get("webServiceURL"), pass_json.get("authenticationToken")
    if url is not None and token is None:
        errors.append("webServiceURL: authenticationToken is required with webServiceURL")
    if token is not None and url is None:
        errors.append("authenticationToken: webServiceURL is required with authenticationToken")
    if isinstance(url, str):
        if not url.startswith(("https://", "http://")):
            errors.append(f'webServiceURL: "{url}" must start with https://')
        elif url.startswith("http://"):
            warnings.append(
                "webServiceURL: plain http only works on devices with the developer setting "
                "for HTTP web services; use https in production"
            )
    if "appLaunchURL" in pass_json and "associatedStoreIdentifiers" not in pass_json:
        warnings.append("appLaunchURL: ignored without associatedStoreIdentifiers")
    if "barcode" in pass_json and "barcodes" not in pass_json:
        warnings.append("barcode: deprecated; use barcodes (a list)")

    for index, entry in enumerate(_list(pass_json.get("relevantDates"))):
        if isinstance(entry, Mapping):
            path = f"relevantDates[{index}]"
            if "date" not in entry and "startDate" not in entry:
                errors.append(f"{path}: date or startDate is required")
            if "startDate" in entry and "endDate" not in entry:
                errors.append(f"{path}.endDate: required when startDate is given")

    nfc = pass_json.get("nfc")
    nfc_message = nfc.get("message") if isinstance(nfc, Mapping) else None
    if isinstance(nfc_message, str) and len(nfc_message.encode()) > 64:
        warnings.append("nfc.message: longer than 64 bytes; Wallet truncates it")

    uuids = {
        beacon.get("proximityUUID")
        for beacon in _list(pass_json.get("beacons"))
        if isinstance(beacon, Mapping)
    }
    if len(uuids) > 10:
        errors.append("beacons: at most 10 different proximityUUID values are allowed")

    for style in styles:
        structure = pass_json[style]
        if isinstance(structure, Mapping):
            _check_structure(style, structure, report)


def _check_structure(style: str, structure: Mapping[str, Any], report: Report) -> None:
    if style == "boardingPass" and "transitType" not in structure:
        report.errors.append("boardingPass.transitType: required on boarding passes")
    limits = _BOARDING_LIMITS if style == "boardingPass" else _FIELD_LIMITS
    seen: set[str] = set()
    for group in FIELD_GROUPS:
        fields = _list(structure.get(group))
        limit = limits.get(group)
        if limit is not None and len(fields) > limit:
            report.warnings.append(
                f"{style}.{group}: {len(fields)} fields; only {limit} fit on the front of "
                "the pass, the rest may not be shown"
            )
        for index, content in enumerate(fields):
            if not isinstance(content, Mapping):
                continue
            path = f"{style}.{group}[{index}]"
            _check_field(path, group, content, seen, report)
    if style in ("coupon", "storeCard", "generic"):
        front = len(_list(structure.get("secondaryFields"))) + len(
            _list(structure.get("auxiliaryFields"))
        )
        if front > 4:
            report.warnings.append(
                f"{style}: {front} secondary and auxiliary fields; with a square barcode only "
                "4 in total are shown"
            )


def _check_field(
    path: str, group: str, content: Mapping[str, Any], seen: set[str], report: Report
) -> None:
    key = content.get("key")
    if isinstance(key, str):
        if key in seen:
            report.errors.append(f'{path}.key: duplicate key "{key}"')
        seen.add(key)
    value = content.get("value")
    is_date = any(name in content for name in ("dateStyle", "timeStyle", "isRelative"))
    if is_date and isinstance(value, str) and not is_w3c_date(value):
        report.errors.append(
            f'{path}.value: "{value}" is not a W3C date with a time zone, as dateStyle/'
            'timeStyle need (e.g. "2026-03-01T19:30:00+01:00")'
        )
    message = content.get("changeMessage")
    if isinstance(message, str) and "%@" not in message:
        report.warnings.append(f"{path}.changeMessage: should contain %@ (the new value)")
    if "textAlignment" in content and group in ("primaryFields", "backFields"):
        report.warnings.append(f"{path}.textAlignment: ignored in {group}")
    if "dataDetectorTypes" in content and group != "backFields":
        report.warnings.append(f"{path}.dataDetectorTypes: only used in backFields")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
