"""A bounded hostile load on a relay: the flood process of ``hostile-load``
(:mod:`.scenarios_hostile`).

Usage::

    python -m tidings.lab.hostile --url ws://HOST:PORT/v1 --dir DIR --spec JSON

For ``window`` seconds, at once, it runs (every part bounded by the spec, :class:`FloodSpec`):

* ``raw`` unauthenticated TCP connections from the ``sources`` addresses: half never send a
  byte, half send the first lines of a WebSocket upgrade and stall (slowloris);
* ``idle`` peers that finish the Noise handshake with a fresh key and never send REGISTER or
  HELLO, pinging every second to look alive: the relay must close them at its ``auth_timeout``;
* a queue flood: it registers up to ``accounts`` fresh accounts (``flood0``, …; the relay's
  per-address registration budget refuses some) and each sends up to ``sends`` SENDs of random
  bytes (not end-to-end messages: a spammer's script) to every device of the ``victim``
  account, spread over the window and pipelined (at most :data:`IN_FLIGHT` unanswered),
  answered by SENT or REFUSED (QUEUE_FULL, RATE_LIMITED, …).

Then it waits (at most ``auth_timeout`` + :data:`GRACE` from each idle peer's handshake) for the
idle peers to be closed, closes everything, prints one line ``{"flood": {counters}}`` and exits
0. The counters (names in :func:`_new_stats`) are what the checker's hostile rules judge
(:mod:`.checker_hostile`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..client import register
from ..client.connect import open_channel
from ..client.events import code_name
from ..errors import RefusedError, TidingsError
from ..net.channel import ChannelClosed, FrameReceived, HandshakeDone, KeepaliveParams
from ..net.ws import ChannelConnection
from ..noise import generate_keypair
from ..wire import PROTOCOL_VERSION, Hello, Refused, Send, Sent, Target, Welcome

__all__ = ["GRACE", "IN_FLIGHT", "FloodSpec", "main"]

#: Seconds past the relay's ``auth_timeout`` an idle peer may stay open (timer slack, a loaded
#: machine) before it counts as not closed.
GRACE = 2.0
#: SENDs one flood account keeps unanswered: enough to keep the relay busy, bounded memory.
IN_FLIGHT = 32
#: Idle peers ping this often: alive at the transport, silent at the protocol.
IDLE_PING = 1.0


@dataclass(frozen=True, slots=True)
class FloodSpec:
    """How much of each attack (see the module docstring)."""

    victim: str
    victim_devices: tuple[int, ...]
    raw: int = 100
    idle: int = 20
    accounts: int = 10
    sends: int = 300
    window: float = 3.0
    auth_timeout: float = 2.0
    sources: tuple[str, ...] = ("127.0.0.2", "127.0.0.3")
    payload: int = 200

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FloodSpec:
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in obj.items()}
        return cls(**kwargs)


def _new_stats() -> dict[str, Any]:
    return {
        "raw_open": 0,  # unauthenticated connections accepted by the kernel
        "raw_failed": 0,  # connects that failed
        "raw_closed": 0,  # of those open, closed by the relay within the window
        "idle_handshakes": 0,  # idle peers whose handshake completed
        "idle_closed": 0,  # closed by the relay within auth_timeout + GRACE
        "idle_open": 0,  # still open at that deadline
        "idle_close_max": 0.0,  # the longest handshake-to-close time seen (s)
        "registered": 0,
        "connect_failed": 0,  # registered flood accounts that could not connect
        "register_refused": {},  # code name -> count
        "sends": 0,  # SENDs written
        "stored": 0,  # answered SENT
        "refused": {},  # code name -> count
        "stored_max": 0,  # the most SENT any one flood account got
        "flood_seconds": 0.0,  # the longest flood of one account, first SEND to last answer
    }


class _Peer:
    """A channel handler that notes the handshake, answers and the close."""

    def __init__(self, on_frame: Any = None) -> None:
        self.handshake = asyncio.Event()
        self.handshake_at = 0.0
        self.closed = asyncio.Event()
        self.closed_at = 0.0
        self.on_frame = on_frame

    def on_channel_event(self, conn: ChannelConnection, event: object) -> None:
        if isinstance(event, HandshakeDone):
            self.handshake_at = time.monotonic()
            self.handshake.set()
        elif isinstance(event, FrameReceived) and self.on_frame is not None:
            self.on_frame(event.frame)
        elif isinstance(event, ChannelClosed):
            self._closed()

    def on_disconnected(self, conn: ChannelConnection) -> None:
        self._closed()

    def _closed(self) -> None:
        if not self.closed.is_set():
            self.closed_at = time.monotonic()
            self.closed.set()


async def _raw(spec: FloodSpec, host: str, port: int, stats: dict[str, Any]) -> None:
    writers: list[asyncio.StreamWriter] = []
    watchers = []

    async def watch(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(4096):
                pass
            stats["raw_closed"] += 1

    for i in range(spec.raw):
        source = spec.sources[i % len(spec.sources)]
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        except OSError:
            stats["raw_failed"] += 1
            continue
        if i % 2:
            writer.write(f"GET /v1 HTTP/1.1\r\nHost: {host}\r\n".encode())  # never finished
        writers.append(writer)
        watchers.append(asyncio.ensure_future(watch(reader)))
    stats["raw_open"] = len(writers)
    await asyncio.sleep(spec.window)  # the attack's duration, not a wait for something
    for task in watchers:
        task.cancel()
    for writer in writers:
        writer.close()


async def _idle(spec: FloodSpec, url: str, stats: dict[str, Any]) -> None:
    keepalive = KeepaliveParams(ping_interval=IDLE_PING, dead_after=600.0)
    peers: list[tuple[_Peer, ChannelConnection]] = []
    for _ in range(spec.idle):
        peer = _Peer()
        private, _ = generate_keypair(os.urandom)
        with contextlib.suppress(TidingsError, TimeoutError):
            conn = await open_channel(url, peer, private, None, keepalive)
            async with asyncio.timeout(spec.auth_timeout):
                await peer.handshake.wait()
            peers.append((peer, conn))
    stats["idle_handshakes"] = len(peers)
    for peer, conn in peers:
        deadline = peer.handshake_at + spec.auth_timeout + GRACE - time.monotonic()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline)):
                await peer.closed.wait()
        if peer.closed.is_set():
            stats["idle_closed"] += 1
            took = peer.closed_at - peer.handshake_at
            stats["idle_close_max"] = round(max(stats["idle_close_max"], took), 3)
        else:
            stats["idle_open"] += 1
            conn.close()


async def _flood_account(
    spec: FloodSpec, url: str, home: Path, name: str, stats: dict[str, Any]
) -> None:
    try:
        identity = await register(home, url, name)
    except (TidingsError, TimeoutError) as exc:
        why = code_name(exc.code) if isinstance(exc, RefusedError) else type(exc).__name__
        refused = stats["register_refused"]
        refused[why] = refused.get(why, 0) + 1
        return
    stats["registered"] += 1
    slots = asyncio.Semaphore(IN_FLIGHT)
    welcomed = asyncio.Event()
    answers: Counter[str] = Counter()

    def on_frame(frame: object) -> None:
        if isinstance(frame, Welcome):
            welcomed.set()
        elif isinstance(frame, Sent | Refused):
            answers["SENT" if isinstance(frame, Sent) else code_name(frame.code)] += 1
            slots.release()

    peer = _Peer(on_frame)
    try:
        conn = await open_channel(url, peer, identity.noise_private_key, identity.server_key)
    except TidingsError:
        stats["connect_failed"] += 1  # refused at the door: the connection caps held
        return
    try:
        conn.send_frame(Hello(PROTOCOL_VERSION, 0))
        async with asyncio.timeout(spec.window):
            await welcomed.wait()
        start = time.monotonic()
        end = start + spec.window
        for k in range(spec.sends):
            if peer.closed.is_set() or time.monotonic() >= end:
                break
            pace = start + k * spec.window / spec.sends - time.monotonic()
            if pace > 0:
                await asyncio.sleep(pace)  # spread over the window: the flood lasts all of it
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, end - time.monotonic())):
                    await slots.acquire()
            if time.monotonic() >= end:
                break
            targets = tuple(
                Target(spec.victim, d, os.urandom(spec.payload)) for d in spec.victim_devices
            )
            conn.send_frame(Send(os.urandom(16), spec.victim, targets))
            stats["sends"] += 1
        for _ in range(IN_FLIGHT):  # the last answers
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.1, end - time.monotonic())):
                    await slots.acquire()
        took = time.monotonic() - start
        stats["flood_seconds"] = round(max(stats["flood_seconds"], took), 3)
    except TimeoutError:
        pass
    finally:
        conn.close()
    stored = answers.pop("SENT", 0)
    stats["stored"] += stored
    stats["stored_max"] = max(stats["stored_max"], stored)
    for code, n in answers.items():
        stats["refused"][code] = stats["refused"].get(code, 0) + n


async def _main(url: str, directory: Path, spec: FloodSpec) -> dict[str, Any]:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    stats = _new_stats()
    directory.mkdir(parents=True, exist_ok=True)
    flood = [
        _flood_account(spec, url, directory / f"flood{i}", f"flood{i}", stats)
        for i in range(spec.accounts)
    ]
    await asyncio.gather(
        _raw(spec, host, port, stats), _idle(spec, url, stats), *flood, return_exceptions=False
    )
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tidings.lab.hostile")
    p.add_argument("--url", required=True, help="the relay's ws:// URL")
    p.add_argument("--dir", required=True, type=Path, help="where the flood accounts live")
    p.add_argument("--spec", required=True, help="JSON: the FloodSpec")
    args = p.parse_args(argv)
    spec = FloodSpec.from_json(json.loads(args.spec))
    stats = asyncio.run(_main(args.url, args.dir, spec))
    sys.stdout.write(json.dumps({"flood": stats}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
