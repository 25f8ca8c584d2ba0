"""Shared fixtures: one set of throwaway certificates per session, and the golden templates."""

from __future__ import annotations

from typing import Any

import pytest

from certs import CertFiles, write_credentials
from passhouse.examples import TEMPLATES as EXAMPLE_TEMPLATES
from passhouse.pkpass.signing import PassSigner

TEMPLATES = EXAMPLE_TEMPLATES
STYLES = ("generic", "storeCard", "coupon", "eventTicket", "boardingPass")

# Data that fills every placeholder of each golden template.
SAMPLE_DATA: dict[str, dict[str, Any]] = {
    "generic": {
        "serial": "GEN-0001",
        "member": {"name": "Ada Lovelace"},
        "level": "Gold",
        "since": "2024-05-01T10:00:00+02:00",
    },
    "storeCard": {"serial": "CARD-0001", "points": 1200, "balance": 25.5, "name": "Ada"},
    "coupon": {"serial": "CPN-0001", "percent": 20, "expires": "2027-01-31T23:59:00Z"},
    "eventTicket": {
        "serial": "TKT-0001",
        "event": "Passhouse Live",
        "section": "B",
        "seat": "12",
        "row": 7,
        "doors": "2027-03-01T19:00:00+01:00",
        "ends": "2027-03-01T23:00:00+01:00",
    },
    "boardingPass": {
        "serial": "BP-0001",
        "gate": "A12",
        "from": "CDG",
        "from_city": "Paris",
        "to": "SFO",
        "to_city": "San Francisco",
        "passenger": "Ada Lovelace",
        "seat": "14C",
        "boarding": "2027-02-10T09:40:00+01:00",
    },
}


@pytest.fixture(scope="session")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return write_credentials(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def signer(cert_files: CertFiles) -> PassSigner:
    credentials = cert_files.credentials
    return PassSigner.from_pem(credentials.cert_pem, credentials.key_pem, credentials.wwdr_cert_pem)
