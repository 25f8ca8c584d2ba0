"""Class and object ids: `issuerId.suffix`, the suffix of letters, digits, `.`, `_` and `-`."""

from __future__ import annotations

import hashlib
import re

TYPES = ("generic", "loyalty", "eventTicket", "offer", "giftCard", "flight", "transit")
_ISSUER_ID = re.compile(r"[0-9]{1,32}")
_SUFFIX = re.compile(r"[A-Za-z0-9._-]+")
# Google publishes no maximum; ids stay well below anything a URL path would mind.
MAX_SUFFIX_LENGTH = 200


def is_issuer_id(value: str) -> bool:
    """Issuer ids are decimal numbers from the Google Pay & Wallet Console."""
    return bool(_ISSUER_ID.fullmatch(value))


def resource_id_problem(resource_id: str, issuer_id: str) -> str | None:
    """Why `resource_id` is not a valid id of this issuer's classes or objects; or None."""
    prefix, dot, suffix = resource_id.partition(".")
    if not dot or prefix != issuer_id:
        return f"must start with the issuer id and a dot ({issuer_id}.…)"
    if not _SUFFIX.fullmatch(suffix):
        return "may hold only letters, digits, '.', '_' and '-' after the issuer id"
    if len(suffix) > MAX_SUFFIX_LENGTH:
        return f"is longer than {MAX_SUFFIX_LENGTH} characters after the issuer id"
    return None


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def class_id(issuer_id: str, template_id: int) -> str:
    """The class of a template: deterministic, so a retried insert finds its own class."""
    return f"{issuer_id}.ph-t{template_id}"


def object_id(issuer_id: str, pass_type_id: str, serial_number: str) -> str:
    """The object of a pass: deterministic, so a retried insert finds its own object.

    Serials are unique per pass type, so both name it: the pass type as a short hash (its
    id may be 255 characters), the serial as it is (at most 128 URL-safe characters; ~
    becomes _)."""
    digest = hashlib.sha256(pass_type_id.encode()).hexdigest()[:10]
    return f"{issuer_id}.ph-{digest}-{_clean(serial_number)}"
