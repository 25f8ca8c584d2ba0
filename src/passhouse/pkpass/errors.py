"""Errors of the pass format. Each message is a plain sentence a user can act on."""

from __future__ import annotations


class PkpassError(Exception):
    """Base of every pkpass error; the web layer answers 422 with `.message`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TemplateError(PkpassError):
    """A template cannot be read or rendered (bad zip, bad JSON, missing placeholder value)."""


class TemplateTooLarge(TemplateError):
    """A template unpacks to more files or bytes than the limits allow."""


class CertificateError(PkpassError):
    """Signing credentials are unusable (wrong password, expired, key mismatch, not a pass cert)."""


class InvalidPass(PkpassError):
    """A pass breaks Apple's hard rules; `.problems` lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"- {problem}" for problem in self.problems)
        super().__init__(f"The pass is not valid ({len(self.problems)} problem(s)):\n{lines}")
