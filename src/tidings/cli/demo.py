"""``tidings demo``: a relay and two users on a temporary directory, ticks changing live.

Starts a real relay (SQLite, loopback, a free port), registers ``alice`` and ``bob`` as two
devices with their own stores, and has alice send a few messages. Bob's device commits each one
(✓✓ delivered goes back as an encrypted-to-be receipt through bob's outbox), then "reads" it a
moment later (read receipt). Alice's screen shows each message's status as it changes, then the
trace of the first message: every confirmation point her device saw, with times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from pathlib import Path

from ..client import Client, MessageReceived, StatusChanged, register
from ..client.client import EventStream
from ..delivery import Status, glyph
from ..e2e import format_safety_number
from ..server.app import Relay, load_or_create_key
from ..server.config import ServerConfig
from ..store import SQLiteStore

DEMO_MESSAGES = ("hi bob!", "this message is stored durably before ✓", "read me and I turn blue")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``demo`` subcommand."""
    p = sub.add_parser(
        "demo",
        help="run a relay and two users, and watch ✓ → ✓✓ → read happen",
        description="Start a relay on a temporary directory, register alice and bob, send "
        "messages from alice to bob and show their statuses changing live.",
    )
    p.add_argument("--messages", type=int, default=len(DEMO_MESSAGES), help="how many to send")
    p.add_argument("--read-delay", type=float, default=0.8, help="seconds before bob reads")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.set_defaults(func=run)


class Board:
    """Alice's view: one line per message with its status, redrawn in place on a terminal."""

    def __init__(self, out: object = sys.stdout) -> None:
        self.rows: list[tuple[bytes, str]] = []
        self.status: dict[bytes, Status] = {}
        self.tty = sys.stdout.isatty()
        self.drawn = 0

    def add(self, mid: bytes, text: str) -> None:
        self.rows.append((mid, text))
        self.status[mid] = Status.PENDING
        self.draw(f"alice composed {text!r} (in her outbox, on disk)")

    def update(self, event: StatusChanged) -> None:
        if event.message_id in self.status:
            self.status[event.message_id] = event.overall
            text = dict(self.rows)[event.message_id]
            what = {
                Status.SENT: "✓  stored durably by the relay",
                Status.DELIVERED: f"✓✓ committed by {event.device}",
                Status.READ: f"R  displayed by {event.device} (read receipt)",
                Status.EXPIRED: "✗  expired",
            }.get(event.status, event.status.name.lower())
            self.draw(f"{text!r}: {what}")

    def draw(self, note: str) -> None:
        if not self.tty:
            print(f"{time.strftime('%H:%M:%S')}  {note}", flush=True)
            return
        if self.drawn:
            sys.stdout.write(f"\x1b[{self.drawn}F\x1b[J")
        lines = ["alice → bob", *[self._row(mid, text) for mid, text in self.rows], f"  {note}"]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        self.drawn = len(lines)

    def _row(self, mid: bytes, text: str) -> str:
        status = self.status[mid]
        colour = "\x1b[34m" if status is Status.READ else ""
        reset = "\x1b[0m" if colour else ""
        return f"  {colour}{glyph(status):3}{reset} {text}  [{status.name.lower()}]"


def run(args: argparse.Namespace) -> int:
    """Entry point of ``tidings demo``."""
    logging.getLogger("picows").setLevel(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="tidings-demo-"))
    try:
        return asyncio.run(_demo(tmp, args.messages, args.read_delay))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


async def _demo(tmp: Path, count: int, read_delay: float) -> int:
    config = ServerConfig(data_dir=tmp / "relay", port=0, metrics_port=0, log_level="warning")
    relay = Relay(config, SQLiteStore(tmp / "relay.db"), load_or_create_key(tmp / "server.key"))
    await relay.start()
    assert relay.address is not None
    url = f"ws://127.0.0.1:{relay.address[1]}/v1"
    print(f"relay on {url}  key {relay.fingerprint}")
    await register(tmp / "alice", url, "alice", "alice's phone")
    await register(tmp / "bob", url, "bob", "bob's laptop")
    alice, bob = Client(tmp / "alice"), Client(tmp / "bob")
    a_events, b_events = alice.events(), bob.events()
    board = Board()
    reader: asyncio.Task[None] | None = None
    try:
        await alice.start()
        await bob.start()
        async with asyncio.timeout(10):
            await asyncio.gather(alice.wait_connected(), bob.wait_connected())
        reader = asyncio.ensure_future(_bob_reads(bob, b_events, read_delay))
        texts = [DEMO_MESSAGES[i % len(DEMO_MESSAGES)] for i in range(count)]
        ids: list[bytes] = []
        watcher = asyncio.ensure_future(_watch(board, a_events, ids, count))
        for text in texts:
            mid = await alice.send("bob", text)
            ids.append(mid)
            board.add(mid, text)
            await asyncio.sleep(0.3)  # pacing for human eyes, not for correctness
        async with asyncio.timeout(20):
            await watcher
        print("\ntrace of the first message, as alice's device saw it:")
        start = None
        for p in alice.trace(ids[0]):
            start = start or p.at
            print(f"  +{(p.at - start) * 1000:8.1f} ms  {p.point}")
        _print_e2e(alice, tmp, texts)
        return 0
    except TimeoutError:
        print("demo timed out waiting for statuses", file=sys.stderr)
        return 1
    finally:
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        await alice.close()
        await bob.close()
        await relay.stop()


def _print_e2e(alice: Client, tmp: Path, texts: list[str]) -> None:
    """Show that it was end-to-end encrypted: the safety number, and a scan of the relay."""
    number = alice.safety_number("bob")
    if number is not None:
        print("\nend-to-end encrypted (PQXDH + Double Ratchet); safety number alice ↔ bob:")
        print("  " + format_safety_number(number.number).replace("\n", "\n  "))
    stored = b"".join(p.read_bytes() for p in tmp.glob("relay*") if p.is_file())
    found = [t for t in texts if t.encode() in stored]
    print(
        f"relay storage scanned ({len(stored):,} bytes): "
        + ("no plaintext found" if not found else f"PLAINTEXT FOUND: {found}")
    )


async def _watch(board: Board, events: EventStream, ids: list[bytes], count: int) -> None:
    """Update alice's board until every message is read."""
    while len(ids) < count or any(board.status[m] is not Status.READ for m in ids):
        event = await events.next()
        if isinstance(event, StatusChanged):
            board.update(event)


async def _bob_reads(bob: Client, events: object, delay: float) -> None:
    async for event in events:  # type: ignore[attr-defined]
        if isinstance(event, MessageReceived):
            await asyncio.sleep(delay)  # bob looks at his screen a moment later
            await bob.mark_read([event.message.message_id])
