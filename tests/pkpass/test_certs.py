from __future__ import annotations

import datetime as dt

import pytest

from certs import CertFiles, p12_bytes
from passhouse.pkpass.certs import (
    check_credentials,
    check_credentials_in_detail,
    inspect_certificate,
    load_p12,
)
from passhouse.pkpass.devcerts import make_dev_credentials
from passhouse.pkpass.errors import CertificateError


def test_inspect_reads_pass_type_team_and_dates(cert_files: CertFiles) -> None:
    info = inspect_certificate(cert_files.credentials.cert_pem)

    assert info.pass_type_id == "pass.test.passhouse"
    assert info.team_id == "TESTTEAM42"
    assert info.not_before < dt.datetime.now(dt.UTC) < info.not_after
    assert "Apple Worldwide Developer Relations" in info.issuer


def test_good_credentials_have_no_problems(cert_files: CertFiles) -> None:
    credentials = cert_files.credentials

    result = check_credentials_in_detail(
        credentials.cert_pem,
        credentials.key_pem,
        credentials.wwdr_cert_pem,
        ca_pem=credentials.root_cert_pem,
    )

    # Only the warning every dev certificate gets: it is not Apple's G4.
    assert [p.severity for p in result.problems] == ["warning"]
    assert "not Apple's" in result.problems[0].message
    assert result.ok
    assert (result.key_matches, result.chain_verifies, result.wwdr_generation) == (
        True,
        True,
        "G4",
    )


def test_every_problem_is_reported_with_what_to_do(cert_files: CertFiles) -> None:
    expired = make_dev_credentials(valid_days=-1)

    problems = check_credentials(
        expired.cert_pem, cert_files.credentials.key_pem, cert_files.credentials.wwdr_cert_pem
    )

    messages = " ".join(problem.message for problem in problems)
    assert "expired on" in messages
    assert "does not match the certificate" in messages
    assert "not issued by the given WWDR certificate" in messages


def test_missing_wwdr_is_a_problem(cert_files: CertFiles) -> None:
    problems = check_credentials(cert_files.credentials.cert_pem, cert_files.credentials.key_pem)

    assert any("--wwdr" in problem.message for problem in problems)


def test_wrong_root_is_reported(cert_files: CertFiles) -> None:
    other = make_dev_credentials()
    credentials = cert_files.credentials

    problems = check_credentials(
        credentials.cert_pem,
        credentials.key_pem,
        credentials.wwdr_cert_pem,
        ca_pem=other.root_cert_pem,
    )

    assert [problem.message for problem in problems if problem.severity == "error"] == [
        "The WWDR certificate was not issued by the given root certificate."
    ]


def test_load_p12_returns_plain_pems(cert_files: CertFiles) -> None:
    cert_pem, key_pem, chain_pem = load_p12(p12_bytes(cert_files.credentials, None), None)

    assert cert_pem == cert_files.credentials.cert_pem
    assert b"ENCRYPTED" not in key_pem
    assert chain_pem == cert_files.credentials.wwdr_cert_pem


def test_load_p12_without_needed_password_says_so(cert_files: CertFiles) -> None:
    with pytest.raises(CertificateError, match="needs a password"):
        load_p12(p12_bytes(cert_files.credentials, b"pw"), None)


def test_not_a_p12_is_refused() -> None:
    with pytest.raises(CertificateError, match="not a PKCS#12 file"):
        load_p12(b"hello", b"pw")
