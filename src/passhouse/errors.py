"""Domain errors. Each carries the HTTP status and a stable code; the web layer renders them."""

from __future__ import annotations


class PasshouseError(Exception):
    """Base of every error a user can act on (never shown with a stack trace)."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(PasshouseError):
    status_code = 422
    code = "invalid_input"


class TooLarge(PasshouseError):
    status_code = 413
    code = "payload_too_large"


class NotFound(PasshouseError):
    status_code = 404
    code = "not_found"


class Conflict(PasshouseError):
    status_code = 409
    code = "conflict"


class AlreadyPersonalized(Conflict):
    code = "already_personalized"


class Unauthorized(PasshouseError):
    status_code = 401
    code = "unauthorized"


class ConfigurationError(PasshouseError):
    """Settings or files that stop the server from starting."""

    status_code = 500
    code = "configuration_error"
