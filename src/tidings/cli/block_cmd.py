"""``tidings block CONTACT`` / ``tidings unblock CONTACT`` (and ``tidings block`` alone: the list).

Blocking drops what CONTACT sends from then on (sealed or not; not shown) and rotates this
account's profile key: the new key goes to your other contacts and devices, never to CONTACT,
and the relay gets its access key, so CONTACT can no longer send to you sealed. Through the
daemon if one runs the device; else this command does it and waits up to ``--timeout`` seconds
for the relay to hold the new access key and the new key to be stored for the others (exit 3
if not yet: it goes the next time this device connects). Unblocking only lets CONTACT's
messages through again (it gets your key the next time you send it anything). The list reads
the local store (works offline and beside a running daemon).
"""

from __future__ import annotations

import argparse
import asyncio

from ..client import Client
from ..client.home import prepare_home
from ..client.store import ClientStore
from ..errors import ConfigError, DeviceBusy, StoreUnavailable
from .common import _common, _config_flags, _print, config_of, home_of
from .exits import Exit
from .history_cmd import _account
from .remote import open_daemon

__all__ = ["DEFAULT_TIMEOUT", "add_parsers", "cmd_block"]

#: Seconds ``block`` waits for the relay to hold the new access key (as ``send``'s ✓).
DEFAULT_TIMEOUT = 30.0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``block`` and ``unblock``."""
    p = sub.add_parser(
        "block",
        help="block a contact (or list the blocked ones)",
        description="Block CONTACT: what it sends from now on is dropped and not shown, and "
        "your profile key is replaced by a new one that your other contacts and devices get "
        "but CONTACT does not, so it can no longer send to you sealed (sealed sender). "
        "Without CONTACT, list the blocked contacts. Exit 0: blocked (and the relay holds "
        "the new access key); 3: blocked here, not yet told to the relay (it is the next time "
        "this device connects).",
    )
    p.add_argument("contact", nargs="?", type=_account, help="the account to block")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the relay (default {DEFAULT_TIMEOUT:g})",
    )
    _common(p)
    _config_flags(p)
    p.set_defaults(func=cmd_block, unblock=False)
    u = sub.add_parser(
        "unblock",
        help="unblock a contact",
        description="Unblock CONTACT: its messages are shown again from now on (those sent "
        "while it was blocked were dropped). It gets your current profile key the next time "
        "you send it anything.",
    )
    u.add_argument("contact", type=_account, help="the account to unblock")
    u.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help=argparse.SUPPRESS)
    _common(u)
    _config_flags(u)
    u.set_defaults(func=cmd_block, unblock=True)


def cmd_block(args: argparse.Namespace) -> int:
    if args.contact is None:
        home = home_of(args)
        with ClientStore(prepare_home(home)) as store:
            if store.get_identity() is None:
                raise ConfigError(f"{home} holds no registered device: run `tidings register`")
            blocked = store.blocked()
        _print(args, {"blocked": blocked}, "\n".join(blocked) or "nobody is blocked")
        return 0
    return asyncio.run(_change(args))


def _said(args: argparse.Namespace, changed: bool) -> str:
    if args.unblock:
        return f"unblocked {args.contact}" if changed else f"{args.contact} was not blocked"
    return f"blocked {args.contact}" if changed else f"{args.contact} was blocked already"


async def _change(args: argparse.Namespace) -> int:
    home = home_of(args)
    method = "unblock" if args.unblock else "block"
    try:
        client = Client(home, owner=f"tidings {args.command}", config=config_of(args))
    except StoreUnavailable as exc:
        raise StoreUnavailable(exc.state, f"not changed: {exc}") from exc
    except DeviceBusy as busy:
        daemon = await open_daemon(home, busy)  # the daemon runs it: change it there
        try:
            answer = await daemon.call(method, contact=args.contact)
        finally:
            await daemon.close()
        _print(args, answer, _said(args, bool(answer["changed"])))
        return 0
    try:
        changed = await (client.unblock if args.unblock else client.block)(args.contact)
        _print(args, {"contact": args.contact, "changed": changed}, _said(args, changed))
        if args.unblock or not changed:
            return 0
        await client.start()
        try:
            async with asyncio.timeout(args.timeout):
                await client.sealed_keys.wait_relay_has_key()
                stored = await client.drain(args.timeout)
        except TimeoutError:
            stored = False
        if not stored:
            _print(
                args,
                {"event": "timeout"},
                f"not yet told to the relay after {args.timeout:g} s: it is the next time "
                "this device connects",
            )
            return Exit.TIMED_OUT
        return 0
    finally:
        await client.close()
