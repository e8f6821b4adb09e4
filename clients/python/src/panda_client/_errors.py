"""The errors the client raises: one base, `PandaError`, and a subclass per kind of failure."""

from __future__ import annotations

import json
from typing import Any, Optional


class PandaError(Exception):
    """An error from Panda or from talking to it.

    Attributes:
        code: The server's stable error code to branch on (`not_found`, `invalid`,
            `unauthorized`, `conflict`, `store_unavailable`, ...), or one of the client's own
            (`connection`, `wait_timeout`, `protocol`).
        message: What went wrong, in one line.
        hint: What to do about it, when there is something to say (else `None`).
        status: The HTTP status, or `None` when no response came.
    """

    def __init__(
        self,
        code: str,
        message: str,
        hint: Optional[str] = None,
        status: Optional[int] = None,
    ) -> None:
        super().__init__(code, message, hint, status)
        self.code = code
        self.message = message
        self.hint = hint
        self.status = status

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"hint={self.hint!r}, status={self.status!r})"
        )


class InvalidRequest(PandaError):
    """The request was refused as invalid (HTTP 400, 413 or 422): fix it before sending again."""


class Unauthorized(PandaError):
    """The token is missing, unknown, revoked (HTTP 401) or read-only for a change (HTTP 403)."""


class NotFound(PandaError):
    """No such job, execution or route (HTTP 404)."""


class Conflict(PandaError):
    """The request conflicts with the current state (HTTP 409)."""


class Unavailable(PandaError):
    """The server cannot answer right now (HTTP 503, or 507 when its disk is full).

    Nothing was changed; try again later.

    Attributes:
        retry_after: Seconds the server asked to wait before trying again (its `Retry-After`
            header), or `None`.
    """

    def __init__(
        self,
        code: str,
        message: str,
        hint: Optional[str] = None,
        status: Optional[int] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(code, message, hint, status)
        self.retry_after = retry_after


class PandaConnectionError(PandaError):
    """The server could not be reached, or the connection broke before an answer came.

    When it broke during an enqueue, the enqueue may or may not have happened: send it again
    with the same idempotency key to be sure it happens once.
    """


class WaitTimeout(PandaError):
    """`wait` gave up before the run reached its final outcome.

    Attributes:
        execution: The execution as last seen (the run's latest attempt), still unfinished.
    """

    def __init__(self, message: str, execution: Any = None, hint: Optional[str] = None) -> None:
        super().__init__("wait_timeout", message, hint, None)
        self.execution = execution


_BY_STATUS = {
    400: InvalidRequest,
    413: InvalidRequest,
    422: InvalidRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    503: Unavailable,
    507: Unavailable,
}


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        # An HTTP date: rare enough that the caller's own backoff is a fine answer.
        return None


def _header(headers: Any, name: str) -> Optional[str]:
    if headers is None:
        return None
    for key, value in headers.items():
        if key.lower() == name.lower():
            return str(value)
    return None


def error_from_response(status: int, body: bytes, headers: Any = None) -> PandaError:
    """The typed error for an error response: its status, and its `{"error": {...}}` body.

    Args:
        status: The HTTP status.
        body: The response body (a JSON error body, or anything a proxy may answer with).
        headers: The response headers (a mapping or an `http.client.HTTPMessage`), for
            `Retry-After`.

    Returns:
        A `PandaError` subclass chosen by the status (`PandaError` itself for any other).
    """
    code, message, hint = f"http_{status}", "", None
    try:
        error = json.loads(body.decode("utf-8")).get("error")
        if isinstance(error, dict):
            code = str(error.get("code") or code)
            message = str(error.get("message") or "")
            hint = error.get("hint") or None
    except (ValueError, AttributeError, UnicodeDecodeError):
        pass
    if not message:
        text = body.decode("utf-8", "replace").strip()
        message = f"HTTP {status}" + (f": {text[:200]}" if text else "")
    cls = _BY_STATUS.get(status)
    if cls is None and 500 <= status:
        cls = PandaError
    if cls is Unavailable:
        retry_after = _retry_after(_header(headers, "Retry-After"))
        return Unavailable(code, message, hint, status, retry_after)
    return (cls or PandaError)(code, message, hint, status)
