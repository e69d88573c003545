"""A lab device process: one registered home, following its part of the workload's plan.

Usage::

    python -m tidings.lab.device --home H --events FILE --plan PLAN.json --name acct.N
                                 [--clock-file F] [--clock-skew S] [--finish-timeout S]
                                 [--reconnect-poll S] [--no-hints] [--set NAME=VALUE]…
                                 [--link-log FILE]

It runs a :class:`tidings.client.Client` on ``H`` (with the client settings ``--set`` gives,
as ``tidings --set`` does; the defaults otherwise) with the lab clock (``--clock-file``, see
:mod:`tidings.lab.clock`) plus this device's own skew (``--clock-skew``, seconds: a phone whose
clock runs fast or slow; the relay's clock stays right), composes the plan's messages at their
offsets, marks received messages read (with the plan's probability, after a random delay), and
appends what it sees to ``FILE`` as JSON lines, each with ``"t"`` (the lab clock, never skewed)
and ``"ev"``::

    {"ev": "composed", "mid", "to", "conv", "counter", "body"}     after send() returned
    {"ev": "status", "mid", "device": "acct.N" | null, "status", "overall"}
    {"ev": "received", "mid", "from": "acct.N", "conv", "counter", "late"}
    {"ev": "read", "mids": [...]}
    {"ev": "refused", "mid", "code", "final"}                  the relay refused a send
    {"ev": "send_failed", "to", "body", "state"}               send() raised StoreUnavailable
    {"ev": "storage_failed", "state", "message"}               the store cannot write: it stops

stdout, one JSON object per line, for the controller (:class:`tidings.lab.procs.DeviceProc`):

* ``{"ready": {...}}`` once the client started (with what earlier runs composed and stored);
* ``{"connected": pattern, "server_offset": s}`` (the relay's clock minus ours, from WELCOME)
  and ``{"disconnected": code, "reason": ..., "fatal": ...}`` per session;
* ``{"storage_failed": {"state", "message"}}`` if its store cannot write (disk full): the
  device then exits 5;
* ``{"progress": composed, "received": n, "delivered": k}`` (``k``: ✓✓ seen, counted per
  message and recipient device), coalesced to one per ~50 ms while things change;
* ``{"done": {...}}`` once every plan item is composed and has left the outbox (✓ or failed);
* ``{"finished": {...}}`` before a clean exit; ``{"error": ...}`` for a bad command.

stdin, one JSON object per line: ``{"cmd": "reconnect"}`` calls ``Client.reconnect_now()``;
``{"cmd": "skew", "seconds": s}`` steps the client's wall clock to the lab clock plus ``s`` (as
network time corrects a phone: a step, not a slew; answered by ``{"skewed": s}``);
``{"cmd": "link_code"}`` asks the relay for a link code (answered by ``{"link_code": hex}``);
``{"cmd": "unlink", "device_id": N}`` removes device N of the account (``{"unlinked": N}``);
``{"cmd": "push", "endpoint", "p256dh", "auth"}`` registers a Web Push subscription with the
relay (hex keys; answered by ``{"push": state}``, or an ``error`` line);
``{"cmd": "group_create" | "group_add" | "group_remove" | "group_leave", ...}`` changes a
group (:mod:`.device_groups`: a plan item to ``@NAME`` is a group message, and the device
keeps a group log); ``{"cmd": "finish"}`` (or the end of stdin: the controller is gone) stops
composing, drains the outbox for at most ``--finish-timeout`` seconds, prints ``finished``
and exits 0.

Invariants:

- A plan item is composed at most once across restarts: at start, the store's sent messages
  (durable before ``send()`` returns, G2) name the items already composed — also the one whose
  ``composed`` line a ``kill -9`` cut off, whose line is then written.
- Messages the store shows as received but the log does not (a kill between the commit and the
  log line) are logged at start, so the log names every message shown, once.
- The remaining items keep their spacing: item ``i`` is composed ``at[i] - at[first]`` seconds
  after the (re)start, measured on the loop's monotonic clock, so a jump of the lab clock moves
  the timestamps only.
- While disconnected, the device calls ``reconnect_now()`` every ``--reconnect-poll`` seconds
  (as an app does when the OS reports connectivity), so a restarted relay is found in
  milliseconds, not after the client's backoff (up to 30 s); see ``tests/proc/driver.py``.
  With ``--no-hints`` it never does (nor on a ``reconnect`` command, answered by an
  ``error`` line): the client's own backoff is all that reconnects it (the ``own-backoff``
  scenario proves it, G7).
- With ``--link-log``, every connection event goes to that file (:class:`~.device_log.LinkLog`),
  on the lab clock, with a ``start`` line per start naming the settings and the hints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

from ..client import (
    Client,
    ClientEvent,
    Connected,
    ConnectFailed,
    Disconnected,
    GroupChanged,
    MessageReceived,
    SendRefused,
    StatusChanged,
    StorageFailed,
)
from ..client.config import load_client_config, parse_sets
from ..client.store import Direction, StoredMessage
from ..clockfile import file_clock
from ..delivery import Status
from ..errors import StoreUnavailable
from .device_groups import DeviceGroups, group_log_path, group_name
from .device_log import EventLog, LinkLog, device_name
from .workload import DevicePlan, PlanItem, load_plan

#: How often the progress line may be printed (seconds).
PROGRESS_INTERVAL = 0.05


def emit(obj: dict[str, Any]) -> None:
    """Print one JSON line for the controller and flush it at once."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Device:
    """The client, the plan, the log and the controller's commands (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, plan: DevicePlan) -> None:
        self.args = args
        self.plan = plan
        clock = file_clock(Path(args.clock_file)) if args.clock_file else time.time
        self.skew: float = args.clock_skew
        self.hints: bool = not args.no_hints
        config = load_client_config(None, {}, parse_sets(args.set))
        # No profile keys, so no sealed sender, in the lab yet: with them, offline-for-days,
        # disk-full and node-crash failed their quick runs (2026-12-08, not yet diagnosed; the
        # lab's clock jumps meet the 24 h sender certificates there). The scenarios' invariants
        # are the delivery core's; sealed sends have their own end-to-end tests.
        self.client = Client(
            Path(args.home),
            config=config,
            clock=lambda: clock() + self.skew,
            share_profile_key=False,
        )
        if device_name(self.client.me) != plan.name:
            raise SystemExit(f"{args.home} is {device_name(self.client.me)}, not {plan.name}")
        self.log = EventLog(Path(args.events), clock)  # the lab clock: the record's, unskewed
        self.links = LinkLog(Path(args.link_log) if args.link_log else None, clock)
        settings = {k: v["value"] for k, v in config.describe().items()}
        self.links.write("start", hints=self.hints, settings=settings)
        run_dir = Path(args.events).parent.parent  # RUN/events/acct.N.jsonl
        self.groups = DeviceGroups(self.client, group_log_path(run_dir, plan.name), clock, emit)
        self.rng = random.Random(f"{plan.seed}-{plan.name}-reads")
        self.composed: dict[str, bytes] = {}  #: plan body -> message id
        self.unacked: set[bytes] = set()  #: composed, still in the outbox
        self.received: set[bytes] = set()
        self.delivered: set[tuple[bytes, str]] = set()  #: (message, recipient device) ✓✓
        self.read = 0
        self.offline = asyncio.Event()  #: set while not in session
        self.offline.set()
        self.connected = asyncio.Event()
        self.finish = asyncio.Event()
        self._done_sent = False
        self._progress_at = -1.0
        self._progress_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.failure: BaseException | None = None

    # ------------------------------------------------------------ start and resume

    def resume(self) -> None:
        """Learn from the store what earlier runs did; log what their kill cut off."""
        bodies = {item.body for item in self.plan.items}
        store = self.client.store
        self.groups.resume()
        for conv in store.conversations():
            for m in store.messages(conv.conversation, limit=10**9):
                if m.direction is Direction.OUT and m.sender == self.client.me:
                    body = m.body.decode(errors="replace")
                    if body in bodies:
                        self.composed[body] = m.message_id
                        if body not in self.log.composed:
                            self.log.composed_line(m)
                        if store.outbox_item(m.message_id) is not None:
                            self.unacked.add(m.message_id)
                elif m.direction is Direction.IN and m.shown is not None:
                    self.received.add(m.message_id)
                    if m.message_id.hex() not in self.log.received:
                        self.log.received_line(m, late=False)
                    if m.read_at is None:
                        self._maybe_read(m)

    async def run(self) -> int:
        stream = self.client.events()  # registered first: nothing is missed from the start
        self.resume()
        self._spawn(self._pump(stream))
        await self.client.start()
        emit(
            {
                "ready": {
                    "name": self.plan.name,
                    "pid": os.getpid(),
                    "planned": len(self.plan.items),
                    "composed": len(self.composed),
                    "received": len(self.received),
                }
            }
        )
        if self.hints:
            self._spawn(self._watchdog())
        self._spawn(self._commands())
        composer = self._spawn(self._compose())
        await self.finish.wait()
        composer.cancel()
        await asyncio.gather(composer, return_exceptions=True)
        if self.failure is not None:
            raise self.failure
        # The pump and the watchdog keep running while the outbox drains (statuses, reconnects).
        drained = await self.client.drain(self.args.finish_timeout)
        result = self._counts()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        stream.close()
        await self.client.close()
        self.log.close()
        self.links.close()
        emit({"finished": {**result, "drained": drained}})
        return 0

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A background task that raised stops the device (a crash, not a silent stall)."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self.failure is None:
            self.failure = task.exception()
            self.finish.set()

    def _counts(self) -> dict[str, Any]:
        return {
            "name": self.plan.name,
            "planned": len(self.plan.items),
            "composed": len(self.composed),
            "unacked": len(self.unacked),
            "received": len(self.received),
            "delivered": len(self.delivered),
            "read": self.read,
        }

    # ------------------------------------------------------------ the plan

    async def _compose(self) -> None:
        todo: list[PlanItem] = [i for i in self.plan.items if i.body not in self.composed]
        loop = asyncio.get_running_loop()
        base = loop.time() - (todo[0].at if todo else 0.0)
        for item in todo:
            delay = base + item.at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # the plan's pacing, not a wait for something
            group = group_name(item.to)
            try:
                if group is not None:
                    mid = await self.groups.send(group, item.body)
                else:
                    mid = await self.client.send(item.to, item.body)
            except StoreUnavailable as exc:  # "not sent": the user is told; the device stops
                self.log.write("send_failed", to=item.to, body=item.body, state=exc.state)
                raise
            self.composed[item.body] = mid
            self.unacked.add(mid)
            m = self.client.store.message(mid)
            assert m is not None, "send() returned before the message was stored"
            self.log.composed_line(m)
            self._progress()
            if delay <= 0:
                await asyncio.sleep(0)  # send() never yields: let the connection run
        self._check_done()

    def _check_done(self) -> None:
        if self._done_sent or len(self.composed) < len(self.plan.items) or self.unacked:
            return
        self._done_sent = True
        emit({"done": self._counts()})

    def _maybe_read(self, m: StoredMessage) -> None:
        if m.sender.account == self.client.me.account:
            return  # a copy of our own account's message: nothing to read
        if self.rng.random() >= self.plan.read_probability:
            return
        delay = self.rng.uniform(0.0, self.plan.read_delay)
        mid = m.message_id
        asyncio.get_running_loop().call_later(delay, lambda: self._spawn(self._mark_read(mid)))

    async def _mark_read(self, mid: bytes) -> None:
        if self.finish.is_set():
            return
        if await self.client.mark_read([mid]):
            self.read += 1
            self.log.write("read", mids=[mid.hex()])

    # ------------------------------------------------------------ events and commands

    async def _pump(self, stream: AsyncIterator[ClientEvent]) -> None:
        async for event in stream:
            if isinstance(event, MessageReceived):
                self._on_received(event)
            elif isinstance(event, StatusChanged):
                self._on_status(event)
            elif isinstance(event, GroupChanged):
                self.groups.on_changed(event)
            elif isinstance(event, SendRefused):
                mid = event.message_id.hex()
                self.log.write("refused", mid=mid, code=event.code_name, final=event.final)
            elif isinstance(event, Connected):
                self.connected.set()
                self.offline.clear()
                offset = self.client.server_time_offset  # relay clock - our clock
                self.links.write("connected", pattern=event.pattern)
                emit({"connected": event.pattern, "server_offset": offset})
            elif isinstance(event, ConnectFailed):
                self.links.write(
                    "connect_failed",
                    reason=event.reason,
                    attempt=event.attempt,
                    retry_in=event.retry_in,
                )
            elif isinstance(event, StorageFailed):
                # The device stopped (disk full, I/O error): say so and end, exit 5 (main).
                emit({"storage_failed": {"state": event.state, "message": event.message}})
                self.log.write("storage_failed", state=event.state, message=event.message)
                if self.failure is None:
                    self.failure = StoreUnavailable(event.state, event.message)
                self.finish.set()
            elif isinstance(event, Disconnected):
                self.connected.clear()
                self.offline.set()
                self.links.write(
                    "disconnected", code=event.code, reason=event.reason, fatal=event.fatal
                )
                emit({"disconnected": event.code, "reason": event.reason, "fatal": event.fatal})
                if self.hints:
                    self.client.reconnect_now()

    def _on_received(self, event: MessageReceived) -> None:
        m = event.message
        if m.message_id in self.received:
            return
        self.received.add(m.message_id)
        self.log.received_line(m, event.late)
        self._maybe_read(m)
        self._progress()

    def _on_status(self, event: StatusChanged) -> None:
        mid = event.message_id
        self.log.write(
            "status",
            mid=mid.hex(),
            device=device_name(event.device) if event.device is not None else None,
            status=event.status.name.lower(),
            overall=event.overall.name.lower(),
        )
        if event.device is not None and event.status in (Status.DELIVERED, Status.READ):
            self.delivered.add((mid, device_name(event.device)))
            self._progress()
        if mid in self.unacked and self.client.store.outbox_item(mid) is None:
            self.unacked.discard(mid)
            self._check_done()

    def _progress(self) -> None:
        """Print the progress line now or, if one went out less than ~50 ms ago, then."""
        if self._progress_timer is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._progress_at + PROGRESS_INTERVAL - loop.time()
        self._progress_timer = loop.call_later(max(0.0, wait), self._print_progress)

    def _print_progress(self) -> None:
        self._progress_timer = None
        self._progress_at = asyncio.get_running_loop().time()
        emit(
            {
                "progress": len(self.composed),
                "received": len(self.received),
                "delivered": len(self.delivered),
            }
        )

    async def _watchdog(self) -> None:
        """While offline, tell the client the network is back (:meth:`Client.reconnect_now`)
        at once and then every ``--reconnect-poll`` seconds until it is connected: a hint, as
        an app gives on a connectivity change (see the module docstring). Idle while online."""
        while True:
            await self.offline.wait()
            self.client.reconnect_now()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.args.reconnect_poll):
                    await self.connected.wait()

    async def _commands(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while not self.finish.is_set():
            raw = await reader.readline()
            if not raw:
                break  # the controller is gone: finish, leave no orphan behind
            try:
                cmd = json.loads(raw).get("cmd")
            except (ValueError, AttributeError):
                emit({"error": f"bad command {raw!r}"})
                continue
            if cmd == "reconnect" and not self.hints:
                emit({"error": "reconnect hints are off (--no-hints)"})
            elif cmd == "reconnect":
                self.client.reconnect_now()
            elif cmd == "skew":
                self.skew = float(json.loads(raw).get("seconds", 0.0))
                emit({"skewed": self.skew})
            elif cmd == "push":
                self._spawn(self._push_register(json.loads(raw)))
            elif cmd == "link_code":
                self._spawn(self._link_code())
            elif cmd == "unlink":
                self._spawn(self._unlink(int(json.loads(raw).get("device_id", 0))))
            elif isinstance(cmd, str) and cmd.startswith("group_"):
                self._spawn(self.groups.command(json.loads(raw)))
            elif cmd == "finish":
                break
            else:
                emit({"error": f"unknown command {cmd!r}"})
        self.finish.set()

    async def _link_code(self) -> None:
        """A one-use code for a new device of this account (the lab links one mid-run)."""
        try:
            code, _ = await self.client.link_code()
        except Exception as exc:  # the controller reads the reason; the device goes on
            emit({"error": f"link code failed: {exc}"})
            return
        emit({"link_code": code.hex()})

    async def _unlink(self, device_id: int) -> None:
        """Remove device ``device_id`` of this account (the lab unlinks one mid-run)."""
        try:
            ids = await self.client.unlink(device_id)
        except Exception as exc:
            emit({"error": f"unlink failed: {exc}"})
            return
        emit({"unlinked": device_id, "devices": list(ids)})

    async def _push_register(self, cmd: dict[str, Any]) -> None:
        """Register a Web Push subscription with the relay (the lab's push service)."""
        try:
            status = await self.client.push_register(
                cmd["endpoint"], bytes.fromhex(cmd["p256dh"]), bytes.fromhex(cmd["auth"])
            )
        except Exception as exc:  # the controller reads the reason; the device goes on
            emit({"error": f"push registration failed: {exc}"})
            return
        emit({"push": int(status.state)})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="a tidings lab device following its plan")
    p.add_argument("--home", required=True, help="the device's registered home")
    p.add_argument("--events", required=True, help="its events file (JSON lines, appended)")
    p.add_argument("--plan", required=True, help="the workload's plan file")
    p.add_argument("--name", required=True, help="this device, account.N")
    p.add_argument("--clock-file", help="the lab clock file (offset in seconds)")
    p.add_argument("--clock-skew", type=float, default=0.0, help="added to the clock (s)")
    p.add_argument("--finish-timeout", type=float, default=20.0, help="drain deadline (s)")
    p.add_argument("--reconnect-poll", type=float, default=0.05, help="offline poll (s)")
    p.add_argument(
        "--no-hints",
        action="store_true",
        help="never call reconnect_now(): the client's own backoff reconnects it",
    )
    p.add_argument(
        "--set", action="append", metavar="NAME=VALUE", help="a client setting (repeatable)"
    )
    p.add_argument("--link-log", help="its connection log (JSON lines, appended)")
    return p.parse_args(argv)


async def _main(args: argparse.Namespace) -> int:
    device = Device(args, load_plan(Path(args.plan), args.name))
    return await device.run()


def main(argv: list[str] | None = None) -> int:
    try:
        return asyncio.run(_main(parse_args(argv)))
    except StoreUnavailable as exc:  # already reported as {"storage_failed": …}
        print(f"lab device: {exc}", file=sys.stderr)
        return 5


if __name__ == "__main__":
    sys.exit(main())
