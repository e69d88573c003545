"""What the peers' worker processes share: the orchestrator's protocol and a pair's bookkeeping.

A peer worker (``_mqtt_worker.py``, ``_xmpp_worker.py``) speaks to the orchestrator exactly as
``bench/_bench_pair.py`` does — JSON lines on stdout (``ready``, then ``done`` with the same
fields), commands on stdin (``go``, ``stop``) — so the relay bench's report code reads both.
Only the protocol client differs; the workload shape lives here: each sender keeps ``window``
messages unanswered by the server (✓), each receiver's client sends a receipt back for every
message it gets (✓✓), and a pair is done when its sender saw ✓✓ on every message and its
receiver got every message.

Each message body is ``payload`` bytes: its sequence number and the ``time.time()`` it was sent
(``seq:time:``, ASCII so XMPP can carry it as text) padded with ``x``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

#: Seconds to wait for ``stop`` after the work is done before exiting anyway.
LINGER_TIMEOUT = 900.0


def emit(event: str, **fields: object) -> None:
    """Print one JSON line for the orchestrator."""
    print(json.dumps({"event": event, **fields}), flush=True)


def body(seq: int, size: int) -> str:
    """A message body of ``size`` characters carrying ``seq`` and the time it is made."""
    head = f"{seq}:{time.time():.6f}:"
    return head + "x" * max(0, size - len(head))


def parse_body(text: str) -> tuple[int, float]:
    """(seq, sent time) of a :func:`body`."""
    seq, sent, _ = text.split(":", 2)
    return int(seq), float(sent)


class PairStats:
    """One sender → receiver pair: the window, and what was measured on it."""

    def __init__(self, n: int, window: int) -> None:
        self.n = n
        self.window = window
        self.send_t: dict[int, float] = {}  # seq → time.time() when sent
        self.acked: dict[int, float] = {}  # seq → ms to the server's ack (✓)
        self.delivered: dict[int, float] = {}  # seq → ms to the receipt (✓✓)
        self.received: set[int] = set()
        self.receive_ms: list[float] = []
        self.disconnects = 0
        self._outstanding = 0
        self._slot = asyncio.Event()
        self.done = asyncio.Event()

    async def wait_slot(self, deadline: float) -> None:
        """Return when fewer than ``window`` messages wait for the server's ack."""
        while self._outstanding >= self.window:
            self._slot.clear()
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self._slot.wait()

    def on_send(self, seq: int) -> None:
        self.send_t[seq] = time.time()
        self._outstanding += 1

    def on_ack(self, seq: int) -> None:
        """The server acknowledged message ``seq`` (✓)."""
        t0 = self.send_t.get(seq)
        if t0 is None or seq in self.acked:
            return
        self.acked[seq] = round((time.time() - t0) * 1e3, 3)
        self._outstanding -= 1
        self._slot.set()

    def on_receipt(self, seq: int) -> None:
        """The receiver's receipt for ``seq`` came back to the sender (✓✓)."""
        t0 = self.send_t.get(seq)
        if t0 is not None and seq not in self.delivered:
            self.delivered[seq] = round((time.time() - t0) * 1e3, 3)
            self._check()

    def on_message(self, seq: int, sent: float) -> bool:
        """The receiver got message ``seq``; False if it is a duplicate."""
        if seq in self.received:
            return False
        self.received.add(seq)
        self.receive_ms.append(round((time.time() - sent) * 1e3, 3))
        self._check()
        return True

    def _check(self) -> None:
        if len(self.delivered) >= self.n and len(self.received) >= self.n:
            self.done.set()


def done_fields(pairs: list[PairStats], timed_out: bool, wall: float, cpu: float) -> dict[str, Any]:
    """The ``done`` line: the same fields as ``_bench_pair.py``'s."""
    return {
        "timed_out": timed_out,
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "pairs": len(pairs),
        "sent": sum(len(p.send_t) for p in pairs),
        "acked": sum(len(p.acked) for p in pairs),
        "delivered_receipts": sum(len(p.delivered) for p in pairs),
        "failed": 0,
        "received": sum(len(p.received) for p in pairs),
        "disconnects": sum(p.disconnects for p in pairs),
        "ack_ms": [x for p in pairs for x in p.acked.values()],
        "delivered_ms": [x for p in pairs for x in p.delivered.values()],
        "receive_ms": [x for p in pairs for x in p.receive_ms],
    }


def cpu_seconds() -> float:
    """CPU time (user + system) this process used so far."""
    t = os.times()
    return t.user + t.system


async def read_command(reader: asyncio.StreamReader, timeout: float) -> str:
    """The next line on stdin ('' at its end or after ``timeout``)."""
    try:
        async with asyncio.timeout(timeout):
            line = await reader.readline()
    except TimeoutError:
        return ""
    return line.decode().strip()


#: Closes every client a worker opened.
Closer = Callable[[], Awaitable[None]]
#: Opens the clients of a spec; returns one coroutine factory per pair (``produce(deadline)``,
#: sending that pair's messages) with the pair's stats, and a closer for every client.
Opener = Callable[
    [dict[str, Any]],
    Awaitable[tuple[list[tuple[PairStats, Callable[[float], Awaitable[None]]]], Closer]],
]
#: Opens the idle clients of a spec; returns how many connected, and a closer.
IdleOpener = Callable[[dict[str, Any]], Awaitable[tuple[int, Closer]]]


async def run_pairs(spec: dict[str, Any], stdin: asyncio.StreamReader, opener: Opener) -> Closer:
    started = time.monotonic()
    async with asyncio.timeout(float(spec["connect_timeout"])):
        pairs, closer = await opener(spec)
    emit("ready", clients=2 * len(pairs), connect_s=round(time.monotonic() - started, 3))
    command = await read_command(stdin, float(spec["go_timeout"]))
    if command != "go":
        emit("error", error=f"expected 'go', got {command!r}")
        return closer
    cpu0, t0 = cpu_seconds(), time.monotonic()
    deadline = t0 + float(spec["run_timeout"])
    tasks = [asyncio.ensure_future(produce(deadline)) for _, produce in pairs]
    tasks += [asyncio.ensure_future(stats.done.wait()) for stats, _ in pairs]
    timed_out = False
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            await asyncio.gather(*tasks)
    except TimeoutError:
        timed_out = True
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    stats = [s for s, _ in pairs]
    emit("done", **done_fields(stats, timed_out, time.monotonic() - t0, cpu_seconds() - cpu0))
    return closer


async def serve(spec: dict[str, Any], opener: Opener, idle_opener: IdleOpener) -> int:
    """The worker's life: open the clients, run the workload (or stay idle), wait for ``stop``."""
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    closer: Closer | None = None
    try:
        if spec["mode"] == "idle":
            started = time.monotonic()
            async with asyncio.timeout(float(spec["connect_timeout"])):
                connected, closer = await idle_opener(spec)
            emit("ready", clients=connected, connect_s=round(time.monotonic() - started, 3))
        else:
            closer = await run_pairs(spec, stdin, opener)
        await read_command(stdin, LINGER_TIMEOUT)  # until told to stop, or stdin ends
    finally:
        if closer is not None:
            try:
                async with asyncio.timeout(20):
                    await closer()
            except TimeoutError:
                pass
    return 0


def main(opener: Opener, idle_opener: IdleOpener) -> int:
    """Entry point of a worker: ``python WORKER.py SPEC.json``."""
    spec = json.loads(Path(sys.argv[1]).read_text())
    try:
        import uvloop
    except ImportError:
        return asyncio.run(serve(spec, opener, idle_opener))
    return uvloop.run(serve(spec, opener, idle_opener))
