"""The checker's rule for relay nodes on PostgreSQL (``node-crash``, :mod:`.scenarios_nodes`).

It applies to a run whose record holds a fault on PostgreSQL (target :data:`PG_TARGET`), on
top of :data:`.checker_rules.RULES` (lost, duplicated, reordered judge the node crash and the
Redis outage):

=====================  ====  ==============================================================
kind                   G     a violation is
=====================  ====  ==============================================================
``ack_not_durable``    G1    a sender shows ✓ for a message the lab database's ``sent``
                             table (the idempotency record, committed in the same
                             transaction as the queue items; read after the settle into
                             ``RUN/pg_sent.json``) does not hold: a ✓ for something
                             PostgreSQL did not keep across its crash
=====================  ====  ==============================================================
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from .checker_rules import Violation
from .checker_view import RunView

__all__ = ["NODE_KINDS", "NODE_RULES", "PG_SENT_FILE", "PG_TARGET", "REDIS_TARGET"]

NODE_KINDS = ("ack_not_durable",)

#: What the scenario read from the lab database after the settle (``{"sent": [[account,
#: device, mid hex], …]}``).
PG_SENT_FILE = "pg_sent.json"
#: The target of a fault on the lab's PostgreSQL, and on its Redis.
PG_TARGET = "postgres"
REDIS_TARGET = "redis"


def _pg_sent(view: RunView) -> set[tuple[str, str]] | str:
    """``(sender device, mid hex)`` of every ``sent`` row the scenario read, or why not."""
    path = view.record.run_dir / PG_SENT_FILE
    try:
        rows = json.loads(path.read_text())["sent"]
        return {(f"{a}.{int(d)}", str(m)) for a, d, m in rows}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"cannot read the database's sent rows from {path}: {exc}"


def ack_not_durable(view: RunView) -> Iterator[Violation]:
    """``ack_not_durable``: every ✓ at a sender is a row PostgreSQL still holds."""
    if not any(f.target == PG_TARGET for f in view.record.faults):
        return
    stored = _pg_sent(view)
    if isinstance(stored, str):
        yield Violation("record_error", "", stored)
        return
    for (sender, mid), row in sorted(view.sent.items()):
        if row.stored_at is not None and (sender, mid) not in stored:
            yield Violation(
                "ack_not_durable",
                mid,
                f"{sender} → {row.recipient} #{row.counter} shows ✓ (stored_at {row.stored_at:.3f})"
                " but PostgreSQL does not hold it after its restart: a false ✓",
                device=sender,
            )


NODE_RULES = (ack_not_durable,)
