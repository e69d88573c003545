"""Worker process of ``bench/relay_bench.py``: runs several clients on one event loop.

Not meant to be run by hand. Usage: ``python bench/_bench_pair.py SPEC.json``, where the spec is
written by the orchestrator. Two modes:

* ``pairs``: for each pair, a sender client and a receiver client (both already registered).
  The worker connects them all, prints ``{"event": "ready"}``, waits for ``go`` on stdin, then
  every sender sends ``messages`` messages to its receiver and the worker prints one ``done``
  line holding the counts and the raw latencies.
* ``idle``: connect every client, print ``ready``, and stay connected doing nothing.

In both modes the worker then waits for ``stop`` (or the end of stdin: the orchestrator died),
closes its clients and exits. Every wait has a deadline. Output is JSON lines on stdout; logs
and tracebacks go to stderr.

Latencies are measured on the sender's clock only: ``send→✓`` is the ``at`` of the
``StatusChanged(SENT)`` event minus ``time.time()`` just before ``Client.send()`` was called,
``send→✓✓`` the same for ``StatusChanged(DELIVERED)``. ``send→received`` is measured at the
receiver, from the message's compose time (``sent_at``) to its ``received_at``; sender and
receiver run on the same machine, so they share the clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from tidings.client import Client, Disconnected, MessageReceived, StatusChanged
from tidings.client.client import EventStream
from tidings.delivery import Status

#: Seconds to wait for ``stop`` after the work is done before exiting anyway.
LINGER_TIMEOUT = 900.0
#: Seconds ``Client.close()`` may take, for all clients together.
CLOSE_TIMEOUT = 20.0


def emit(event: str, **fields: object) -> None:
    """Print one JSON line for the orchestrator."""
    print(json.dumps({"event": event, **fields}), flush=True)


class Pair:
    """One sender → receiver pair and what was measured on it."""

    def __init__(
        self, sender: Client, receiver: Client, to: str, spec: dict[str, Any], body: bytes
    ) -> None:
        self.sender = sender
        self.receiver = receiver
        self.to = to
        self.sender_account = sender.identity.account
        self.n = int(spec["messages"])
        self.rate = float(spec["rate"])
        self.window = int(spec["window"])
        self.body = body
        self.sender_events: EventStream = sender.events()
        self.receiver_events: EventStream = receiver.events()
        self.send_t: dict[bytes, float] = {}  # message id → time.time() before send()
        self.sent_at: dict[bytes, float] = {}  # → the at of StatusChanged(SENT)
        self.delivered_at: dict[bytes, float] = {}  # → the at of StatusChanged(DELIVERED)
        self.failed: set[bytes] = set()
        self.received: set[bytes] = set()
        self.receive_ms: list[float] = []
        self.disconnects = 0
        self.other_events = 0
        self._freed: set[bytes] = set()
        self._outstanding = 0
        self._slot = asyncio.Event()
        self.sender_done = asyncio.Event()
        self.receiver_done = asyncio.Event()

    # -------------------------------------------------------------- sender side

    async def produce(self, deadline: float) -> None:
        """Send the messages: paced at ``rate``/s, or keeping ``window`` unanswered (rate 0)."""
        start = time.monotonic()
        for i in range(self.n):
            if self.rate > 0:
                delay = start + i / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            else:
                while self._outstanding >= self.window:
                    self._slot.clear()
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        await self._slot.wait()
            if time.monotonic() >= deadline:
                raise TimeoutError
            t0 = time.time()
            mid = await self.sender.send(self.to, self.body)
            self.send_t[mid] = t0
            self._outstanding += 1
            self._free_if_answered(mid)

    def _free_if_answered(self, mid: bytes) -> None:
        if mid in self._freed or mid not in self.send_t:
            return
        if mid in self.sent_at or mid in self.delivered_at or mid in self.failed:
            self._freed.add(mid)
            self._outstanding -= 1
            self._slot.set()

    async def watch_sender(self, deadline: float) -> None:
        """Record ✓ and ✓✓ times until every message is delivered (or failed)."""
        while len(self.delivered_at) + len(self.failed) < self.n:
            event = await self.sender_events.next(max(0.0, deadline - time.monotonic()))
            if isinstance(event, StatusChanged):
                mid = event.message_id
                if event.status is Status.SENT:
                    self.sent_at.setdefault(mid, event.at)
                elif event.status in (Status.DELIVERED, Status.READ):
                    self.delivered_at.setdefault(mid, event.at)
                elif event.status is Status.FAILED:
                    self.failed.add(mid)
                self._free_if_answered(mid)
            elif isinstance(event, Disconnected):
                self.disconnects += 1
            else:
                self.other_events += 1
        self.sender_done.set()

    # -------------------------------------------------------------- receiver side

    async def watch_receiver(self, deadline: float) -> None:
        """Count the messages the receiver got from this pair's sender."""
        while len(self.received) < self.n:
            event = await self.receiver_events.next(max(0.0, deadline - time.monotonic()))
            if isinstance(event, MessageReceived):
                m = event.message
                if m.sender.account != self.sender_account or m.message_id in self.received:
                    continue
                self.received.add(m.message_id)
                if m.received_at is not None:
                    self.receive_ms.append(round((m.received_at - m.sent_at) * 1e3, 3))
            elif isinstance(event, Disconnected):
                self.disconnects += 1
        self.receiver_done.set()

    # -------------------------------------------------------------- results

    def latencies(self, answered: dict[bytes, float]) -> list[float]:
        """Milliseconds from send() to the answer, for the messages that got it."""
        out = []
        for mid, t0 in self.send_t.items():
            at = answered.get(mid)
            if at is not None:
                out.append(round((at - t0) * 1e3, 3))
        return out


