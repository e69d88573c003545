"""A client driver for the crash tests: runs one registered device home in its own process.

Usage (by path, or as ``python -m tests.proc.driver`` from the repository root)::

    driver.py --home H send --to bob --count N [--prefix P] [--batch B] [--interval S]
                            [--max-unacked W] [--wait-connected] [--hold-at K]
                            [--until-delivered] [--expect M]
    driver.py --home H receive --peer alice --count N

Every line on stdout is one JSON object, flushed at once, so a test can follow the driver by
reading its pipe (and kill it at a known point):

* ``{"connected": pattern, "url": ...}`` (the relay node's URL) / ``{"disconnected": code,
  "reason": ...}`` — session events.
* send: ``{"pending": n}`` first (entries already in the outbox, e.g. after a crash), then
  ``{"queued": hex_id, "body": ...}`` as soon as ``send()`` returned (durable in the outbox, G2)
  and ``{"sent": hex_id}`` for each ✓. With ``--hold-at K`` it prints ``{"holding": K}`` after
  composing K messages and waits for a line on stdin before composing the rest. After the last
  compose: ``{"composed": n, "outbox": size}``. It exits 0 with ``{"done": ...}`` once every
  message it composed and every message that was in its outbox at start has its ✓ (``--count 0``
  only flushes the outbox). With ``--until-delivered`` it also prints ``{"delivered": hex_id}``
  per ✓✓ and waits for ✓✓ on all of them; with ``--expect M`` it also prints ``received`` lines
  (as receive does) for the messages from ``--to``, waits until M of them are stored and
  until its outbox is empty (their ✓✓ receipts stored by the relay).
* receive: ``{"already": n}`` first (messages from the peer already in the store), then
  ``{"received": hex_id, "body": ..., "counter": n, "late": bool}`` per MessageReceived; exits 0
  with ``{"done": ...}`` once ``--count`` distinct messages from the peer are stored.
* On the deadline: ``{"timeout": ...}`` and exit code 3.

An exception in the driver's work (from ``send()`` in particular) is not caught: the driver
crashes with a traceback on stderr and exit code 1, which the test sees as a failure.

The client's reconnect backoff grows to 30 s; after a restart of the relay the driver does not
wait for it. It tells the client that the network is back, as an app does when the OS reports
connectivity: it calls :meth:`Client.reconnect_now` on every ``Disconnected`` and then every
``--reconnect-poll`` seconds (50 ms) until it is connected again. This is the driver's own
pacing, not a test sleeping, and not a workaround for a client bug: it only cuts the client's
backoff wait short (the hint the API offers for "the network came back"); the client would
reconnect by itself after it, only too late for these tests' deadlines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tidings.client import Client, Connected, Disconnected, MessageReceived, StatusChanged
from tidings.client.client import EventStream
from tidings.client.store import Direction
from tidings.delivery import ContentKind, Status, direct_conversation

#: Exit code on the deadline (as ``tidings send`` uses for a timeout).
EXIT_TIMEOUT = 3


def emit(obj: dict[str, Any]) -> None:
    """Print one JSON line and flush it at once (the test reads it as it comes)."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Driver:
    """One client home: the client, its printed events, the reconnect watchdog, ✓ and arrivals."""

    def __init__(self, home: Path, args: argparse.Namespace) -> None:
        self.args = args
        # No profile keys (sealed sender): a scenario sizes queues by the messages it sends;
        # a PROFILE_KEY after the first message to each contact would take one slot more.
        self.client = Client(home, share_profile_key=False)
        self.offline = asyncio.Event()  #: set while not in session
        self.offline.set()
        self.connected = asyncio.Event()  #: set while in session
        self.changed = asyncio.Event()  #: set whenever ``sent`` or ``received`` grows
        self.sent: set[bytes] = set()
        self.delivered: set[bytes] = set()  #: ✓✓ (or read) at every recipient device
        self.received: set[bytes] = set()
        self.peer: str | None = args.peer if args.mode == "receive" else None
        if args.mode == "send" and args.expect:
            self.peer = args.to
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # The event stream registers on creation: it sees everything from the first connect.
        self._pump = asyncio.ensure_future(self._pump_events(self.client.events()))
        await self.client.start()

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        await self.client.close()

    async def _pump_events(self, stream: EventStream) -> None:
        while True:
            event = await stream.next()
            if isinstance(event, Connected):
                self.connected.set()
                self.offline.clear()
                emit({"connected": event.pattern, "url": self.client.relay_url})
            elif isinstance(event, Disconnected):
                self.connected.clear()
                self.offline.set()
                emit({"disconnected": event.code, "reason": event.reason, "fatal": event.fatal})
                self.client.reconnect_now()
            elif isinstance(event, StatusChanged):
                mid = event.message_id
                if event.status is Status.SENT and mid not in self.sent:
                    self.sent.add(mid)
                    emit({"sent": mid.hex()})
                    self.changed.set()
                elif event.status is Status.FAILED:
                    emit({"failed": mid.hex()})
                if event.overall in (Status.DELIVERED, Status.READ) and mid not in self.delivered:
                    self.delivered.add(mid)
                    emit({"delivered": mid.hex()})
                    self.changed.set()
            elif isinstance(event, MessageReceived):
                m = event.message
                if m.direction is Direction.IN and m.sender.account == self.peer:
                    emit(
                        {
                            "received": m.message_id.hex(),
                            "body": m.body.decode(),
                            "counter": m.counter,
                            "late": event.late,
                        }
                    )
                    self.received.add(m.message_id)
                    self.changed.set()

    async def watchdog(self) -> None:
        """While offline, tell the client the network is back (:meth:`Client.reconnect_now`)
        at once and then every ``--reconnect-poll`` seconds until it is connected: a hint, as
        an app gives on a connectivity change (see the module docstring). Idle while online."""
        while True:
            await self.offline.wait()
            self.client.reconnect_now()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.args.reconnect_poll):
                    await self.connected.wait()

    async def wait_until(self, done: Callable[[], bool]) -> None:
        while not done():
            self.changed.clear()
            await self.changed.wait()


