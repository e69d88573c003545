"""The local web app's HTTP server (aiohttp), inside the process that runs the device.

Routes (every request first passes :class:`~tidings.web.guard.Guard`):

- ``GET /`` — the app (``static/index.html``); ``GET /static/NAME`` — its script and style.
  Nothing is fetched from elsewhere: the page works offline, and its Content-Security-Policy
  allows only this origin.
- ``POST /api/METHOD`` — a method of the local API (:mod:`tidings.api.methods`, documented in
  docs/api.md) with the JSON body as its params: ``{"result": …}`` or ``{"error": {"code",
  "message", "data"}}``, the same results and errors as the API socket. ``link_code`` also
  answers ``qr_svg``: the code as a QR code drawn here (``segno``), for a phone to scan.
- ``GET /lab``, ``POST /api/lab/ACTION``, ``GET /lab/events`` — the interactive fault lab
  (:mod:`tidings.web.labpage`): start a scenario, watch it, read its verdict and report.
- ``GET /events`` — the device's events (the API's ``event`` notifications) as server-sent
  events, one JSON object per ``data:`` line; a comment every :data:`HEARTBEAT` seconds keeps
  proxies and the browser from timing out. A page that stops reading is cut off after
  :data:`MAX_PENDING_EVENTS` (its ``EventSource`` reconnects and the page reloads its state).

Keys and plaintext never leave this process but as the answers the page asks for.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import secrets
import socket
from importlib import resources
from typing import Any

import segno
from aiohttp import web

from ..api.forms import event_json
from ..api.methods import METHODS, call
from ..api.rpc import MAX_LINE, ApiError
from ..client import Client
from .guard import TOKEN_BYTES, Guard, Verdicts
from .httpjson import NO_METHOD, BadBody, error, json_response, read_params
from .labpage import add_lab_routes
from .labrunner import LabService

__all__ = ["HEARTBEAT", "MAX_BODY", "MAX_PENDING_EVENTS", "MAX_STREAMS", "WebApp"]

log = logging.getLogger("tidings.web")

#: Largest request body: the API socket's line limit (the largest message fits, escaped).
MAX_BODY = MAX_LINE
#: Seconds between keep-alive comments on an idle event stream (proxies cut at 30–60 s).
HEARTBEAT = 15.0
#: Events a page may leave unread before its stream is closed: ~10 MB at most, far beyond
#: any burst a page that reads at all falls behind by.
MAX_PENDING_EVENTS = 10_000
#: Seconds open requests get to finish when the app stops (event streams are ended first).
SHUTDOWN_SECONDS = 0.5
#: Event streams served at once: a few tabs; a page that opens more is misbehaving.
MAX_STREAMS = 16

_STATIC = {
    "app.js": "text/javascript",
    "app.css": "text/css",
    "icon.svg": "image/svg+xml",
    "common.js": "text/javascript",
    "groups.js": "text/javascript",
    "journey.js": "text/javascript",
    "lab.js": "text/javascript",
    "lab.css": "text/css",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


def _asset(name: str) -> bytes:
    return resources.files("tidings.web").joinpath("static", name).read_bytes()


class WebApp:
    """The web app of ``client`` on ``127.0.0.1:port`` (0: a free port; loopback only), once
    :meth:`start` ran."""

    def __init__(self, client: Client, port: int = 0) -> None:
        self.client = client
        self._port = port
        self.token = secrets.token_urlsafe(TOKEN_BYTES)
        self.guard: Guard | None = None
        self._runner: web.AppRunner | None = None
        self._streams: set[web.StreamResponse] = set()
        self._pages = {name: _asset(name) for name in ("index.html", "lab.html", *_STATIC)}
        self.lab = LabService(client.home)

    @property
    def port(self) -> int:
        if self.guard is None:
            raise RuntimeError("not started")
        return self.guard.port

    @property
    def url(self) -> str:
        """The URL to open: it carries the session token (the first visit trades it for a
        cookie)."""
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    async def start(self) -> None:
        """Bind and serve. Raises ``OSError`` when the port is taken."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self._port))
        except OSError:
            sock.close()
            raise
        self.guard = Guard(self.token, sock.getsockname()[1])
        app = web.Application(middlewares=[self._guarded], client_max_size=MAX_BODY)
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        add_lab_routes(app, self.lab, self._pages["lab.html"])
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/events", self._events)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS
        )
        try:
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            sock.close()
            await self._runner.cleanup()
            raise

    async def close(self) -> None:
        await self.lab.close()  # a running scenario is stopped and cleaned up first
        for stream in list(self._streams):
            with contextlib.suppress(Exception):
                await stream.write_eof()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---------------------------------------------------------------- the guard

    @web.middleware
    async def _guarded(self, request: web.Request, handler: Any) -> web.StreamResponse:
        assert self.guard is not None
        headers = {k.lower(): v for k, v in request.headers.items()}
        verdict = self.guard.check(
            request.method, request.path, request.query_string, headers, dict(request.cookies)
        )
        if verdict.kind is Verdicts.REFUSE:
            log.info("! refused %s %s: %s", request.method, request.path, verdict.reason)
            response: web.StreamResponse = web.Response(
                status=verdict.status, text=verdict.reason + "\n"
            )
        elif verdict.kind is Verdicts.ADOPT_TOKEN:
            response = web.Response(status=303, headers={"Location": request.path})
            response.set_cookie(
                self.guard.cookie, self.token, httponly=True, samesite="Strict", path="/"
            )
        else:
            response = await handler(request)
        if not response.prepared:
            _harden(response)
        return response

    # ---------------------------------------------------------------- routes

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=self._pages["index.html"], content_type="text/html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        return web.Response(body=self._pages[name], content_type=_STATIC[name])

    async def _api(self, request: web.Request) -> web.Response:
        name = request.match_info["method"]
        method = METHODS.get(name)
        if method is None:
            return error(NO_METHOD, f"no method {name!r}", status=404)
        try:
            params = await read_params(request)
            result = await call(self.client, method, params)
        except BadBody as exc:
            return exc.response
        except ApiError as exc:
            return error(exc.code, exc.message, exc.data)
        if name == "link_code" and isinstance(result, dict):
            result = {**result, "qr_svg": _qr_svg(str(result["code"]))}
        return json_response({"result": result})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if len(self._streams) >= MAX_STREAMS:
            return web.Response(status=503, text="too many event streams open\n")
        stream = self.client.events()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        _harden(response)
        await response.prepare(request)
        self._streams.add(response)
        try:
            await response.write(b": tidings events\n\n")
            while True:
                if stream.pending() > MAX_PENDING_EVENTS:
                    log.info("! an event stream fell %d events behind: closed", stream.pending())
                    break
                try:
                    event = await stream.next(HEARTBEAT)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                data = json.dumps(event_json(event), ensure_ascii=False)
                await response.write(f"data: {data}\n\n".encode())
        except ConnectionError:
            pass  # the page went away
        finally:
            stream.close()
            self._streams.discard(response)
        return response


def _harden(response: web.StreamResponse) -> None:
    """Headers on every answer: nothing cached, no framing, no sniffing, no Referer (the
    first URL carries the token)."""
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"


def _qr_svg(text: str) -> str:
    """``text`` as a QR code, an inline SVG (error correction M, 4 px modules)."""
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="svg", scale=4, xmldecl=False, svgns=True)
    return out.getvalue().decode()
