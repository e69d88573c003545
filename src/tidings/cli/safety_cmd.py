"""``tidings safety-number CONTACT``: compare end-to-end identities out of band.

Reads the local store only. The number covers the identity keys of every device on both sides
that this device has a session with (`tidings.e2e.safety_number_for_keys`): read it to the
contact over another channel (in person, a call); if theirs is the same, no one sits between
you. ``--verify NUMBER`` records that you compared it; any later change of a key (a new or
reinstalled device) drops the mark, and the client reports `IdentityChanged`.
"""

from __future__ import annotations

import argparse
import json
import time

from ..client.crypto import DeviceCrypto
from ..client.home import prepare_home
from ..client.store import ClientStore
from ..e2e import format_safety_number
from ..errors import ConfigError
from ..store.base import DeviceRef
from ..wire import check_account
from .common import _common, home_of

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
    with ClientStore(prepare_home(home)) as store:
        identity = store.get_identity()
        if identity is None or store.e2e_identity() is None:
            raise ConfigError(f"{home} holds no registered device")
        me = DeviceRef(identity.account, identity.device_id)
        crypto = DeviceCrypto(store, me, lambda _: None, time.time)
        number = crypto.safety_number(args.contact)
        if number is None:
            raise ConfigError(f"no session with {args.contact} yet: exchange a message first")
        if args.verify is not None:
            typed = "".join(ch for ch in args.verify if ch.isdigit())
            if typed != number.number:
                print(f"✗ that is not the safety number with {args.contact}: not verified")
                return 1
            store.set_verified(args.contact, number.number, time.time())
            number = crypto.safety_number(args.contact) or number
        elif args.unverify:
            store.set_verified(args.contact, None, time.time())
            number = crypto.safety_number(args.contact) or number
    if args.json:
        print(
            json.dumps(
                {
                    "contact": args.contact,
                    "safety_number": number.number,
                    "verified": number.verified,
                    "my_devices": list(number.local_devices),
                    "their_devices": list(number.remote_devices),
                }
            )
        )
        return 0
    mark = "✓ verified" if number.verified else "not verified"
    print(f"safety number with {args.contact} ({mark}):")
    print(format_safety_number(number.number))
    print(
        f"covers your devices {list(number.local_devices)} and"
        f" {args.contact}'s devices {list(number.remote_devices)}"
    )
    return 0
