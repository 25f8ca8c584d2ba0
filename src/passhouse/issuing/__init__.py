"""Use cases: the one place that combines pass files, storage and the push queue (ADR 0024).

One module per concern; inside the package imports point one way:

    common  <-  building  <-  pass_types, templates, passes  (google_wallet: a leaf they call)

This file only re-exports the names the rest of passhouse, the tests and the bench scripts
use, so `from passhouse.issuing import X` and `issuing.X` read as they did when issuing was
one module. Every function runs inside the caller's transaction and never commits.
"""

from passhouse.issuing import google_wallet
from passhouse.issuing.building import (
    PassBuilder,
    RenderCheck,
    build_key,
    pass_json_of,
    republish_for_build_key,
)
from passhouse.issuing.common import (
    MAX_SERIAL_LENGTH,
    SERVER_KEYS,
    iso_time,
    now_ms,
    now_seconds,
    storable_problem,
)
from passhouse.issuing.pass_types import (
    Credentials,
    certificate_summary,
    delete_pass_type,
    pass_type_problems,
    save_pass_type,
)
from passhouse.issuing.passes import (
    PERSONALIZATION_KEYS,
    change_pass_data,
    expiry_of,
    get_pass_or_404,
    get_template_pass_or_404,
    issue_pass,
    list_registrations,
    merge_patch,
    personalize_pass,
    recent_pushes,
    void_pass,
)
from passhouse.issuing.passes import _check_serial as _check_serial
from passhouse.issuing.templates import (
    checked_template,
    create_template,
    decode_assets,
    delete_template,
    get_template_or_404,
    replace_template,
    template_counts,
    template_keys,
)

__all__ = [
    "MAX_SERIAL_LENGTH",
    "PERSONALIZATION_KEYS",
    "SERVER_KEYS",
    "Credentials",
    "PassBuilder",
    "RenderCheck",
    "build_key",
    "certificate_summary",
    "change_pass_data",
    "checked_template",
    "create_template",
    "decode_assets",
    "delete_pass_type",
    "delete_template",
    "expiry_of",
    "get_pass_or_404",
    "get_template_or_404",
    "get_template_pass_or_404",
    "google_wallet",
    "iso_time",
    "issue_pass",
    "list_registrations",
    "merge_patch",
    "now_ms",
    "now_seconds",
    "pass_json_of",
    "pass_type_problems",
    "personalize_pass",
    "recent_pushes",
    "replace_template",
    "republish_for_build_key",
    "save_pass_type",
    "storable_problem",
    "template_counts",
    "template_keys",
    "void_pass",
]
