"""``tidings safety-number CONTACT``: compare end-to-end identities out of band.

Reading it reads the local store only (beside whatever runs the device). ``--verify`` and
``--unverify`` write one row of the store in their own transaction: they ask the daemon that
runs the device (the API's ``safety_number``), else write it themselves — beside ``listen`` or
``chat`` too, which keep no copy of the mark.

The number covers the identity keys of every device on both sides that this device has a session
with (`tidings.e2e.safety_number_for_keys`): read it to the contact over another channel (in
person, a call); if theirs is the same, no one sits between you. ``--verify NUMBER`` records
that you compared it; any later change of a key (a new or reinstalled device) drops the mark,
and the client reports `IdentityChanged`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from ..client.crypto import DeviceCrypto, SafetyNumber
from ..client.home import prepare_home
from ..client.lock import DeviceLock
from ..client.store import ClientStore
from ..e2e import format_safety_number
from ..errors import ConfigError, DeviceBusy
from ..refs import DeviceRef
from ..wire import check_account
from .common import _common, home_of
from .devices_cmd import certificate_text
from .remote import DAEMON, open_daemon

__all__ = ["add_parser", "cmd_safety_number"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "safety-number",
        help="show (and verify) the safety number with a contact",
        description="Show the 60-digit safety number of your conversation with CONTACT. "
        "Compare it with the one CONTACT's device shows (in person or on a call); if they "
        "match, mark it verified with --verify. It changes when either side's device keys "
        "change (a new or reinstalled device).",
    )
    p.add_argument("contact", help="the contact's account")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--verify", metavar="NUMBER", help="mark verified: the number you compared")
    group.add_argument("--unverify", action="store_true", help="drop the verified mark")
    _common(p)
    p.set_defaults(func=cmd_safety_number)


def cmd_safety_number(args: argparse.Namespace) -> int:
    check_account(args.contact)
    home = home_of(args)
    db = prepare_home(home)
    change = args.verify is not None or args.unverify
    if not change:  # reading only: fine beside whatever runs the device
        shown = _local(home, db, args)
    else:  # a write: by the one process that owns the device (DESIGN §9)
        try:
            lock = DeviceLock.acquire(home, f"tidings {args.command}")
        except DeviceBusy as busy:
            if busy.command == DAEMON:  # the daemon shows the mark: let it make it
                shown = asyncio.run(_through_daemon(home, busy, args))
            else:  # `listen` or `chat` keeps no copy of the mark: one row, its own transaction
                shown = _local(home, db, args)
        else:
            try:
                shown = _local(home, db, args)
            finally:
                lock.release()
    if shown.get("recorded") is False:
        print(f"✗ that is not the safety number with {args.contact}: not verified")
        return 1
    shown["certificates"] = _certificates(db, args.contact, shown["their_devices"])
    if args.json:
        shown.pop("recorded", None)
        print(json.dumps({"contact": args.contact, **shown}))
        return 0
    mark = "✓ verified" if shown["verified"] else "not verified"
    print(f"safety number with {args.contact} ({mark}):")
    print(format_safety_number(shown["safety_number"]))
    print(
        f"covers your devices {shown['my_devices']} and"
        f" {args.contact}'s devices {shown['their_devices']}"
    )
    for device_id, cert in shown["certificates"].items():
        print(f"  {args.contact}.{device_id}: {certificate_text(cert)}")
    return 0


def _certificates(db: Path, contact: str, devices: list[int]) -> dict[str, dict[str, Any]]:
    """What this device last concluded of each of the contact's devices' certificates (by
    ``tidings devices CONTACT``, protocol §6.31), for the key it pinned now."""
    with ClientStore(db) as store:
        marks = store.device_marks(contact)
        pins = store.pinned_identities(contact)
    out: dict[str, dict[str, Any]] = {}
    for device_id in devices:
        mark = marks.get(device_id)
        pinned = pins.get(device_id, (None, None))[0]
        if mark is None or mark.identity_key != pinned:
            status, issuer, reason = "unchecked", None, f"run `tidings devices {contact}`"
        else:
            status, issuer, reason = mark.status, mark.issuer, mark.reason
        out[str(device_id)] = {"certificate": status, "certified_by": issuer, "reason": reason}
    return out


def _shown(number: SafetyNumber, recorded: bool | None = None) -> dict[str, Any]:
    """What the command prints of ``number`` (its ``--json`` keys)."""
    shown: dict[str, Any] = {
        "safety_number": number.number,
        "verified": number.verified,
        "my_devices": list(number.local_devices),
        "their_devices": list(number.remote_devices),
    }
    if recorded is not None:
        shown["recorded"] = recorded
    return shown


def _local(home: Path, db: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Read (and, when asked, change) the mark from the store; the caller holds the device
    lock when it changes it."""
    with ClientStore(db) as store:
        identity = store.get_identity()
        if identity is None or store.e2e_identity() is None:
            raise ConfigError(f"{home} holds no registered device")
        me = DeviceRef(identity.account, identity.device_id)
        crypto = DeviceCrypto(store, me, lambda _: None, time.time)
        if args.verify is None and not args.unverify:
            number = crypto.safety_number(args.contact)
            if number is None:
                raise ConfigError(f"no session with {args.contact} yet: exchange a message first")
            return _shown(number)
        recorded = crypto.mark_verified(args.contact, args.verify, time.time())
        number = crypto.safety_number(args.contact)
        assert number is not None  # mark_verified found the session
        return _shown(number, recorded=recorded)


async def _through_daemon(home: Path, busy: DeviceBusy, args: argparse.Namespace) -> dict[str, Any]:
    """The change made by the daemon that runs the device (``busy`` again if none does)."""
    daemon = await open_daemon(home, busy)
    try:
        change = {"verify": args.verify} if args.verify is not None else {"unverify": True}
        answer = await daemon.safety_number(args.contact, **change)
    finally:
        await daemon.close()
    if answer is None:
        raise ConfigError(f"no session with {args.contact} yet: exchange a message first")
    number = SafetyNumber(
        answer["number"],
        answer["verified"],
        tuple(answer["local_devices"]),
        tuple(answer["remote_devices"]),
    )
    return _shown(number, recorded=answer.get("recorded"))
