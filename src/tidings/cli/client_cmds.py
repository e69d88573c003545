"""Client commands: ``register``, ``link-code``, ``send``, ``listen``, ``trace``.

Each works on one device's home directory (``--home``, or ``TIDINGS_HOME``, or
``~/.local/share/tidings/default``). Human output by default; ``--json`` prints one JSON object
per line for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import datetime
import json
import os
from pathlib import Path
from typing import Any

from ..client import (
    Client,
    ClientEvent,
    Connected,
    Disconnected,
    GapDetected,
    GapSkipped,
    IdentityChanged,
    MessageReceived,
    SendRefused,
    StatusChanged,
    register,
)
from ..client.connect import DB_NAME
from ..client.store import ClientStore
from ..delivery import ContentKind, SkipReason, Status, glyph
from ..errors import ConfigError

#: Seconds `listen --count` waits for its receipts to reach the relay before exiting.
DRAIN_ON_EXIT = 10.0

DEFAULT_HOME = Path.home() / ".local" / "share" / "tidings" / "default"

#: Statuses ``send --wait`` can wait for, and what counts as reaching them.
WAIT_FOR = {"none": None, "sent": Status.SENT, "delivered": Status.DELIVERED, "read": Status.READ}


def home_of(args: argparse.Namespace) -> Path:
    """The device home chosen by ``--home`` / ``TIDINGS_HOME`` / the default."""
    if args.home:
        return Path(args.home)
    return Path(os.environ.get("TIDINGS_HOME", DEFAULT_HOME))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", help=f"device directory (env TIDINGS_HOME; default {DEFAULT_HOME})")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of text")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the client subcommands."""
    p = sub.add_parser(
        "register",
        help="register this device (a new account, or a new device with --link-code)",
        description="Create this device's keys and register it with a relay. Without "
        "--link-code it creates ACCOUNT; with a code from `tidings link-code` on an existing "
        "device it adds this device to ACCOUNT.",
    )
    p.add_argument("account", help="account name: 1-32 of a-z 0-9 _ -")
    p.add_argument("--server", help="relay URL, e.g. ws://127.0.0.1:7400/v1 (env TIDINGS_SERVER)")
    p.add_argument("--device-name", default="", help="a name for this device")
    p.add_argument("--link-code", help="code from `tidings link-code` (hex)")
    _common(p)
    p.set_defaults(func=cmd_register)

    p = sub.add_parser(
        "link-code",
        help="get a one-use code to add another device to this account",
        description="Ask the relay for a one-use code (valid 10 minutes by default). Run "
        "`tidings register ACCOUNT --link-code CODE` on the new device.",
    )
    _common(p)
    p.set_defaults(func=cmd_link_code)

    p = sub.add_parser(
        "send",
        help="send a message",
        description="Write the message to this device's durable outbox, then send it. By "
        "default waits for ✓ (stored by the server). If the server is unreachable the message "
        "stays in the outbox and goes out the next time this device connects.",
    )
    p.add_argument("to", help="recipient account")
    p.add_argument("text", help="message text")
    p.add_argument("--wait", choices=list(WAIT_FOR), default="sent", help="status to wait for")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
    _common(p)
    p.set_defaults(func=cmd_send)

    p = sub.add_parser(
        "listen",
        help="receive messages and status changes until Ctrl-C",
        description="Connect and print incoming messages and the status changes of sent "
        "messages (✓ sent, ✓✓ delivered, R read, ✗ expired) as they happen.",
    )
    p.add_argument("--read", action="store_true", help="mark shown messages read (receipts)")
    p.add_argument("--count", type=int, default=0, help="exit after this many messages")
    p.add_argument("--timeout", type=float, default=0, help="exit after this many seconds")
    _common(p)
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser(
        "read-receipts",
        help="turn read receipts on or off for this device",
        description="With read receipts off, this device still sends delivered receipts (✓✓) "
        "but never tells senders that a message was displayed.",
    )
    p.add_argument("state", choices=["on", "off"])
    _common(p)
    p.set_defaults(func=cmd_read_receipts)

    p = sub.add_parser(
        "trace",
        help="show a sent message's confirmation points",
        description="Show every confirmation point this device saw for a message: composed, "
        "written to the socket, acked by the server's TCP stack, ✓ stored, ✓✓ delivered and "
        "read per device, ✗ expired. Reads the local store only.",
    )
    p.add_argument("message_id", help="message id (hex, as printed by `tidings send`)")
    _common(p)
    p.set_defaults(func=cmd_trace)