async def read_command(reader: asyncio.StreamReader, timeout: float) -> str:
    """The next line on stdin ('' at its end or after ``timeout``)."""
    try:
        async with asyncio.timeout(timeout):
            line = await reader.readline()
    except TimeoutError:
        return ""
    return line.decode().strip()


#: Attempts at connecting a client before the worker gives up (see :func:`open_clients`).
CONNECT_ATTEMPTS = 3


async def open_clients(homes: list[str], timeout: float) -> tuple[list[Client], list[str], int]:
    """Create, start and connect a client per home; return them, the errors and the retries.

    A client that is not connected after ``timeout / CONNECT_ATTEMPTS`` seconds is closed and
    created again (what a user restarting the app does), at most ``CONNECT_ATTEMPTS`` times.
    """
    per_attempt = timeout / CONNECT_ATTEMPTS
    clients: list[Client | None] = [None] * len(homes)
    errors: list[str] = []
    retries = 0
    pending = list(range(len(homes)))
    for attempt in range(CONNECT_ATTEMPTS):
        for i in pending:
            old = clients[i]
            if old is not None:
                await old.close()
                retries += 1
            client = clients[i] = Client(Path(homes[i]))
            await client.start()
        waiting = [clients[i] for i in pending]
        results = await asyncio.gather(
            *(c.wait_connected(per_attempt) for c in waiting if c is not None),
            return_exceptions=True,
        )
        failed = [i for i, r in zip(pending, results, strict=True) if isinstance(r, BaseException)]
        errors = [f"{homes[i]}: not connected after {per_attempt:.0f}s" for i in failed]
        if not failed:
            break
        if attempt + 1 < CONNECT_ATTEMPTS:
            print(f"retrying {len(failed)} clients that did not connect", file=sys.stderr)
        pending = failed
    return [c for c in clients if c is not None], errors, retries


async def close_clients(clients: list[Client]) -> None:
    """Close every client, within :data:`CLOSE_TIMEOUT`."""
    try:
        await asyncio.wait_for(
            asyncio.gather(*(c.close() for c in clients), return_exceptions=True), CLOSE_TIMEOUT
        )
    except TimeoutError:
        pass


def cpu_seconds() -> float:
    """CPU time (user + system) this process used so far."""
    t = os.times()
    return t.user + t.system


async def run_pairs(spec: dict[str, Any], stdin: asyncio.StreamReader) -> list[Client]:
    """The ``pairs`` mode (see the module docstring). Returns the clients to close."""
    body = os.urandom(int(spec["payload"]))
    homes = [h for p in spec["pairs"] for h in (p["sender_home"], p["receiver_home"])]
    started = time.monotonic()
    clients, errors, retries = await open_clients(homes, float(spec["connect_timeout"]))
    if errors:
        emit("error", error=f"{len(errors)} clients did not connect: {errors[:3]}")
        return clients
    pairs = [
        Pair(clients[2 * i], clients[2 * i + 1], p["receiver"], spec, body)
        for i, p in enumerate(spec["pairs"])
    ]
    emit(
        "ready",
        clients=len(clients),
        connect_retries=retries,
        connect_s=round(time.monotonic() - started, 3),
    )
    command = await read_command(stdin, float(spec["go_timeout"]))
    if command != "go":
        emit("error", error=f"expected 'go', got {command!r}")
        return clients
    cpu0, t0 = cpu_seconds(), time.monotonic()
    deadline = t0 + float(spec["run_timeout"])
    work: list[Coroutine[Any, Any, None]] = []
    for p in pairs:
        work += [p.produce(deadline), p.watch_sender(deadline), p.watch_receiver(deadline)]
    tasks = [asyncio.ensure_future(w) for w in work]
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
    wall = time.monotonic() - t0
    emit(
        "done",
        timed_out=timed_out,
        wall_s=round(wall, 4),
        cpu_s=round(cpu_seconds() - cpu0, 4),
        pairs=len(pairs),
        sent=sum(len(p.send_t) for p in pairs),
        acked=sum(len(p.sent_at) for p in pairs),
        delivered_receipts=sum(len(p.delivered_at) for p in pairs),
        failed=sum(len(p.failed) for p in pairs),
        received=sum(len(p.received) for p in pairs),
        disconnects=sum(p.disconnects for p in pairs),
        ack_ms=[x for p in pairs for x in p.latencies(p.sent_at)],
        delivered_ms=[x for p in pairs for x in p.latencies(p.delivered_at)],
        receive_ms=[x for p in pairs for x in p.receive_ms],
    )
    return clients


async def run_idle(spec: dict[str, Any]) -> list[Client]:
    """The ``idle`` mode: connect every client and report it."""
    started = time.monotonic()
    clients, errors, retries = await open_clients(
        list(spec["homes"]), float(spec["connect_timeout"])
    )
    emit(
        "ready",
        clients=len(clients) - len(errors),
        connect_retries=retries,
        errors=errors[:3],
        connect_s=round(time.monotonic() - started, 3),
    )
    return clients


async def main_async(spec: dict[str, Any]) -> int:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    clients: list[Client] = []
    try:
        if spec["mode"] == "idle":
            clients = await run_idle(spec)
        else:
            clients = await run_pairs(spec, stdin)
        # Stay connected until told to stop (or the orchestrator is gone: stdin ends).
        await read_command(stdin, LINGER_TIMEOUT)
    finally:
        await close_clients(clients)
    return 0


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main_async(spec))
    return uvloop.run(main_async(spec))


if __name__ == "__main__":
    sys.exit(main())
