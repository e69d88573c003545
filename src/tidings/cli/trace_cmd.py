"""``tidings trace MESSAGE``: a sent message's confirmation points, from the local store.

MESSAGE is the message's id or any unique prefix of it of at least :data:`MIN_PREFIX` hex
digits, as ``send`` and ``listen`` print it (``a990c53083ad…``: the ``…`` or ``...`` may stay),
in either case. A malformed one is a usage error (exit 2); one that matches no message, or
several (some are listed), is an error (exit 1).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..api.forms import trace_json
from ..client import msgids
from ..client.home import prepare_home
from ..client.msgids import MIN_PREFIX, parse_prefix
from ..client.store import ClientStore, TraceEntry
from ..delivery import Status, glyph
from ..errors import ConfigError
from .common import _common, _ts, home_of


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "trace",
        help="show a sent message's confirmation points",
        description="Show every confirmation point this device saw for a message: composed, "
        "written to the socket, acked by the server's TCP stack, ✓ stored, ✓✓ delivered and "
        "read per device, ✗ expired; whether it went sealed (no sender at the relay) or fell "
        "back to a normal send, and why. Reads the local store only.",
    )
    p.add_argument(
        "message_id",
        type=message_prefix,
        help=f"message id, or a unique prefix of at least {MIN_PREFIX} hex digits, as printed "
        "by `tidings send` (a trailing … may stay)",
    )
    _common(p)
    p.set_defaults(func=cmd_trace)


def message_prefix(text: str) -> str:
    """argparse's ``type`` for MESSAGE (:func:`tidings.client.msgids.parse_prefix`)."""
    try:
        return parse_prefix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def resolve(store: ClientStore, prefix: str, home: Path) -> bytes:
    """The one message id of ``store`` that starts with ``prefix``.

    Raises:
        ConfigError: none does, or several do (the first few are named).
    """
    try:
        return msgids.resolve(store, prefix)
    except msgids.NoSuchMessage:
        raise ConfigError(f"no message {prefix} in {home}") from None
    except msgids.AmbiguousMessage as exc:
        shown = ", ".join(m.hex() for m in exc.candidates)
        more = ", …" if exc.more else ""
        raise ConfigError(
            f"message id {prefix} is ambiguous in {home}: it matches {shown}{more}; "
            "give more digits"
        ) from None


def sealed_line(points: list[TraceEntry]) -> str:
    """How the message went, if it was to go sealed (docs/protocol.md §14.2): sealed (the
    relay stored it without a sender), or a fallback to a normal send and why; ``""`` for a
    message that was never to go sealed."""
    unsealed = [p for p in points if p.point == "unsealed"]
    if unsealed:
        return f"  sealed: no — fell back to a normal send ({unsealed[-1].detail})"
    if any(p.point == "sealed" for p in points):
        stored = any(p.point == "sealed_stored" for p in points)
        how = "stored by the relay without a sender" if stored else "not stored yet"
        return f"  sealed: yes — {how}"
    return ""


def cmd_trace(args: argparse.Namespace) -> int:
    home = home_of(args)
    with ClientStore(prepare_home(home)) as store:
        mid = resolve(store, message_prefix(args.message_id), home)
        points = store.trace(mid)
        if args.json:
            print(json.dumps(trace_json(mid, store.message_status(mid), points)))
            return 0
        start = points[0].at if points else 0.0
        status = store.message_status(mid)
        refused = [p.point.partition(":")[2] for p in points if p.point.startswith("refused:")]
        waiting = ""
        if refused and store.outbox_item(mid) is not None:
            waiting = f"  (still in the outbox: last refused {refused[-1]}, retrying)"
        print(
            f"message {mid.hex()}  status {glyph(status or Status.PENDING)} "
            f"{(status or Status.PENDING).name.lower()}{waiting}"
        )
        names = {p.point for p in points}
        line = sealed_line(points)
        if line:
            print(line)
        for p in points:
            delta = (p.at - start) * 1000
            detail = f"  ({p.detail})" if p.detail else ""
            print(f"  {_ts(p.at)}  +{delta:9.1f} ms  {p.point}{detail}")
        if "tcp_acked" not in names and "written" in names:
            print("  tcp_acked: unavailable (no Linux TCP_INFO, or not observed)")
    return 0
