"""Device process of ``bench/catchup_bench.py``: one real client, one phase, one JSON line.

Not meant to be run by hand. Usage:
``python bench/_catchup_device.py MODE HOME COUNT [TO [SENDER]]``.

* ``send``: open the device, connect, queue ``COUNT`` end-to-end messages to account ``TO``
  with ``Client.send()`` (what an app calls), wait until the relay stored every one (✓ on
  all), and print ``{"event": "done", ...}``. ``SENDER`` is how the sends are made:
  ``burst`` (the default): all ``COUNT`` started at once and awaited together, as an app that
  sends a batch (a paste, a forwarded batch, a bot) does; ``sequential``: one at a time, each
  awaited before the next (each ``send()`` returns once its message is durable, so this is one
  fsync'd transaction per message at least: a person typing, at machine speed).
* ``receive``: open the device (offline until now, its messages queued at the relay), connect,
  wait until ``COUNT`` messages were decrypted, committed and shown (``MessageReceived``), then
  until the delivered receipts it sent back were stored by the relay (its outbox empty), and
  print ``done``.

Figures (all from this process): ``elapsed_s`` from just before ``start()`` to the last
message, ``cpu_s`` (user + system of this process over the same span, all threads),
``transactions`` (SQLite ``BEGIN`` statements on the device's store connections, counted by
a ``sqlite3.Connection`` subclass installed here, which costs the client well under a µs per
statement) and ``commits``.
Every wait has a deadline; a phase that does not finish prints ``done`` with
``"complete": false``.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

#: Deadline of one phase (seconds): 10,000 messages take ~25 s today; generous.
PHASE_TIMEOUT = 600.0
#: How long the receiver waits for its receipts to be stored after the last message.
RECEIPTS_TIMEOUT = 120.0

_counts = {"transactions": 0, "commits": 0}
_real_connect = sqlite3.connect


class _CountingConnection(sqlite3.Connection):
    """A connection that counts the transactions (``BEGIN`` … ``COMMIT``) run on it.

    Not with a trace callback: since Python 3.11 that is handed every statement's *expanded*
    SQL, each bound blob (ciphertexts, session records) written out in hex, which costs ~40 µs
    per 2 KB blob — more than the statement itself — and would be counted as the client's CPU
    (it was, until 2026-12-03: ~100 µs per message on the sender). Every transaction the client
    store runs starts and ends with ``Connection.execute``.
    """

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        if sql[:1] in "BC":  # cheap: the client's statements are upper case, unindented
            if sql.startswith("BEGIN"):
                _counts["transactions"] += 1
            elif sql.startswith("COMMIT"):
                _counts["commits"] += 1
        return super().execute(sql, *args)


def _counted_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    """``sqlite3.connect`` with a connection that counts transactions."""
    kwargs.setdefault("factory", _CountingConnection)
    return _real_connect(*args, **kwargs)


sqlite3.connect = _counted_connect  # type: ignore[assignment]  # before tidings opens a store


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sys_cpu() -> float:
    """The kernel's part of :func:`_cpu` (writes, fsyncs, socket calls)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def send_phase(home: Path, count: int, to: str, sender: str) -> dict[str, object]:
    from tidings.client import Client, StatusChanged
    from tidings.delivery import Status

    client = Client(home)
    events = client.events()
    await client.start()
    await client.wait_connected(30)
    tx0, cpu0, sys0, t0 = dict(_counts), _cpu(), _sys_cpu(), time.monotonic()
    pending: set[bytes] = set()
    if sender == "burst":
        sends = [client.send(to, f"catch-up message {i:05d}") for i in range(count)]
        pending.update(await asyncio.gather(*sends))
    elif sender == "sequential":
        for i in range(count):
            pending.add(await client.send(to, f"catch-up message {i:05d}"))
    else:
        raise ValueError(f"unknown sender {sender!r}")
    queued_s = time.monotonic() - t0
    failed = 0
    deadline = t0 + PHASE_TIMEOUT
    while pending and time.monotonic() < deadline:
        try:
            event = await events.next(deadline - time.monotonic())
        except TimeoutError:
            break
        if isinstance(event, StatusChanged) and event.message_id in pending:
            if event.overall is Status.FAILED:
                failed += 1
                pending.discard(event.message_id)
            elif event.overall >= Status.SENT:
                pending.discard(event.message_id)
    elapsed = time.monotonic() - t0
    cpu, sys_cpu = _cpu() - cpu0, _sys_cpu() - sys0
    await client.close()
    return {
        "complete": not pending and not failed,
        "messages": count,
        "failed": failed,
        "queued_s": queued_s,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "sys_cpu_s": sys_cpu,
        "transactions": _counts["transactions"] - tx0["transactions"],
        "commits": _counts["commits"] - tx0["commits"],
    }


async def receive_phase(home: Path, count: int) -> dict[str, object]:
    from tidings.client import Client, MessageReceived

    client = Client(home)
    events = client.events()
    tx0, cpu0, t0 = dict(_counts), _cpu(), time.monotonic()
    await client.start()
    received = 0
    first_at: float | None = None
    deadline = t0 + PHASE_TIMEOUT
    while received < count and time.monotonic() < deadline:
        try:
            event = await events.next(deadline - time.monotonic())
        except TimeoutError:
            break
        if isinstance(event, MessageReceived):
            received += 1
            if first_at is None:
                first_at = time.monotonic() - t0
    elapsed = time.monotonic() - t0
    cpu = _cpu() - cpu0
    tx = _counts["transactions"] - tx0["transactions"]
    commits = _counts["commits"] - tx0["commits"]
    drained = await client.drain(RECEIPTS_TIMEOUT)
    receipts_s = time.monotonic() - t0
    await client.close()
    return {
        "complete": received == count and drained,
        "messages": count,
        "received": received,
        "first_message_s": first_at,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "transactions": tx,
        "commits": commits,
        "receipts_stored": drained,
        "receipts_stored_s": receipts_s,
    }


def main(argv: list[str]) -> int:
    mode, home, count = argv[0], Path(argv[1]), int(argv[2])
    try:
        if mode == "send":
            sender = argv[4] if len(argv) > 4 else "burst"
            result = asyncio.run(send_phase(home, count, argv[3], sender))
        elif mode == "receive":
            result = asyncio.run(receive_phase(home, count))
        else:
            raise ValueError(f"unknown mode {mode!r}")
    except Exception as exc:
        emit("error", error=f"{type(exc).__name__}: {exc}")
        return 1
    emit("done", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
