"""``tidings timer CONTACT [DURATION]``: show or set the disappearing-messages timer of a chat.

Without DURATION it prints the chat's timer from the local store (works offline and beside a
running daemon). With one (``30s``, ``5m``, ``1h``, ``1d``, ``1w``, plain seconds, or ``off``) it
sets it: the setting is durable in this device's outbox on return, then sent to the contact's
devices and this account's others — through the daemon if one runs the device, else by this
command, which waits up to ``--timeout`` seconds for the relay's ✓. Messages sent from then on
by either side are deleted on every device that long after they were displayed (sent, for the
sender), and leave the search index with them.
"""

from __future__ import annotations

import argparse
import asyncio

from ..api.forms import timer_json
from ..client import Client
from ..client.home import prepare_home
from ..client.store import ClientStore, ConversationTimer
from ..delivery import direct_conversation
from ..errors import ConfigError, DeviceBusy, StoreUnavailable
from .common import _common, _config_flags, _print, _ts, config_of, home_of
from .durations import format_duration, parse_duration
from .exits import Exit
from .history_cmd import _account
from .remote import open_daemon

__all__ = ["DEFAULT_TIMEOUT", "add_parser", "cmd_timer"]

#: Seconds ``timer`` waits for the relay's ✓ of the setting (as ``send``).
DEFAULT_TIMEOUT = 30.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "timer",
        help="show or set a chat's disappearing-messages timer",
        description="Without DURATION, show the disappearing-messages timer of the chat with "
        "CONTACT. With one (30s, 5m, 1h, 1d, 1w, or off), set it: messages either side sends "
        "from then on are deleted from every device (and its search index) that long after "
        "they were displayed; for the sender, after they were sent. The setting reaches the "
        "contact's devices and your others; when two people set it at once, the later setting "
        "wins everywhere. Exit 0: set (and stored by the relay); 3: not yet stored by the "
        "relay (it goes out the next time this device connects).",
    )
    p.add_argument("contact", type=_account, help="the other account")
    p.add_argument("duration", nargs="?", type=parse_duration, help="30s, 5m, 1h, 1d, 1w or off")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the relay's ✓ of a new setting (default {DEFAULT_TIMEOUT:g})",
    )
    _common(p)
    _config_flags(p)
    p.set_defaults(func=cmd_timer)


def _line(conversation: str, timer: ConversationTimer | None) -> str:
    if timer is None or timer.seconds == 0:
        by = f" (turned off by {timer.set_by} at {_ts(timer.set_at)})" if timer else ""
        return f"disappearing messages in {conversation}: off{by}"
    return (
        f"disappearing messages in {conversation}: {format_duration(timer.seconds)}"
        f" (set by {timer.set_by} at {_ts(timer.set_at)})"
    )


def cmd_timer(args: argparse.Namespace) -> int:
    home = home_of(args)
    if args.duration is None:
        with ClientStore(prepare_home(home)) as store:
            identity = store.get_identity()
            if identity is None:
                raise ConfigError(f"{home} holds no registered device: run `tidings register`")
            conversation = direct_conversation(identity.account, args.contact)
            timer = store.conversation_timer(conversation)
        _print(args, timer_json(conversation, timer), _line(conversation, timer))
        return 0
    return asyncio.run(_set(args))


async def _set(args: argparse.Namespace) -> int:
    home = home_of(args)
    try:
        client = Client(home, owner=f"tidings {args.command}", config=config_of(args))
    except StoreUnavailable as exc:
        raise StoreUnavailable(exc.state, f"not set: {exc}") from exc
    except DeviceBusy as busy:
        daemon = await open_daemon(home, busy)  # the daemon runs it: set it there
        try:
            answer = await daemon.call("set_timer", contact=args.contact, seconds=args.duration)
        finally:
            await daemon.close()
        timer = ConversationTimer(
            answer["conversation"],
            answer["seconds"],
            answer["set_at"],
            daemon.me,
        )
        _print(args, answer, _line(timer.conversation, timer))
        return 0
    try:
        timer = await client.set_timer(args.contact, args.duration)
        _print(args, timer_json(timer.conversation, timer), _line(timer.conversation, timer))
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
