"""Use cases (being split into one module per concern; see ADR 0024)."""

from passhouse.issuing.building import *  # noqa: F403
from passhouse.issuing.building import _check_serial  # noqa: F401
