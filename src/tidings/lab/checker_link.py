"""Liveness (G7) on what each device's connection log recorded: did it come back by itself?

The delivery rules (:mod:`.checker_rules`) prove nothing was lost, duplicated or reordered; a
device that never reconnects can pass them for a while (its messages wait in outboxes), and a
lab that tells every device "the network is back" (``reconnect_now()``) proves nothing about
the client's own backoff. These rules read the devices' connection logs
(``RUN/links/acct.N.jsonl``, :mod:`.device_log`) and the record's faults:

=================  ====  =======================================================================
kind               G     a violation is
=================  ====  =======================================================================
``unrecovered``    G7    a fault with ``reconnect_within`` (seconds) in its detail ended at
                         ``end``, and its device (the fault's target) was neither in session
                         at ``end`` nor opened a session by ``end + reconnect_within``
                         (:func:`recovered_in`): it never came back, or too late
``hinted``         G7    a fault's detail says ``hints: false`` but its device logged a start
                         with reconnect hints on: the run cannot prove the client's own backoff
=================  ====  =======================================================================

A scenario derives ``reconnect_within`` from the client settings it gave the devices with
:func:`liveness_bound`. Only faults that carry it are judged, so every other scenario is
unchanged; a run without connection logs has nothing to judge there, unless a fault asks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..client.connect import CONNECT_TIMEOUT
from .checker_rules import Violation
from .device_log import link_path
from .record import Fault
from .record_read import RunRecord

__all__ = [
    "LINK_KINDS",
    "RECOVERY_SLACK",
    "LinkEvent",
    "link_violations",
    "liveness_bound",
    "read_links",
    "recovered_in",
]

LINK_KINDS = ("unrecovered", "hinted")

#: Seconds for what follows a successful TCP connect (WebSocket upgrade, Noise handshake,
#: HELLO/WELCOME: milliseconds on the veths) and for scheduling on a loaded 2-core machine.
RECOVERY_SLACK = 3.0

_SESSION = {"connected": True, "disconnected": False, "connect_failed": False}


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """One line of a connection log (``ev``: start, connected, connect_failed, disconnected)."""

    t: float
    ev: str
    detail: dict[str, object]


def liveness_bound(reconnect_max: float, keepalive_timeout: float) -> float:
    """Seconds after a fault ended by which a device must be in session again, by itself.

    The sum of what may still be running when the fault ends: a dead connection not yet noticed
    (≤ ``keepalive_timeout``), an attempt begun during the fault that hangs until it times out
    (≤ :data:`~tidings.client.connect.CONNECT_TIMEOUT`), the backoff wait after it (≤
    ``reconnect_max``, the cap), and :data:`RECOVERY_SLACK`.
    """
    return keepalive_timeout + CONNECT_TIMEOUT + reconnect_max + RECOVERY_SLACK


def read_links(run_dir: Path, labels: list[str]) -> tuple[dict[str, list[LinkEvent]], list[str]]:
    """Every device's connection log, by label (missing files: no events), and the errors.

    A line cut by a kill -9 (not valid JSON) is skipped, as the record reader does.
    """
    links: dict[str, list[LinkEvent]] = {}
    errors: list[str] = []
    for label in labels:
        path = link_path(run_dir, label)
        events: list[LinkEvent] = []
        try:
            text = path.read_text() if path.exists() else ""
        except OSError as exc:
            errors.append(f"cannot read {path}: {exc}")
            text = ""
        for raw in text.splitlines():
            try:
                obj = json.loads(raw)
                t, ev = float(obj.pop("t")), str(obj.pop("ev"))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            events.append(LinkEvent(t, ev, obj))
        links[label] = sorted(events, key=lambda e: e.t)
    return links, errors


def _in_session(events: list[LinkEvent], at: float) -> tuple[bool, LinkEvent | None]:
    """Whether the device was in session at ``at``, and its last connection event by then."""
    last = None
    for e in events:
        if e.t > at:
            break
        if e.ev in _SESSION:
            last = e
    return (last is not None and _SESSION[last.ev]), last


def recovered_in(events: list[LinkEvent], start: float, end: float) -> float | None:
    """Seconds from the end of a fault ``[start, end]`` until the device was in session again.

    In session at ``end`` on a session opened during the fault: negative (it came back during
    the fault, e.g. through its last good address while its resolver failed); on one opened
    before the fault: 0 (the fault never cut it). Otherwise the first session opened after
    ``end``; ``None`` if there is none. What happens after that first session (a later fault
    cutting it again) is not this fault's business.
    """
    ok, last = _in_session(events, end)
    if ok and last is not None:
        return min(0.0, last.t - end) if last.t >= start else 0.0
    back = [e.t for e in events if e.t > end and e.ev == "connected"]
    return (back[0] - end) if back else None


def link_violations(record: RunRecord) -> Iterator[Violation]:
    """The ``unrecovered`` and ``hinted`` violations of a run (see the module docstring)."""
    labels = [d.label for d in record.devices]
    asked = [f for f in record.faults if "reconnect_within" in f.detail and f.end is not None]
    if not asked:
        return
    links, errors = read_links(record.run_dir, labels)
    for error in errors:
        yield Violation("record_error", "", error)
    for f in asked:
        assert f.end is not None
        events = links.get(f.target)
        if events is None:
            yield Violation("record_error", "", f"fault {f.kind} names no lab device: {f.target}")
            continue
        yield from _unrecovered(f, float(f.detail["reconnect_within"]), events)
        if f.detail.get("hints") is False:
            hinted = [e for e in events if e.ev == "start" and e.detail.get("hints") is not False]
            if hinted:
                yield Violation(
                    "hinted",
                    "",
                    f"{f.target} ran with reconnect hints ({len(hinted)} start(s)) during"
                    f" {f.kind}: its own backoff is not what reconnected it",
                    device=f.target,
                )


def _unrecovered(f: Fault, bound: float, events: list[LinkEvent]) -> Iterator[Violation]:
    assert f.end is not None
    kind, device, start, end = f.kind, f.target, f.start, f.end
    took = recovered_in(events, start, end)
    if took is not None and took <= bound:
        return
    late = f"; in session {took:.1f} s after it ended" if took is not None else "; never again"
    _, last = _in_session(events, end + bound)
    why = "no connection event at all"
    if last is not None:
        reason = last.detail.get("reason", "")
        why = f"last: {last.ev} at +{last.t - end:.1f} s ({reason})"
    yield Violation(
        "unrecovered",
        "",
        f"{device} not in session {bound:g} s after {kind} ended (the bound from its"
        f" settings){late}; {why}",
        device=device,
    )
