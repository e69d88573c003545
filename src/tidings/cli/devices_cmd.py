"""``tidings devices [ACCOUNT] [--unlink N]``: an account's devices, and unlinking one of yours.

The relay says which devices an account has (GET_DEVICES); this device's store says what it
knows of each: the identity key it pinned (shown as a short fingerprint, to compare with what
that device shows for itself) and since when. Without ACCOUNT it lists this device's own account
and marks this device. ``--unlink N`` removes device N of your account for good (UNLINK): the
relay refuses it from then on and drops what waited for it; contacts drop it on their next send.
It goes through the daemon when one runs the device, else runs the device for one request.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import time
from typing import Any

from ..api.forms import device_view_json
from ..client import Client
from ..client.history import MAX_HISTORY_MESSAGES
from ..client.store import ClientStore
from ..e2e import IdentityKeyPair
from ..errors import DeviceBusy
from ..refs import DeviceRef
from .common import _common, _config_flags, _print, _ts, config_of, home_of
from .exits import Exit
from .history_cmd import _account
from .remote import DaemonDevice, open_daemon

__all__ = ["add_parser", "cmd_devices", "key_fingerprint"]

#: Seconds to wait for the relay's answer (as ``link-code``).
ANSWER_WAIT = 10.0
#: Seconds ``--send-history`` waits for the relay's ✓ of every part (as ``send``).
SEND_WAIT = 60.0


def key_fingerprint(identity_key: bytes) -> str:
    """A short, comparable form of an identity key: the first 10 bytes of its SHA-256 in five
    groups of four hex digits (``a1b2 c3d4 …``); a 33-byte key (``0x05`` type byte) counts as
    its 32-byte form."""
    raw = identity_key[1:] if len(identity_key) == 33 else identity_key
    digest = hashlib.sha256(raw).hexdigest()[:20]
    return " ".join(digest[i : i + 4] for i in range(0, 20, 4))


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "devices",
        help="list an account's devices (yours by default); --unlink removes one of yours",
        description="List the devices the relay has for ACCOUNT (default: your own account), "
        "each with the fingerprint of the identity key this device pinned for it — compare it "
        "with `tidings devices` on that device. --unlink N removes device N of your account "
        "for good: the relay refuses it from then on and deletes what waited for it, and your "
        "contacts stop sending to it. Needs the relay.",
    )
    p.add_argument("account", nargs="?", type=_account, help="whose devices (default: yours)")
    p.add_argument("--unlink", type=int, metavar="N", help="remove your device N for good")
    p.add_argument(
        "--send-history",
        type=int,
        metavar="N",
        help="send your recent history (end-to-end encrypted) to your new device N",
    )
    add_history_limit(p)
    _common(p)
    _config_flags(p)
    p.set_defaults(func=cmd_devices)


def add_history_limit(p: argparse.ArgumentParser, when: str = "") -> None:
    """The ``--history-limit K`` option of the commands that send history."""
    p.add_argument(
        "--history-limit",
        type=int,
        default=MAX_HISTORY_MESSAGES,
        metavar="K",
        help=f"{when}messages to send at most (default {MAX_HISTORY_MESSAGES:,})",
    )


def cmd_devices(args: argparse.Namespace) -> int:
    if args.send_history is not None:
        return asyncio.run(_send_history(args))
    if args.unlink is not None and args.account is not None:
        print("tidings devices: --unlink removes a device of your own account", file=sys.stderr)
        return Exit.USAGE
    ids, me, rows = asyncio.run(_ask(args))
    account = args.account or me.account
    if args.unlink is not None:
        _print(
            args,
            {"event": "unlinked", "device": f"{account}.{args.unlink}"},
            f"unlinked {account}.{args.unlink}: the relay refuses it from now on",
        )
    for device_id in ids:
        _print(args, *rows[device_id])
    if not ids:
        _print(args, {"account": account, "devices": []}, f"{account}: no such account")
    return 0


def _parts(n: int) -> str:
    return f"{n} part" if n == 1 else f"{n} parts"


async def _send_history(args: argparse.Namespace) -> int:
    """Queue the archive (through the daemon if one runs the device), then wait for the
    relay's ✓ of every part (this command's own device)."""
    home = home_of(args)
    device: Client | DaemonDevice
    try:
        device = Client(home, owner=f"tidings {args.command}", config=config_of(args))
    except DeviceBusy as busy:
        device = await open_daemon(home, busy)
    try:
        return await send_history_to(args, device, [args.send_history])
    finally:
        await device.close()


async def send_history_to(
    args: argparse.Namespace, device: Client | DaemonDevice, device_ids: list[int]
) -> int:
    """Queue the history for each of ``device_ids`` (new devices of this account), then, when
    this command runs the device, wait for the relay's ✓ of every part (a daemon sends them
    itself). The exit status."""
    for device_id in device_ids:
        new = f"{device.me.account}.{device_id}"
        if isinstance(device, DaemonDevice):
            answer = await device.call(
                "send_history", device_id=device_id, limit=args.history_limit
            )
            _print(args, answer, f"history queued for {new}: {_parts(answer['parts'])}")
            continue
        last = await device.send_history(device_id, args.history_limit)
        _print(
            args,
            {"archive_id": last.archive_id.hex(), "parts": last.parts, "device": new},
            f"history queued for {new}: {_parts(last.parts)}",
        )
    if isinstance(device, DaemonDevice):
        return 0
    await device.start()
    if not await device.drain(SEND_WAIT):
        _print(
            args,
            {"event": "timeout"},
            f"not all of it is at the relay after {SEND_WAIT:g} s; the rest goes out the "
            "next time this device connects",
        )
        return Exit.TIMED_OUT
    _print(args, {"event": "sent"}, "every part is at the relay (✓)")
    return 0


async def _ask(
    args: argparse.Namespace,
) -> tuple[tuple[int, ...], DeviceRef, dict[int, tuple[dict[str, Any], str]]]:
    home = home_of(args)
    now = time.time()
    try:
        client = Client(home, owner=f"tidings {args.command}", config=config_of(args))
    except DeviceBusy as busy:
        daemon = await open_daemon(home, busy)  # the daemon runs it: ask it
        try:
            account = args.account or daemon.me.account
            if args.unlink is not None:
                await daemon.call("unlink", device_id=args.unlink)
            answer = await daemon.call("device_details", account=account)
            details = {int(d["device"].rsplit(".", 1)[1]): d for d in answer["devices"]}
            ids = tuple(details)
            return ids, daemon.me, _rows(daemon.store, daemon.me, account, details, now)
        finally:
            await daemon.close()
    try:
        await client.start()
        await client.wait_connected(ANSWER_WAIT, fail_fast=True)
        account = args.account or client.me.account
        async with asyncio.timeout(ANSWER_WAIT):
            if args.unlink is not None:
                await client.unlink(args.unlink)
            views = await client.device_details(account)
        details = {v.device.device_id: device_view_json(v) for v in views}
        return tuple(details), client.me, _rows(client.store, client.me, account, details, now)
    finally:
        await client.close()


def _rows(
    store: ClientStore,
    me: DeviceRef,
    account: str,
    details: dict[int, dict[str, Any]],
    now: float,
) -> dict[int, tuple[dict[str, Any], str]]:
    """Each device's JSON form and line, from what the store pinned and the relay's details
    (``device_details``: last seen, connected now, the certificate as this device checked it)."""
    ids = tuple(details)
    pins = store.pinned_identities(account)
    own = store.e2e_identity()
    identity = store.get_identity()
    names = store.device_names() if account == me.account else {}
    if identity is not None and account == me.account:
        names[me.device_id] = identity.device_name
    rows: dict[int, tuple[dict[str, Any], str]] = {}
    for device_id in ids:
        ref = DeviceRef(account, device_id)
        this = ref == me
        key: bytes | None
        if this and own is not None:
            key = IdentityKeyPair(own.identity_seed).public.raw
            changed = None
        else:
            key, changed = pins.get(device_id, (None, None))
        fingerprint = key_fingerprint(key) if key is not None else None
        name = names.get(device_id)
        obj = {
            "device": str(ref),
            "name": name,
            "this": this,
            "fingerprint": fingerprint,
            "changed_at": changed,
            **{k: v for k, v in details[device_id].items() if k != "device"},
        }
        mark = "this device" if this else ""
        shown = f"{ref} ({name})" if name else str(ref)
        if fingerprint is None:
            what = "key not known here yet (no session with it)"
        else:
            what = f"key {fingerprint}"
            if changed is not None:
                what += f"  (changed {_ts(changed)})"
        seen = seen_text(details[device_id], now)
        cert = certificate_text(details[device_id])
        state = f"{seen}; {cert}" if cert else seen
        rows[device_id] = (obj, f"{shown:32} {mark:12} {what}\n{'':32} {state}")
    return rows


def seen_text(detail: dict[str, Any], now: float) -> str:
    """ "connected now", "last seen 3 h ago", …: the relay records the hour (protocol §6.30)."""
    if detail["online"]:
        return "connected now"
    last = detail["last_seen"]
    if last is None:
        return "last seen: not recorded"
    hours = int(max(now - last, 0.0) // 3600)
    if hours < 1:
        return "last seen within the hour"
    if hours < 48:
        return f"last seen {hours} h ago"
    return f"last seen {hours // 24} days ago"


def certificate_text(detail: dict[str, Any]) -> str:
    """What this device concluded of the device's certificate (protocol §6.31)."""
    status, reason = detail["certificate"], detail["reason"]
    if status == "certified":
        return f"certified by device {detail['certified_by']}"
    if status == "uncertified":
        return "not certified"
    if status == "invalid":
        return f"CERTIFICATE REFUSED: {reason}"
    if status == "unchecked":
        return f"certificate not checked: {reason}"
    return ""  # this device itself
