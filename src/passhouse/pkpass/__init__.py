"""The .pkpass file format: pure functions over bytes (no database, HTTP or settings)."""

from passhouse.pkpass.bundle import (
    PKPASS_MEDIA_TYPE,
    PKPASSES_MEDIA_TYPE,
    build_pkpass,
    build_pkpasses,
    verify_pkpass,
)
from passhouse.pkpass.errors import CertificateError, InvalidPass, PkpassError, TemplateError
from passhouse.pkpass.pass_json import PassJson, validate_pass_json
from passhouse.pkpass.report import Report
from passhouse.pkpass.signing import PassSigner
from passhouse.pkpass.template import Template

__all__ = [
    "PKPASSES_MEDIA_TYPE",
    "PKPASS_MEDIA_TYPE",
    "CertificateError",
    "InvalidPass",
    "PassJson",
    "PassSigner",
    "PkpassError",
    "Report",
    "Template",
    "TemplateError",
    "build_pkpass",
    "build_pkpasses",
    "validate_pass_json",
    "verify_pkpass",
]
