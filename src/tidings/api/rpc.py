"""JSON-RPC 2.0 framing, one message per line (sans-I/O).

A line is one JSON object: a request (``{"jsonrpc": "2.0", "id": …, "method": …, "params":
{…}}``), or a notification (no ``id``: no answer). Batches (JSON arrays) are not supported and
get an Invalid Request error. Answers are ``{"jsonrpc": "2.0", "id": …, "result": …}`` or
``{"jsonrpc": "2.0", "id": …, "error": {"code", "message", "data"?}}``; the server's own
notifications (events of a subscription) have ``method`` ``"event"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "MAX_LINE",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "ApiError",
    "Request",
    "error_line",
    "notification_line",
    "parse_request",
    "result_line",
]

#: The longest line accepted (bytes): a send of the largest body (64 KiB, JSON-escaped at most
#: 6× as \\uXXXX) fits; a client that sends more is cut off rather than buffered without end.
MAX_LINE = 512 * 1024

# The JSON-RPC 2.0 codes (spec §5.1).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


class ApiError(Exception):
    """An error answer: ``code`` (JSON-RPC's, or one of :mod:`tidings.api.methods`'),
    ``message`` for people, ``data`` for programs."""

    def __init__(
        self, code: int, message: str, data: Any = None, request_id: int | str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        #: The id of the request it answers, when one could be read from a bad request.
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request; ``id`` is ``None`` for a notification."""

    method: str
    params: dict[str, Any]
    id: int | str | None
    is_notification: bool


def parse_request(line: bytes) -> Request:
    """Parse one line.

    Raises:
        ApiError: ``PARSE_ERROR`` (not JSON) or ``INVALID_REQUEST`` (not a JSON-RPC 2.0 request
            object; ``data`` carries the id if one could be read).
    """
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(PARSE_ERROR, f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ApiError(INVALID_REQUEST, "a request is one JSON object per line (no batches)")
    rid = obj.get("id")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, int | str)):
        raise ApiError(INVALID_REQUEST, "id must be a string, an integer or absent")
    if obj.get("jsonrpc") != "2.0":
        raise ApiError(INVALID_REQUEST, 'jsonrpc must be "2.0"', request_id=rid)
    method = obj.get("method")
    if not isinstance(method, str) or not method:
        raise ApiError(INVALID_REQUEST, "method must be a non-empty string", request_id=rid)
    params = obj.get("params", {})
    if not isinstance(params, dict):
        raise ApiError(
            INVALID_REQUEST, "params must be an object (named parameters)", request_id=rid
        )
    return Request(method, params, rid, "id" not in obj)


def result_line(rid: int | str | None, result: Any) -> bytes:
    """The answer to request ``rid``."""
    return _line({"jsonrpc": "2.0", "id": rid, "result": result})


def error_line(rid: int | str | None, error: ApiError) -> bytes:
    """An error answer (``rid`` ``None`` when the request's id could not be read)."""
    err: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.data is not None:
        err["data"] = error.data
    return _line({"jsonrpc": "2.0", "id": rid, "error": err})


def notification_line(method: str, params: dict[str, Any]) -> bytes:
    """A notification from the server (no answer expected)."""
    return _line({"jsonrpc": "2.0", "method": method, "params": params})


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