def stored_from(client: Client, peer: str) -> set[bytes]:
    """The ids of the messages from ``peer`` shown in the client's store."""
    conversation = direct_conversation(client.me.account, peer)
    stored = client.store.messages(conversation, limit=10**9)
    return {m.message_id for m in stored if m.direction is Direction.IN}


async def read_stdin_line() -> str:
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def do_send(driver: Driver, args: argparse.Namespace) -> dict[str, Any]:
    pending = driver.client.store.pending()
    tracked = {i.message_id for i in pending if i.kind is ContentKind.MESSAGE}
    emit({"pending": len(tracked)})
    if args.wait_connected:
        await driver.connected.wait()
    for n in range(args.count):
        if args.hold_at is not None and n == args.hold_at:
            emit({"holding": n})
            await read_stdin_line()
        if args.max_unacked:
            await driver.wait_until(lambda: len(tracked - driver.sent) < args.max_unacked)
        body = f"{args.prefix}{n}"
        mid = await driver.client.send(args.to, body)  # an exception crashes the driver
        tracked.add(mid)
        emit({"queued": mid.hex(), "body": body})
        if (n + 1) % args.batch == 0:
            # Let the connection run between batches (send() itself only waits for its
            # commit, one turn of the loop, so few ✓ are processed within a batch).
            await asyncio.sleep(args.interval)
    emit({"composed": args.count, "outbox": driver.client.store.outbox_size()})
    await driver.wait_until(lambda: tracked <= driver.sent)
    if args.until_delivered:
        await driver.wait_until(lambda: tracked <= driver.delivered)
    if args.expect:
        driver.received |= stored_from(driver.client, args.to)
        await driver.wait_until(lambda: len(driver.received) >= args.expect)
        await driver.client.drain(args.deadline)  # their ✓✓ receipts reach the relay
    return {"done": "send", "acked": len(tracked), "outbox": driver.client.store.outbox_size()}


async def do_receive(driver: Driver, args: argparse.Namespace) -> dict[str, Any]:
    already = stored_from(driver.client, args.peer)
    driver.received |= already
    emit({"already": len(already)})
    await driver.wait_until(lambda: len(driver.received) >= args.count)
    return {"done": "receive", "stored": len(driver.received)}


async def run(args: argparse.Namespace) -> int:
    driver = Driver(Path(args.home), args)
    await driver.start()
    watchdog = asyncio.ensure_future(driver.watchdog())
    work = do_send(driver, args) if args.mode == "send" else do_receive(driver, args)
    code = 0
    try:
        async with asyncio.timeout(args.deadline):
            result = await work
    except TimeoutError:
        result = {"timeout": args.deadline, "acked": len(driver.sent)}
        result["stored"] = len(driver.received)
        code = EXIT_TIMEOUT
    finally:  # any other exception propagates (traceback, exit code 1) after a clean close
        watchdog.cancel()
        await asyncio.gather(watchdog, return_exceptions=True)
        await driver.close()
    emit(result)
    return code


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="drive one tidings client home (crash tests)")
    p.add_argument("--home", required=True, help="a registered device home")
    p.add_argument("--deadline", type=float, default=60.0, help="give up after this (s)")
    p.add_argument(
        "--reconnect-poll", type=float, default=0.05, help="reconnect interval while offline (s)"
    )
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("send", help="compose messages and wait for every ✓")
    s.add_argument("--to", required=True)
    s.add_argument("--count", type=int, required=True, help="messages to compose (0: flush)")
    s.add_argument("--prefix", default="m")
    s.add_argument("--batch", type=int, default=1, help="composes between two yields")
    s.add_argument("--interval", type=float, default=0.0, help="pause after each batch (s)")
    s.add_argument("--max-unacked", type=int, default=0, help="compose only below this")
    s.add_argument("--wait-connected", action="store_true", help="compose once connected")
    s.add_argument("--hold-at", type=int, help="after this many, wait for a line on stdin")
    s.add_argument("--until-delivered", action="store_true", help="then wait for every ✓✓")
    s.add_argument("--expect", type=int, default=0, help="then wait for this many from --to")
    r = sub.add_parser("receive", help="wait until --count messages from --peer are stored")
    r.add_argument("--peer", required=True)
    r.add_argument("--count", type=int, required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
