"""The web app's fault-lab routes (the page is ``static/lab.html`` and ``lab.js``).

- ``GET /lab`` — the page.
- ``POST /api/lab/scenarios`` — every scenario, its sizes, and whether it can run here (kernel
  and tmpfs scenarios need root: ``reason`` says why one cannot).
- ``POST /api/lab/start`` ``{"scenario", "quick": bool = true, "seed": int | null}`` — start a
  run (one at a time); ``POST /api/lab/stop`` — interrupt it (the lab cleans up, then the
  verdict of what ran); ``POST /api/lab/state`` — the current run, or null.
- ``GET /lab/events`` — the current run as server-sent events, replayed from its start
  (:meth:`~tidings.web.labrunner.LabService.watch`), and every run started later.
- ``GET /lab/runs/ID/report.html`` — a run's full HTML report (the one ``tidings lab run``
  writes), once checked.

Errors answer ``{"error": {"code": -32000, "message"}}`` as the device API's do; nothing is
started by a request that fails.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .httpjson import NO_METHOD, BadBody, error, json_response, read_params
from .labrunner import LabError, LabService, scenario_list

__all__ = ["HEARTBEAT", "LAB_ERROR", "add_lab_routes"]

#: Seconds between keep-alive comments on an idle lab event stream (as the app's own stream).
HEARTBEAT = 15.0
#: The error code of a lab request that cannot be done (the API's "server error" range).
LAB_ERROR = -32000
#: The report's own policy: its styles and plots are inline; it runs no script.
_REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)


def add_lab_routes(app: web.Application, lab: LabService, page: bytes) -> None:
    """Add the lab's routes to ``app`` (before ``/api/{method}``: they are more specific)."""

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html")

    async def action(request: web.Request) -> web.Response:
        name = request.match_info["action"]
        try:
            result = _do(lab, name, await read_params(request))
        except BadBody as exc:
            return exc.response
        except LabError as exc:
            return error(LAB_ERROR, str(exc))
        if result is _NOT_FOUND:
            return error(NO_METHOD, f"no lab method {name!r}", status=404)
        return json_response({"result": result})

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        try:
            await response.write(b": tidings lab\n\n")
            async for message in lab.watch(HEARTBEAT):
                if message is None:
                    await response.write(b": keep-alive\n\n")
                    continue
                data = json.dumps(message, ensure_ascii=False, separators=(",", ":"))
                await response.write(f"data: {data}\n\n".encode())
        except ConnectionError:
            pass  # the page went away
        return response

    async def report(request: web.Request) -> web.StreamResponse:
        path = lab.report(request.match_info["run"])
        if path is None:
            raise web.HTTPNotFound(text="no report of that run (yet)\n")
        response = web.Response(body=path.read_bytes(), content_type="text/html")
        response.headers["Content-Security-Policy"] = _REPORT_CSP
        return response

    app.router.add_get("/lab", index)
    app.router.add_post("/api/lab/{action}", action)
    app.router.add_get("/lab/events", events)
    app.router.add_get("/lab/runs/{run}/report.html", report)


_NOT_FOUND = object()


def _do(lab: LabService, name: str, params: dict[str, Any]) -> Any:
    if name == "scenarios":
        return scenario_list()
    if name == "state":
        return lab.current.summary() if lab.current is not None else None
    if name == "stop":
        return lab.stop().summary()
    if name == "start":
        scenario, seed = params.get("scenario"), params.get("seed")
        quick = params.get("quick", True)
        if not isinstance(scenario, str):
            raise LabError("give the scenario's name")
        if not isinstance(quick, bool):
            raise LabError("quick is true or false")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise LabError("the seed is a whole number ≥ 0")
        return lab.start(scenario, quick=quick, seed=seed).summary()
    return _NOT_FOUND
