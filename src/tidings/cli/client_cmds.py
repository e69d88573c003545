"""Client commands: ``register``, ``listen``, ``read-receipts`` (``link``, ``send`` and ``trace``
are in link_cmd.py, send_cmd.py and trace_cmd.py).

Each works on one device's home directory (``--home``, or ``TIDINGS_HOME``, or
``~/.local/share/tidings/default``). Human output by default; ``--json`` prints one JSON object
per line for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from ..client import Client, Disconnected, MessageReceived, StorageFailed, register
from ..client.config import check_read_receipts
from ..client.home import prepare_home
from ..client.lock import DeviceLock
from ..client.relays import parse_relay_urls
from ..client.store import ClientStore
from ..errors import ConfigError, DeviceBusy, StoreUnavailable
from . import link_cmd, send_cmd, trace_cmd
from .common import _common, _config_flags, _hex, _print, config_of, home_of
from .remote import DAEMON, Device, open_daemon
from .show import _show_event

#: Unseen messages ``listen`` reads (and shows first) at a time; it shows them all, page by page.
UNSEEN_FIRST = 1_000
#: Printed messages marked seen in one transaction at most (a burst is marked at its end).
SEEN_BATCH = 256
#: Seconds `listen --count` waits for its receipts to reach the relay before exiting.
DRAIN_ON_EXIT = 10.0


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
    p.add_argument(
        "--server",
        action="append",
        metavar="URL",
        help="relay URL, e.g. ws://127.0.0.1:7400/v1 (env TIDINGS_SERVER); a relay with several "
        "nodes: repeat it or separate with commas, preferred first",
    )
    p.add_argument("--device-name", default="", help="a name for this device")
    p.add_argument("--link-code", help="code from `tidings link-code` (hex)")
    _common(p)
    p.set_defaults(func=cmd_register)

    link_cmd.add_parsers(sub)

    send_cmd.add_parser(sub)

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
    _config_flags(p)
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser(
        "read-receipts",
        help="turn read receipts on or off for this device",
        description="With read receipts off, this device still sends delivered receipts (✓✓) "
        "but never tells senders that a message was displayed. A read_receipts client setting "
        "(`tidings config`) wins over this one.",
    )
    p.add_argument("state", choices=["on", "off"])
    _common(p)
    _config_flags(p)
    p.set_defaults(func=cmd_read_receipts)

    trace_cmd.add_parser(sub)


# ---------------------------------------------------------------- register


def cmd_register(args: argparse.Namespace) -> int:
    given = args.server or [os.environ.get("TIDINGS_SERVER", "")]
    if not any(u.strip(" ,") for u in given):
        raise ConfigError("give the relay URL with --server or TIDINGS_SERVER")
    urls = parse_relay_urls(given)  # a bad one: one line, and nothing is created
    code = _hex(args.link_code, "link code") if args.link_code else None
    home = home_of(args)
    identity = asyncio.run(register(home, urls, args.account, args.device_name, code))
    _print(
        args,
        {"account": identity.account, "device_id": identity.device_id, "home": str(home)},
        f"registered {identity.account}.{identity.device_id} in {home}",
    )
    return 0


# ---------------------------------------------------------------- listen


def cmd_listen(args: argparse.Namespace) -> int:
    config = config_of(args)

    async def go() -> int:
        home = home_of(args)
        client: Device
        try:
            client = Client(home, owner=f"tidings {args.command}", config=config)
        except DeviceBusy as busy:
            client = await open_daemon(home, busy)  # the daemon runs it: listen through it
        stream = client.events()
        received = 0
        shown: list[bytes] = []  # printed, not yet marked seen
        first: set[bytes] = set()  # printed as unseen: a daemon may report them again below
        try:
            # First what earlier runs stored but never showed (a Ctrl-C between the commit
            # and the print; what a daemon received), all of it, a page at a time, then what
            # comes; each is marked seen only after it was printed. Pages follow one another
            # by display order, not by what was marked (a daemon marks when it gets to it).
            after = 0
            while not args.count or received < args.count:  # bounded: ``after`` only grows
                want = min(UNSEEN_FIRST, args.count - received) if args.count else UNSEEN_FIRST
                page = client.unseen(want, after)
                for m in page:
                    _show_event(args, MessageReceived(m))
                    shown.append(m.message_id)
                    first.add(m.message_id)
                    received += 1
                if shown:
                    if args.read:  # shown now, so read now (as the messages that come below)
                        await client.mark_read(shown)
                    client.mark_seen(shown)
                    shown.clear()
                if len(page) < want or page[-1].shown is None:
                    break
                after = page[-1].shown
            if args.count and received >= args.count:
                return 0
            if isinstance(client, Client):  # through a daemon, its connection is the daemon's
                urls = client.identity.server_urls
                _print(
                    args,
                    {"event": "connecting", "url": urls[0], "urls": list(urls)},
                    f"= connecting to {' or '.join(urls)}",
                )
            await client.start()
            async for event in stream:
                if isinstance(event, StorageFailed):  # one line on stderr, exit 5 (main)
                    raise StoreUnavailable(event.state, event.message)
                if isinstance(event, MessageReceived) and event.message.message_id in first:
                    continue  # committed after the daemon's subscription, shown above
                _show_event(args, event)
                if isinstance(event, MessageReceived):
                    received += 1
                    shown.append(event.message.message_id)
                    if args.read:
                        await client.mark_read([event.message.message_id])
                    if not stream.pending() or len(shown) >= SEEN_BATCH:
                        client.mark_seen(shown)  # one transaction per burst, after printing
                        shown.clear()
                    if args.count and received >= args.count:
                        # Let the receipts just queued reach the relay before exiting.
                        await client.drain(DRAIN_ON_EXIT)
                        return 0
                if isinstance(event, Disconnected) and event.fatal:
                    raise ConfigError(client.fatal_message)
        finally:
            if shown and client.storage_failed is None:
                client.mark_seen(shown)  # printed before the stop (Ctrl-C, --timeout)
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
        async with asyncio.timeout(timeout):
            return int(await coro)
    except TimeoutError:
        return 0


# ---------------------------------------------------------------- settings


def cmd_read_receipts(args: argparse.Namespace) -> int:
    """Store the setting: by holding the device's lock, or through the daemon that runs it
    (which applies it at once)."""
    home = home_of(args)
    db = prepare_home(home)
    enabled = args.state == "on"
    check_read_receipts(config_of(args), enabled)  # a setting that would not apply
    try:
        lock = DeviceLock.acquire(home, f"tidings {args.command}")
    except DeviceBusy as busy:
        if busy.command != DAEMON:
            raise  # `listen` or `chat` would go on with the old setting: stop it first
        asyncio.run(_read_receipts_by_daemon(home, busy, enabled))
    else:
        try:
            with ClientStore(db) as store:
                store.set_read_receipts(enabled)
        finally:
            lock.release()
    _print(args, {"read_receipts": enabled}, f"read receipts {args.state}")
    return 0


async def _read_receipts_by_daemon(home: Path, busy: DeviceBusy, enabled: bool) -> None:
    daemon = await open_daemon(home, busy)  # ``busy`` again if no daemon runs the device
    try:
        await daemon.set_read_receipts(enabled)
    finally:
        await daemon.close()
