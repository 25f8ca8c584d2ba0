"""Field values as Wallet shows them: numbers with their numberStyle and currencyCode, dates
with their dateStyle and timeStyle, in the viewer's language (Babel's CLDR data)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from babel.dates import format_date, format_time, format_timedelta, get_datetime_format
from babel.numbers import (
    UnknownCurrencyError,
    format_currency,
    format_decimal,
    format_percent,
    format_scientific,
)
from num2words import num2words

from passhouse.pkpass.pass_json import is_w3c_date

# PKDateStyle -> CLDR width; None: that part is not shown.
_DATE_WIDTHS: dict[str, Literal["short", "medium", "long", "full"] | None] = {
    "PKDateStyleShort": "short",
    "PKDateStyleMedium": "medium",
    "PKDateStyleLong": "long",
    "PKDateStyleFull": "full",
    "PKDateStyleNone": None,
}
_DATE_KEYS = ("dateStyle", "timeStyle", "isRelative")


def is_date_field(field: Mapping[str, Any]) -> bool:
    return any(key in field for key in _DATE_KEYS)


def format_value(field: Mapping[str, Any], value: Any, locale: str, now: dt.datetime) -> str:
    """The text Wallet would show for a field's value (an approximation of iOS's formatters)."""
    if isinstance(value, str) and is_date_field(field) and is_w3c_date(value):
        return _format_date(field, value, locale, now)
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, int | float):
        return _format_number(field, value, locale)
    if isinstance(value, str):
        return value
    return str(value)


def _format_date(field: Mapping[str, Any], value: str, locale: str, now: dt.datetime) -> str:
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if field.get("isRelative") is True:
        return format_timedelta(moment - now, add_direction=True, locale=locale)
    date_width = _DATE_WIDTHS.get(str(field.get("dateStyle")))
    time_width = _DATE_WIDTHS.get(str(field.get("timeStyle")))
    # Shown in the date's own offset: the device would use its own time zone.
    zone = moment.tzinfo
    if date_width and time_width:
        pattern = get_datetime_format(date_width, locale=locale)
        return str(pattern).format(
            format_time(moment, time_width, tzinfo=zone, locale=locale),
            format_date(moment, date_width, locale=locale),
        )
    if date_width:
        return format_date(moment, date_width, locale=locale)
    if time_width:
        return format_time(moment, time_width, tzinfo=zone, locale=locale)
    return ""


def _format_number(field: Mapping[str, Any], value: int | float, locale: str) -> str:
    currency = field.get("currencyCode")
    if isinstance(currency, str) and currency:
        try:
            return format_currency(value, currency, locale=locale)
        except UnknownCurrencyError:
            return f"{format_decimal(value, locale=locale)} {currency}"
    style = field.get("numberStyle")
    if style == "PKNumberStylePercent":
        return format_percent(value, locale=locale)
    if style == "PKNumberStyleScientific":
        return format_scientific(value, locale=locale)
    if style == "PKNumberStyleSpellOut":
        try:
            return str(num2words(Decimal(str(value)), lang=locale))
        except (NotImplementedError, OverflowError, InvalidOperation, ValueError):
            return format_decimal(value, locale=locale)
    return format_decimal(value, locale=locale)
