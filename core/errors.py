"""Domain errors. Fronts turn them into HTTP status codes, chat replies or CLI exit codes."""
from __future__ import annotations

from typing import Any


class MeterpayError(Exception):
    """Base of every error a front may show to a person. ``code`` is stable for APIs."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_dict(self) -> dict[str, str]:
        body = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


class ValidationError(MeterpayError):
    code = "invalid"
    http_status = 400


class NotFound(MeterpayError):
    code = "not_found"
    http_status = 404


class Conflict(MeterpayError):
    code = "conflict"
    http_status = 409


class InsufficientFunds(MeterpayError):
    code = "insufficient_funds"
    http_status = 409


class AccountClosed(MeterpayError):
    code = "account_closed"
    http_status = 409


class Forbidden(MeterpayError):
    code = "forbidden"
    http_status = 403
