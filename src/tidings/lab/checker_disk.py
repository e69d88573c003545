"""The checker's rules for a full disk (``disk-full``, :mod:`.scenarios_disk`).

They apply to a run whose record holds ``disk_full`` faults (target ``server``: the relay's data
directory; a device label: that device's home), on top of :data:`.checker_rules.RULES` (``lost``
judges "everything delivered after space returns", for what was stored before the fill too).

=====================  ====  ==============================================================
kind                   G     a violation is
=====================  ====  ==============================================================
``ack_not_stored``     G1    a sender shows ✓ for a message the relay's ``sent`` table (its
                             idempotency record, written in the same transaction as the
                             queue items) does not hold: a ✓ for something not committed
``failure_hidden``     G5    a device's home was full and nothing the device recorded says
                             so (no ``storage_failed`` nor ``send_failed`` line in the window)
``refused_but_queued`` G2/3  ``send()`` said "not sent" (``send_failed``) for a body the
                             sender's store holds twice: the failed send was queued after all,
                             and the user's re-send made a second copy
``disk_full_unfelt``   —     the relay's disk was full and no send was refused
                             STORE_UNAVAILABLE: the run did not exercise a full disk
=====================  ====  ==============================================================
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator

from tidings.client.store.records import Direction

from .checker_rules import Violation
from .checker_view import RunView
from .record import Fault, SendFailed, SendRefused, StorageFailedLine

__all__ = ["DISK_KINDS", "DISK_RULES", "RELAY_DB", "SERVER_TARGET"]

DISK_KINDS = ("ack_not_stored", "failure_hidden", "refused_but_queued", "disk_full_unfelt")

#: The relay's database file in its data directory.
RELAY_DB = "relay.db"
#: The target of a ``disk_full`` fault on the relay's data directory.
SERVER_TARGET = "server"

_FAULT = "disk_full"


def _faults(view: RunView) -> list[Fault]:
    return [f for f in view.record.faults if f.kind == _FAULT]


#: The relay's idempotency records with their message ids (the key holds the id's last 6 bytes
#: first since the relay's migration 0010: tidings.store._lookup.record_key).
_SENT_ROWS = (
    "SELECT sender_account, sender_device,"
    " CAST(substr(id_key, 7) || substr(id_key, 1, 6) AS BLOB) FROM sent"
)


def _relay_sent(view: RunView) -> set[tuple[str, str]] | str:
    """``(sender device, mid hex)`` of every row of the relay's ``sent`` table, or why not."""
    server = view.record.server
    if server is None:
        return "no server line: cannot read the relay's store"
    path = view.record.path(server.data_dir) / RELAY_DB
    if not path.exists():
        return f"no relay store at {path}"
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = db.execute(_SENT_ROWS)
            return {(f"{a}.{d}", bytes(m).hex()) for a, d, m in rows.fetchall()}
        finally:
            db.close()
    except (sqlite3.Error, TypeError, ValueError) as exc:
        return f"cannot read {path}: {exc}"


def ack_not_stored(view: RunView) -> Iterator[Violation]:
    """``ack_not_stored``: every ✓ at a sender is a row the relay committed."""
    if not any(f.target == SERVER_TARGET for f in _faults(view)):
        return
    stored = _relay_sent(view)
    if isinstance(stored, str):
        yield Violation("record_error", "", stored)
        return
    for (sender, mid), row in sorted(view.sent.items()):
        if row.stored_at is not None and (sender, mid) not in stored:
            yield Violation(
                "ack_not_stored",
                mid,
                f"{sender} → {row.recipient} #{row.counter} shows ✓ (stored_at {row.stored_at:.3f})"
                " but the relay never committed it: a false ✓",
                device=sender,
            )


def failure_hidden(view: RunView) -> Iterator[Violation]:
    """``failure_hidden``: a full home the device never reported."""
    for f in _faults(view):
        if f.target == SERVER_TARGET:
            continue
        end = f.end if f.end is not None else view.record.end
        told = [
            e
            for e in view.record.events.get(f.target, ())
            if isinstance(e, StorageFailedLine | SendFailed) and f.start <= e.t <= end
        ]
        if not told:
            yield Violation(
                "failure_hidden",
                "",
                f"{f.target}'s disk was full from {f.start:.3f} to {end:.3f} and it recorded no"
                " storage failure nor refused send: the user was not told",
                device=f.target,
            )


def refused_but_queued(view: RunView) -> Iterator[Violation]:
    """``refused_but_queued``: a body refused by ``send()`` that the store holds twice."""
    if not _faults(view):
        return
    for device, events in sorted(view.record.events.items()):
        failed = {e.body for e in events if isinstance(e, SendFailed)}
        if not failed:
            continue
        snap = view.stores.get(device)
        if snap is None:
            continue
        copies = Counter(
            m.body.decode(errors="replace")
            for m in snap.messages
            if m.direction is Direction.OUT and m.sender == device
        )
        for body in sorted(failed):
            if copies[body] > 1:
                mids = [m.mid for m in snap.messages if m.body == body.encode()]
                yield Violation(
                    "refused_but_queued",
                    mids[0],
                    f"{device}: send() said not sent ({body}) yet its store holds it"
                    f" {copies[body]} times: {', '.join(mids)}",
                    device=device,
                )


def disk_full_unfelt(view: RunView) -> Iterator[Violation]:
    """``disk_full_unfelt``: the relay's full disk refused nothing (the run proved nothing)."""
    for f in _faults(view):
        if f.target != SERVER_TARGET:
            continue
        end = f.end if f.end is not None else view.record.end
        refused = sum(
            1
            for events in view.record.events.values()
            for e in events
            if isinstance(e, SendRefused) and e.code == "STORE_UNAVAILABLE"
            if f.start <= e.t <= end
        )
        if not refused:
            yield Violation(
                "disk_full_unfelt",
                "",
                f"the relay's disk was full from {f.start:.3f} to {end:.3f} and no send was"
                " refused STORE_UNAVAILABLE",
            )


DISK_RULES = (ack_not_stored, failure_hidden, refused_but_queued, disk_full_unfelt)
