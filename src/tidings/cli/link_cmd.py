"""``tidings link`` and ``tidings link-code``: a one-use code that adds a device to this account.

``link`` shows the code as text and as a QR code drawn in the terminal; ``link-code`` (and
``link --no-qr``) the text only. With ``--send-history``, ``link`` then waits for the new device
to register with the code and sends it this device's recent history (end-to-end encrypted, in
parts that wait in the outbox like messages: see ``tidings devices --send-history``). Both go
through the daemon when one runs the device, else run the device for the request.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time

import segno

from ..client import Client, DevicesChanged
from ..client.history import MAX_HISTORY_MESSAGES
from ..errors import ConnectionBroken, DeviceBusy
from .common import _common, _config_flags, _print, _ts, config_of, home_of
from .devices_cmd import add_history_limit, send_history_to
from .exits import Exit
from .remote import DaemonDevice, Stream, open_daemon

__all__ = ["add_parsers", "cmd_link_code", "terminal_qr"]

#: Seconds ``link-code`` waits for the session and then for the relay's answer (a relay that
#: cannot be reached fails at once, with the reason).
LINK_CODE_WAIT = 30.0
#: Seconds ``--send-history`` waits for the new device beyond the code's expiry: the expiry is
#: the relay's clock, and a device that registered at the last moment is told a moment later.
LINK_GRACE = 30.0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``link-code`` and ``link``."""
    p = sub.add_parser(
        "link-code",
        help="get a one-use code to add another device to this account",
        description="Ask the relay for a one-use code (valid 10 minutes by default). Run "
        "`tidings register ACCOUNT --link-code CODE` on the new device.",
    )
    _common(p)
    _config_flags(p)
    p.set_defaults(func=cmd_link_code, qr=False, send_history=False)

    p = sub.add_parser(
        "link",
        help="add another device to this account: a one-use code, also as a QR code",
        description="Ask the relay for a one-use code (valid 10 minutes by default) and show "
        'it as text and as a QR code in the terminal (the web app\'s "this device" shows the '
        "same). On the new device run `tidings register ACCOUNT --link-code CODE`. --no-qr "
        "prints the text only (as `tidings link-code` does). --send-history waits for the new "
        "device and sends it your recent history, end-to-end encrypted.",
    )
    p.add_argument("--no-qr", dest="qr", action="store_false", help="no QR code")
    p.add_argument(
        "--send-history",
        action="store_true",
        help="wait for the new device, then send it your recent history",
    )
    add_history_limit(p, "with --send-history: ")
    _common(p)
    _config_flags(p)
    p.set_defaults(func=cmd_link_code)


def cmd_link_code(args: argparse.Namespace) -> int:
    if args.send_history and not 1 <= args.history_limit <= MAX_HISTORY_MESSAGES:
        print(f"tidings link: --history-limit must be 1..{MAX_HISTORY_MESSAGES:,}", file=sys.stderr)
        return Exit.USAGE
    return asyncio.run(_link(args))


async def _link(args: argparse.Namespace) -> int:
    home = home_of(args)
    device: Client | DaemonDevice
    try:
        device = Client(home, owner=f"tidings {args.command}", config=config_of(args))
    except DeviceBusy as busy:
        device = await open_daemon(home, busy)  # the daemon runs it: ask it
    stream: Stream | None = None
    try:
        if args.send_history:
            stream = device.events()  # before the code exists: its use cannot be missed
        code, expires = await _code(device)
        _print_code(args, code, expires)
        if stream is None:
            return 0
        return await _history_when_linked(args, device, stream, expires)
    finally:
        if stream is not None:
            stream.close()
        await device.close()


async def _code(device: Client | DaemonDevice) -> tuple[bytes, float]:
    if isinstance(device, DaemonDevice):
        return await device.link_code()
    await device.start()
    await device.wait_connected(LINK_CODE_WAIT, fail_fast=True)
    try:
        async with asyncio.timeout(LINK_CODE_WAIT):
            return await device.link_code()
    except TimeoutError:
        raise ConnectionBroken(
            f"the relay did not answer the link-code request within {LINK_CODE_WAIT:g} s"
        ) from None


def _print_code(args: argparse.Namespace, code: bytes, expires: float) -> None:
    text = (
        f"link code: {code.hex()}\nvalid until {_ts(expires)}; on the new device run:\n"
        f"  tidings register ACCOUNT --server URL --link-code {code.hex()}"
    )
    if args.qr and not args.json:
        text = f"{terminal_qr(code.hex())}\n{text}"
    _print(args, {"code": code.hex(), "expires_at": expires}, text)


async def _history_when_linked(
    args: argparse.Namespace, device: Client | DaemonDevice, stream: Stream, expires: float
) -> int:
    """Wait for a device to join this account, then queue the history for it (and, when
    this command runs the device, wait for the relay's ✓ of every part)."""
    me = device.me
    _print(
        args,
        {"event": "waiting", "until": expires},
        "waiting for the new device to register… (Ctrl-C stops waiting; `tidings devices "
        "--send-history N` sends the history later)",
    )
    wait = max(0.0, expires - time.time()) + LINK_GRACE
    added: tuple[int, ...] = ()
    try:
        async with asyncio.timeout(wait):
            async for event in stream:
                if isinstance(event, DevicesChanged) and event.account == me.account:
                    added = event.added
                    if added:
                        break
    except TimeoutError:
        _print(args, {"event": "timeout"}, "no device used the code before it expired")
        return Exit.TIMED_OUT
    for device_id in added:
        new = f"{me.account}.{device_id}"
        _print(args, {"event": "linked", "device": new}, f"{new} was linked to this account")
    return await send_history_to(args, device, list(added))


def terminal_qr(text: str) -> str:
    """``text`` as a QR code drawn with block characters (two modules per character row),
    dark on light with a quiet zone, as the web app draws it (error correction M)."""
    out = io.StringIO()
    segno.make(text, error="m").terminal(out=out, compact=True, border=2)
    return out.getvalue().rstrip("\n")
