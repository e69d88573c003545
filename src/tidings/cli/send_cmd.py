"""``tidings send``: write a message to the outbox, send it, and wait for a status."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ..client import Client, Disconnected, StatusChanged
from ..delivery import Status, glyph
from ..errors import ConfigError
from .common import _common, _print, home_of
from .show import _show_event

#: Statuses ``send --wait`` can wait for, and what counts as reaching them.
WAIT_FOR = {"none": None, "sent": Status.SENT, "delivered": Status.DELIVERED, "read": Status.READ}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommand."""
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
