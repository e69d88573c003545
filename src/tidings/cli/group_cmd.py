"""``tidings group create|add|remove|leave|rename|promote|list|info|send``: groups (issue 12).

Each subcommand is one local API method (:mod:`tidings.api.group_methods`), run in the daemon
if one runs the device, else on a client this command opens: a change or a message is durable
in this device's outbox on return, then this command connects and waits up to ``--timeout``
seconds for the relay's ✓ of everything queued (exit 3 if it did not come: it goes out the next
time the device connects). A GROUP is its name, its hex id, or a unique prefix of the id.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ..api.methods import METHODS, call
from ..api.rpc import ApiError
from ..client import Client
from ..errors import ConfigError, DeviceBusy
from .common import _common, _config_flags, _print, config_of, home_of
from .exits import Exit
from .history_cmd import _account
from .remote import open_daemon

__all__ = ["DEFAULT_TIMEOUT", "add_parser", "send_to_group"]

#: Seconds a change or a message waits for the relay's ✓ (as ``send``).
DEFAULT_TIMEOUT = 30.0

#: The subcommands that only read (no relay, no ✓ to wait for).
_READS = frozenset({"list", "info"})


def _accounts(text: str) -> list[str]:
    return [_account(a.strip()) for a in text.split(",") if a.strip()]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``tidings group`` and its subcommands."""
    p = sub.add_parser(
        "group",
        help="create groups, change their members, send to them",
        description="Groups are kept by their members: a change goes end to end to every "
        "member device, the relay never sees names or members. GROUP is a group's name, its "
        "hex id, or a unique prefix of it.",
    )
    gsub = p.add_subparsers(dest="group_command", required=True, metavar="SUBCOMMAND")

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        c = gsub.add_parser(name, help=help_text, description=help_text)
        c.set_defaults(func=cmd_group)
        return c

    c = cmd("create", "create a group of this account (its admin) and the --with accounts")
    c.add_argument("name")
    c.add_argument("--with", dest="members", type=_accounts, default=[], help="a,b,c")
    c = cmd("add", "add accounts to a group (admins only); they get its history of changes")
    c.add_argument("group")
    c.add_argument("accounts", nargs="+", type=_account)
    c = cmd("remove", "remove a member (admins only): it cannot read what is sent after")
    c.add_argument("group")
    c.add_argument("account", type=_account)
    c = cmd("promote", "make a member an admin (admins only)")
    c.add_argument("group")
    c.add_argument("account", type=_account)
    c = cmd("leave", "leave a group")
    c.add_argument("group")
    c = cmd("rename", "rename a group (any member)")
    c.add_argument("group")
    c.add_argument("name")
    cmd("list", "the groups this account is in")
    c = cmd("info", "a group's name, members and admins")
    c.add_argument("group")
    c = cmd("send", "send a message to a group (encrypted once, for every member device)")
    c.add_argument("group")
    c.add_argument("text")
    for c in gsub.choices.values():
        c.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT,
            help=f"seconds to wait for the relay's ✓ (default {DEFAULT_TIMEOUT:g})",
        )
        _common(c)
        _config_flags(c)


def _request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The API method and parameters of the subcommand."""
    sub = args.group_command
    if sub == "create":
        return "group_create", {"name": args.name, "members": args.members}
    if sub == "add":
        return "group_add", {"group": args.group, "members": args.accounts}
    if sub == "remove":
        return "group_remove", {"group": args.group, "member": args.account}
    if sub == "promote":
        return "group_promote", {"group": args.group, "member": args.account}
    if sub == "leave":
        return "group_leave", {"group": args.group}
    if sub == "rename":
        return "group_rename", {"group": args.group, "name": args.name}
    if sub == "list":
        return "groups", {}
    if sub == "info":
        return "group_info", {"group": args.group}
    return "send_group", {"group": args.group, "text": args.text}


def _line(sub: str, answer: Any) -> str:
    if sub == "send":
        return f"queued {answer['message_id']} for the group"
    groups = answer if isinstance(answer, list) else [answer]
    if not groups:
        return "no groups"
    return "\n".join(
        f"{g['name']} ({g['group_id']}): {', '.join(g['members']) or 'no members'}"
        f"; admins {', '.join(g['admins']) or 'none'}"
        for g in groups
    )


def cmd_group(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def send_to_group(args: argparse.Namespace, group: str) -> int:
    """``tidings send @GROUP TEXT``: as ``tidings group send GROUP TEXT`` (waits for the
    relay's ✓ of every copy, up to ``--timeout``)."""
    group_args = argparse.Namespace(**vars(args))
    group_args.group_command, group_args.group = "send", group
    return cmd_group(group_args)


async def _run(args: argparse.Namespace) -> int:
    method, params = _request(args)
    home = home_of(args)
    try:
        client = Client(home, owner=f"tidings group {args.group_command}", config=config_of(args))
    except DeviceBusy as busy:
        daemon = await open_daemon(home, busy)  # the daemon runs it: ask it
        try:
            answer = await daemon.call(method, **params)
        finally:
            await daemon.close()
        _show(args, answer)
        return 0
    try:
        try:
            answer = await call(client, METHODS[method], params)
        except ApiError as exc:
            raise ConfigError(exc.message) from None
        _show(args, answer)
        if args.group_command in _READS:
            return 0
        await client.start()
        if not await client.drain(args.timeout):
            _print(
                args,
                {"event": "timeout"},
                f"not yet stored by the relay after {args.timeout:g} s: it goes out the next "
                "time this device connects",
            )
            return Exit.TIMED_OUT
        return 0
    finally:
        await client.close()


def _show(args: argparse.Namespace, answer: Any) -> None:
    if isinstance(answer, list) and args.json:
        for g in answer:
            _print(args, g, "")
        return
    _print(
        args,
        answer if isinstance(answer, dict) else {"groups": answer},
        _line(args.group_command, answer),
    )
