"""The two ways the local E2B API refuses a request, as the real services word them on the wire."""

from __future__ import annotations


class ApiError(Exception):
    """A control-plane (or `/files`) refusal: becomes `{"code": status, "message": message}` on the wire."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RpcError(Exception):
    """An envd refusal: becomes a Connect error (`{"code": "invalid_argument", ...}`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