def _ts(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S.%f")[:-3]


def _print(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    print(json.dumps(obj) if args.json else text, flush=True)


# ---------------------------------------------------------------- register, link-code


def cmd_register(args: argparse.Namespace) -> int:
    url = args.server or os.environ.get("TIDINGS_SERVER")
    if not url:
        raise ConfigError("give the relay URL with --server or TIDINGS_SERVER")
    code = _hex(args.link_code, "link code") if args.link_code else None
    home = home_of(args)
    identity = asyncio.run(register(home, url, args.account, args.device_name, code))
    _print(
        args,
        {"account": identity.account, "device_id": identity.device_id, "home": str(home)},
        f"registered {identity.account}.{identity.device_id} in {home}",
    )
    return 0


def cmd_link_code(args: argparse.Namespace) -> int:
    async def go() -> tuple[bytes, float]:
        client = Client(home_of(args))
        try:
            await client.start()
            await client.wait_connected(30)
            return await asyncio.wait_for(client.link_code(), 30)
        finally:
            await client.close()

    code, expires = asyncio.run(go())
    _print(
        args,
        {"code": code.hex(), "expires_at": expires},
        f"link code: {code.hex()}\nvalid until {_ts(expires)}; on the new device run:\n"
        f"  tidings register ACCOUNT --server URL --link-code {code.hex()}",
    )
    return 0


def _hex(text: str, what: str) -> bytes:
    try:
        return binascii.unhexlify(text.strip())
    except (binascii.Error, ValueError):
        raise ConfigError(f"the {what} must be hexadecimal") from None


# ---------------------------------------------------------------- send


def cmd_send(args: argparse.Namespace) -> int:
    want = WAIT_FOR[args.wait]

    async def go() -> int:
        client = Client(home_of(args))
        stream = client.events()
        try:
            mid = await client.send(args.to, args.text)
            _print(args, {"event": "queued", "message_id": mid.hex()}, f"queued {mid.hex()}")
            if want is None:
                return 0
            await client.start()
            try:
                await asyncio.wait_for(_wait_status(client, stream, mid, want, args), args.timeout)
            except TimeoutError:
                status = client.status(mid) or Status.PENDING
                _print(
                    args,
                    {"event": "timeout", "message_id": mid.hex(), "status": status.name.lower()},
                    f"timed out at {glyph(status)} {status.name.lower()}; the message stays in "
                    "the outbox and goes out the next time this device connects",
                )
                return 3
            return 0 if client.status(mid) not in (Status.FAILED,) else 4
        finally:
            stream.close()
            await client.close()

    return asyncio.run(go())


async def _wait_status(
    client: Client, stream: Any, mid: bytes, want: Status, args: argparse.Namespace
) -> None:
    async for event in stream:
        if isinstance(event, StatusChanged) and event.message_id == mid:
            _show_event(args, event)
            if event.overall is Status.FAILED or (
                event.overall is not Status.EXPIRED and event.overall >= want
            ):
                return
        elif isinstance(event, Disconnected) and event.fatal:
            raise ConfigError(f"the server refused this device: {event.reason}")


# ---------------------------------------------------------------- listen


def cmd_listen(args: argparse.Namespace) -> int:
    async def go() -> int:
        client = Client(home_of(args))
        stream = client.events()
        received = 0
        try:
            await client.start()
            async for event in stream:
                _show_event(args, event)
                if isinstance(event, MessageReceived):
                    received += 1
                    if args.read:
                        await client.mark_read([event.message.message_id])
                    if args.count and received >= args.count:
                        # Let the receipts just queued reach the relay before exiting.
                        await client.drain(DRAIN_ON_EXIT)
                        return 0
                if isinstance(event, Disconnected) and event.fatal:
                    return 2
        finally:
            stream.close()
            await client.close()
        return 0

    try:
        if args.timeout:
            return asyncio.run(_with_timeout(go(), args.timeout))
        return asyncio.run(go())
    except KeyboardInterrupt:
        return 0


async def _with_timeout(coro: Any, timeout: float) -> int:
    try:
        return int(await asyncio.wait_for(coro, timeout))
    except TimeoutError:
        return 0


def _show_event(args: argparse.Namespace, event: ClientEvent) -> None:
    if isinstance(event, MessageReceived):
        m = event.message
        body = m.body.decode(errors="replace")
        _print(
            args,
            {
                "event": "message",
                "message_id": m.message_id.hex(),
                "from": str(m.sender),
                "conversation": m.conversation,
                "counter": m.counter,
                "sent_at": m.sent_at,
                "body": body,
                "late": event.late,
            },
            f"[{_ts(m.received_at or m.sent_at)}] {m.sender} › {body}"
            + ("  (late)" if event.late else ""),
        )
    elif isinstance(event, StatusChanged):
        where = str(event.device) if event.device else "all"
        _print(
            args,
            {
                "event": "status",
                "message_id": event.message_id.hex(),
                "device": where,
                "status": event.status.name.lower(),
                "overall": event.overall.name.lower(),
                "at": event.at,
            },
            f"[{_ts(event.at)}] {glyph(event.status):2} {event.message_id.hex()[:12]}… "
            f"{event.status.name.lower()} at {where}",
        )
    elif isinstance(event, SendRefused):
        _show_refused(args, event)
    elif isinstance(event, (GapDetected, GapSkipped)):
        kind = "gap" if isinstance(event, GapDetected) else "gap-skipped"
        obj = {
            "event": kind,
            "conversation": event.conversation,
            "sender": str(event.sender),
            "missing": [event.missing.start, event.missing.stop - 1],
        }
        why = ""
        if isinstance(event, GapSkipped):
            obj["reason"] = str(event.reason)
            why = f" ({_SKIPPED[event.reason]})"
        _print(
            args,
            obj,
            f"! {kind}: {event.sender} messages {event.missing.start}..{event.missing.stop - 1} "
            f"missing in {event.conversation}{why}",
        )
    elif isinstance(event, Connected):
        _print(
            args, {"event": "connected", "pattern": event.pattern}, f"= connected ({event.pattern})"
        )
    elif isinstance(event, Disconnected):
        _print(
            args,
            {"event": "disconnected", "code": event.code, "reason": event.reason},
            f"= disconnected: {event.reason or event.code}",
        )
    elif isinstance(event, IdentityChanged):
        what = "a new device" if event.new_device else "a new identity key"
        _print(
            args,
            {"event": "identity-changed", "device": str(event.device), "new": event.new_device},
            f"! {event.device} has {what}: the safety number with {event.device.account}"
            f" changed (tidings safety-number {event.device.account})",
        )


#: How ``listen`` explains a skipped gap.
_SKIPPED = {
    SkipReason.TIMEOUT: "not waiting any longer",
    SkipReason.OVERFLOW: "too many messages held behind it",
    SkipReason.EXPIRED: "they expired on the relay before this device fetched them",
}


def _show_refused(args: argparse.Namespace, event: SendRefused) -> None:
    what = "" if event.kind is ContentKind.MESSAGE else f" ({event.kind.name.lower()})"
    then = "failed for good" if event.retry_at is None else f"retry at {_ts(event.retry_at)}"
    _print(
        args,
        {
            "event": "refused",
            "message_id": event.message_id.hex(),
            "recipient": event.recipient,
            "kind": event.kind.name.lower(),
            "code": event.code,
            "code_name": event.code_name,
            "reason": event.reason,
            "at": event.at,
            "retry_at": event.retry_at,
            "final": event.final,
        },
        f"[{_ts(event.at)}] {glyph(Status.FAILED if event.final else Status.PENDING):2} "
        f"{event.message_id.hex()[:12]}… to {event.recipient}{what} refused by the relay: "
        f"{event.code_name} ({event.reason}); {then}",
    )


# ---------------------------------------------------------------- settings


def cmd_read_receipts(args: argparse.Namespace) -> int:
    home = home_of(args)
    if not (home / DB_NAME).exists():
        raise ConfigError(f"{home} holds no device")
    with ClientStore(home / DB_NAME) as store:
        store.set_read_receipts(args.state == "on")
    _print(args, {"read_receipts": args.state == "on"}, f"read receipts {args.state}")
    return 0


# ---------------------------------------------------------------- trace


def cmd_trace(args: argparse.Namespace) -> int:
    mid = _hex(args.message_id, "message id")
    home = home_of(args)
    if not (home / DB_NAME).exists():
        raise ConfigError(f"{home} holds no device")
    with ClientStore(home / DB_NAME) as store:
        points = store.trace(mid)
        message = store.message(mid)
        if not points and message is None:
            raise ConfigError(f"no message {args.message_id} in {home}")
        if args.json:
            print(
                json.dumps(
                    {
                        "message_id": mid.hex(),
                        "status": (store.message_status(mid) or Status.PENDING).name.lower(),
                        "points": [
                            {"point": p.point, "at": p.at, "detail": p.detail} for p in points
                        ],
                    }
                )
            )
            return 0
        start = points[0].at if points else 0.0
        status = store.message_status(mid)
        refused = [p.point.partition(":")[2] for p in points if p.point.startswith("refused:")]
        waiting = ""
        if refused and store.outbox_item(mid) is not None:
            waiting = f"  (still in the outbox: last refused {refused[-1]}, retrying)"
        print(
            f"message {mid.hex()}  status {glyph(status or Status.PENDING)} "
            f"{(status or Status.PENDING).name.lower()}{waiting}"
        )
        names = {p.point for p in points}
        for p in points:
            delta = (p.at - start) * 1000
            detail = f"  ({p.detail})" if p.detail else ""
            print(f"  {_ts(p.at)}  +{delta:9.1f} ms  {p.point}{detail}")
        if "tcp_acked" not in names and "written" in names:
            print("  tcp_acked: unavailable (no Linux TCP_INFO, or not observed)")
    return 0
