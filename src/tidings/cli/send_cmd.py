"""``tidings send``: write a message to the outbox, send it, and wait for a status.

While it waits it prints each status change at each device (✓ stored by the relay, ✓✓
delivered, R read) and each refusal by the relay, once per refusal. When the wait ends without
the wanted status, one line says where the message really is (:func:`where_it_is`): still in
this device's outbox (the relay not reached, or refusing it for now), or stored by the relay
and, per device, how far it got.

Exit codes (:class:`~tidings.cli.exits.Exit`): 0 the wanted status was reached at every device
of the recipient, 3 the wait timed out, 4 the relay refused the message for good, 5 the device's
store cannot be written (disk full: the message is not queued, or its statuses cannot be
recorded).
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from typing import Any

from ..client import (
    Client,
    Connected,
    ConnectFailed,
    Disconnected,
    SendRefused,
    StatusChanged,
    StorageFailed,
)
from ..client.events import code_name
from ..client.store import ClientStore
from ..delivery import Status, glyph
from ..errors import ConfigError, DeviceBusy, StoreUnavailable
from ..refs import DeviceRef
from .common import _common, _config_flags, _print, _ts, config_of, home_of
from .exits import Exit
from .group_cmd import send_to_group
from .remote import Device, Stream, open_daemon
from .show import _show_event

#: Statuses ``send --wait`` can wait for, and what counts as reaching them.
WAIT_FOR = {"none": None, "sent": Status.SENT, "delivered": Status.DELIVERED, "read": Status.READ}

#: Seconds ``send`` waits by default: enough for a reconnect after a short outage (the client's
#: backoff is capped at 30 s) and for an online device's receipt; not so long that a script
#: hangs on a recipient who is offline (it exits 3 and says so; the relay keeps the message).
DEFAULT_TIMEOUT = 30.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "send",
        help="send a message",
        description="Write the message to this device's durable outbox, then send it and wait "
        "for a status at every device of the recipient (for a message to your own account: "
        "your other devices). By default waits for ✓ (stored by the relay). If the wait runs "
        "out, says where the message is: still in the outbox (it goes out the next time this "
        "device connects), or stored by the relay and not yet delivered to which devices. "
        "Exit 0: reached; 3: timed out; 4: refused by the relay for good; 5: this device's "
        "store cannot be written (disk full).",
    )
    p.add_argument("to", help="recipient account, or @GROUP (a group's name or id)")
    p.add_argument("text", help="message text")
    p.add_argument(
        "--wait",
        choices=list(WAIT_FOR),
        default="sent",
        help="status to wait for at every device: sent (✓, the default), delivered (✓✓), "
        "read, or none",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait (default {DEFAULT_TIMEOUT:g})",
    )
    _common(p)
    _config_flags(p)
    p.set_defaults(func=cmd_send)


@dataclass
class _Waiting:
    """What one ``send`` learned while it waited."""

    message_id: bytes
    want: Status
    connected: bool = False
    #: why the last connection attempt failed (before any session opened)
    unreachable: str = ""
    refused: SendRefused | None = None


def cmd_send(args: argparse.Namespace) -> int:
    if args.to.startswith("@") and len(args.to) > 1:  # a group: `tidings group send`
        return send_to_group(args, args.to[1:])
    want = WAIT_FOR[args.wait]
    config = config_of(args)

    async def go() -> int:
        home = home_of(args)
        client: Device
        try:
            client = Client(home, owner=f"tidings {args.command}", config=config)
        except StoreUnavailable as exc:
            raise StoreUnavailable(exc.state, f"not queued: {exc}") from exc
        except DeviceBusy as busy:
            client = await open_daemon(home, busy)  # the daemon runs it: send through it
        stream = client.events()
        try:
            try:
                mid = await client.send(args.to, args.text)
            except StoreUnavailable as exc:
                raise StoreUnavailable(exc.state, f"not queued: {exc}") from exc
            _print(args, {"event": "queued", "message_id": mid.hex()}, f"queued {mid.hex()}")
            if want is None:
                return Exit.OK
            waiting = _Waiting(mid, want)
            await client.start()
            try:
                async with asyncio.timeout(args.timeout):
                    return await _wait(client, stream, waiting, args)
            except TimeoutError:
                obj, text = where_it_is(client.store, waiting, args.to, client.me)
                _print(
                    args,
                    {"event": "timeout", "wanted": args.wait, **obj},
                    f"timed out after {args.timeout:g} s waiting for {glyph(want)} "
                    f"{want.name.lower()}: {text}",
                )
                return Exit.TIMED_OUT
        finally:
            stream.close()
            await client.close()

    return asyncio.run(go())


async def _wait(client: Device, stream: Stream, waiting: _Waiting, args: argparse.Namespace) -> int:
    """Print what happens to the message until it reaches the wanted status or fails."""
    mid = waiting.message_id
    async for event in stream:
        if isinstance(event, Connected):
            waiting.connected = True
        elif isinstance(event, ConnectFailed):
            waiting.unreachable = event.reason
            _show_event(args, event)
        elif isinstance(event, SendRefused) and event.message_id == mid:
            waiting.refused = event
            _show_event(args, event)
        elif isinstance(event, StatusChanged) and event.message_id == mid:
            if event.overall is Status.FAILED:
                _show_failed(args, client.store, mid)
                return Exit.REFUSED
            _show_event(args, event)
            if event.overall is not Status.EXPIRED and event.overall >= waiting.want:
                return Exit.OK
            if event.device is None and not _devices(client.store, mid, args.to, client.me):
                _print(
                    args,
                    {"event": "no-devices", "message_id": mid.hex(), "account": args.to},
                    f"{args.to} has no other device: there is nothing to deliver it to",
                )
                return Exit.OK
        elif isinstance(event, StorageFailed):  # one line on stderr, exit 5 (main)
            raise StoreUnavailable(event.state, event.message)
        elif isinstance(event, Disconnected) and event.fatal:
            raise ConfigError(client.fatal_message)
    return Exit.ERROR  # not reached: the stream never ends


def _devices(store: ClientStore, mid: bytes, to: str, me: DeviceRef) -> dict[DeviceRef, Status]:
    """The message's status at each device it is for (the recipient's; for a note to self,
    the other own devices)."""
    return {d: s.status for d, s in store.statuses(mid).items() if d.account == to and d != me}


def where_it_is(
    store: ClientStore, waiting: _Waiting, to: str, me: DeviceRef
) -> tuple[dict[str, Any], str]:
    """Where the message is now, as JSON fields and as words (for a wait that ran out)."""
    mid = waiting.message_id
    status = store.message_status(mid) or Status.PENDING
    devices = _devices(store, mid, to, me)
    in_outbox = store.outbox_item(mid) is not None
    obj: dict[str, Any] = {
        "message_id": mid.hex(),
        "status": status.name.lower(),
        "in_outbox": in_outbox,
        "devices": {str(d): s.name.lower() for d, s in devices.items()},
    }
    if in_outbox:
        refused = waiting.refused
        if refused is not None and refused.retry_at is not None:
            obj["refused"] = refused.code_name
            why = (
                f"the relay refused it for now ({refused.code_name}: {refused.reason}; next try "
                f"at {_ts(refused.retry_at)})"
            )
        elif waiting.connected:
            why = "the relay has not confirmed storing it"
        else:
            why = "the relay was not reached"
            if waiting.unreachable:
                obj["unreachable"] = waiting.unreachable
                why += f": {waiting.unreachable}"
        return obj, (
            f"{glyph(Status.PENDING)} still only in this device's outbox ({why}); it goes out "
            "the next time this device connects"
        )
    return obj, _per_device(devices, waiting.want)


def _per_device(devices: dict[DeviceRef, Status], want: Status) -> str:
    """How far a stored message got, per device: "✓ stored by the relay; not yet delivered to
    bob.1 (offline?)", "✓✓ delivered to bob.1; not yet to bob.2 (offline?)"."""

    def at(*statuses: Status) -> str:
        return ", ".join(str(d) for d, s in devices.items() if s in statuses)

    parts = []
    if read := at(Status.READ):
        parts.append(f"{glyph(Status.READ)} read on {read}")
    if delivered := at(Status.DELIVERED):
        later = "; not yet read there" if want is Status.READ else ""
        parts.append(f"{glyph(Status.DELIVERED)} delivered to {delivered}{later}")
    if waiting := at(Status.SENT, Status.PENDING):
        if parts:
            parts.append(f"not yet delivered to {waiting} (offline?)")
        else:
            parts.append(
                f"{glyph(Status.SENT)} stored by the relay; not yet delivered to {waiting} "
                "(offline?)"
            )
    if expired := at(Status.EXPIRED):
        parts.append(f"{glyph(Status.EXPIRED)} expired before {expired} fetched it")
    return "; ".join(parts) or f"{glyph(Status.SENT)} stored by the relay"


def _show_failed(args: argparse.Namespace, store: ClientStore, mid: bytes) -> None:
    """The final state of a message the relay refused for good."""
    m = store.message(mid)
    code = m.failed_code if m is not None and m.failed_code is not None else 0
    reason = (m.failed_reason if m is not None else None) or ""
    _print(
        args,
        {
            "event": "failed",
            "message_id": mid.hex(),
            "status": "failed",
            "code": code,
            "code_name": code_name(code),
            "reason": reason,
        },
        f"{glyph(Status.FAILED)} not sent: the relay refused it for good ({code_name(code)}: "
        f"{reason}); it is no longer in the outbox",
    )
