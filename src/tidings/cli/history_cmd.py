"""``tidings conversations``, ``tidings history CONTACT`` and ``tidings search WORDS``: what this
device stored, from its store only (they work beside a running ``listen`` or daemon, and
offline).

``history`` shows every stored message that is shown in its conversation — also those a
``listen`` stopped with Ctrl-C committed but never printed — with ✓ / ✓✓ / read / ✗ marks on the
sent ones. ``search`` finds the shown messages holding every word (newest first; the last word
also as a prefix). ``--json`` prints the forms of :mod:`tidings.api.forms`, as the API's
``history`` and ``search``.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..api.forms import conversation_json, message_json
from ..api.methods import MAX_HISTORY
from ..client.group_calls import rollup_text, stored_group_rollup
from ..client.home import prepare_home
from ..client.store import ClientStore, Direction, StoredMessage
from ..delivery import Status, direct_conversation, glyph
from ..delivery.content_groups import group_conversation
from ..errors import FrameError
from ..wire import check_account
from .common import _common, _ts, home_of
from .exits import Exit
from .terminal_text import for_terminal

#: Messages ``history`` shows unless ``--limit`` says otherwise.
DEFAULT_LIMIT = 50
#: The most ``--limit`` takes: the API's ``history`` bound.
MAX_LIMIT = MAX_HISTORY


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommands."""
    p = sub.add_parser(
        "conversations",
        help="list this device's conversations with unread counts",
        description="List the conversations stored on this device, most recent first, with "
        "how many messages each holds and how many received ones are unread. Reads the local "
        "store only.",
    )
    _common(p)
    p.set_defaults(func=cmd_conversations)

    p = sub.add_parser(
        "history",
        help="show the last messages with a contact",
        description="Show the last messages exchanged with CONTACT, oldest first, with the "
        "status of each sent one (… queued, ✓ stored by the relay, ✓✓ delivered, R read, ✗ "
        "failed). Reads the local store only.",
    )
    p.add_argument(
        "contact", type=_contact, help="the other account, or @GROUP (a group's name or id)"
    )
    p.add_argument(
        "--limit", type=_limit, default=DEFAULT_LIMIT, help=f"messages (default {DEFAULT_LIMIT})"
    )
    _common(p)
    p.set_defaults(func=cmd_history)

    p = sub.add_parser(
        "search",
        help="find stored messages by their words",
        description="Find the messages on this device that hold every one of WORDS (case and "
        "accents ignored; the last word also as a prefix: 'clim' finds 'climbing'), newest "
        "first. Reads the local store only: works offline and beside a running daemon.",
    )
    p.add_argument("words", nargs="+", help="what to look for")
    p.add_argument("--with", dest="contact", type=_account, help="only the chat with CONTACT")
    p.add_argument(
        "--limit", type=_limit, default=DEFAULT_LIMIT, help=f"messages (default {DEFAULT_LIMIT})"
    )
    _common(p)
    p.set_defaults(func=cmd_search)


def _account(text: str) -> str:
    try:
        check_account(text)
    except FrameError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc.reason}") from None
    return text


def _contact(text: str) -> str:
    """An account, or ``@GROUP`` (kept as it is: the store resolves it)."""
    if text.startswith("@") and len(text) > 1:
        return text
    return _account(text)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"--limit must be 1 to {MAX_LIMIT}, not {text!r}")
    return value


def cmd_conversations(args: argparse.Namespace) -> int:
    with ClientStore(prepare_home(home_of(args))) as store:
        rows = store.conversations()
    if args.json:
        for c in rows:
            print(json.dumps(conversation_json(c)))
        return 0
    if not rows:
        print("no conversations yet")
    for c in rows:
        unread = f", {c.unread} unread" if c.unread else ""
        print(f"{c.conversation:40} {c.messages} messages{unread}  (last {_ts(c.last_at)})")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    rollups: dict[bytes, dict[str, int]] = {}
    with ClientStore(prepare_home(home_of(args))) as store:
        identity = store.get_identity()
        me = identity.account if identity is not None else args.contact
        if args.contact.startswith("@"):  # a group: its conversation, and each send's roll-up
            found = store.find_groups(args.contact[1:])
            if len(found) != 1:
                what = "no group" if not found else "several groups match"
                print(f"tidings history: {what} {args.contact}", file=sys.stderr)
                return Exit.USAGE
            conversation = group_conversation(found[0])
        else:
            conversation = direct_conversation(me, args.contact)
        messages = store.messages(conversation, args.limit)
        statuses = {m.message_id: store.message_status(m.message_id) for m in messages}
        for m in messages:
            rollup = stored_group_rollup(store, m.message_id)
            if rollup is not None:
                rollups[m.message_id] = rollup
    _print_messages(args, messages, statuses, rollups=rollups)
    if not messages and not args.json:
        print(f"no messages with {args.contact} yet")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    text = " ".join(args.words)
    with ClientStore(prepare_home(home_of(args))) as store:
        identity = store.get_identity()
        conversation = None
        if args.contact is not None:
            me = identity.account if identity is not None else args.contact
            conversation = direct_conversation(me, args.contact)
        try:
            messages = store.search(text, args.limit, conversation)
        except ValueError as exc:
            print(f"tidings search: {exc}", file=sys.stderr)
            return Exit.USAGE
        statuses = {m.message_id: store.message_status(m.message_id) for m in messages}
    _print_messages(args, messages, statuses, conversations=args.contact is None)
    if not messages and not args.json:
        print(f"no messages with {text!r}")
    return 0


def _print_messages(
    args: argparse.Namespace,
    messages: list[StoredMessage],
    statuses: dict[bytes, Status | None],
    conversations: bool = False,
    rollups: dict[bytes, dict[str, int]] | None = None,
) -> None:
    rollups = rollups or {}
    for m in messages:
        status = statuses[m.message_id]
        rollup = rollups.get(m.message_id)
        if args.json:
            out = message_json(m, status)
            if rollup is not None:
                out["group_status"] = rollup
            print(json.dumps(out))
            continue
        body = for_terminal(m.body.decode(errors="replace"))
        when = _ts(m.received_at or m.sent_at)
        if conversations:  # a search across chats says which chat each line is in
            when = f"{when}] [{m.conversation}"
        if m.own:  # from this device, or a copy of what another of this account's sent
            mark = glyph(status or Status.PENDING)
            me = "me" if m.direction is Direction.OUT else f"me ({m.sender})"
            roll = f"; {rollup_text(rollup)}" if rollup is not None else ""
            print(f"[{when}] {mark:2} {me} › {body}  ({m.message_id.hex()[:12]}…{roll})")
        else:
            unread = "" if m.read_at is not None else "  (unread)"
            print(f"[{when}]    {m.sender} › {body}{unread}")
