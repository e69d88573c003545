"""JSON over HTTP for the web app's routes: a request's params in, an answer out.

The answers have the local API's shape (docs/api.md): ``{"result": …}`` or ``{"error":
{"code", "message"[, "data"]}}``, with JSON-RPC's codes for a body that is not JSON
(:data:`PARSE_ERROR`) or not an object (:data:`INVALID_PARAMS`).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

__all__ = ["INVALID_PARAMS", "NO_METHOD", "PARSE_ERROR", "error", "json_response", "read_params"]

PARSE_ERROR = -32700
INVALID_PARAMS = -32602
NO_METHOD = -32601


class BadBody(Exception):
    """The body is not a JSON object: :attr:`response` says so."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


async def read_params(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``). Raises :class:`BadBody`."""
    try:
        params = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadBody(error(PARSE_ERROR, "the body is not JSON", status=400)) from None
    if not isinstance(params, dict):
        raise BadBody(error(INVALID_PARAMS, "params must be an object", status=400))
    return params


def error(code: int, message: str, data: Any = None, *, status: int = 200) -> web.Response:
    """An error answer (HTTP ``status``: 200 for a method's own errors, as the API socket)."""
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return json_response({"error": body}, status)


def json_response(obj: object, status: int = 200) -> web.Response:
    """``obj`` as a JSON answer (UTF-8, not escaped)."""
    return web.Response(
        text=json.dumps(obj, ensure_ascii=False), status=status, content_type="application/json"
    )
