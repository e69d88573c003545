"""``tidings trace MESSAGE``: a sent message's confirmation points, from the local store."""

from __future__ import annotations

import argparse
import json

from ..client.connect import DB_NAME
from ..client.store import ClientStore
from ..delivery import Status, glyph
from ..errors import ConfigError
from .common import _common, _hex, _ts, home_of


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "trace",
        help="show a sent message's confirmation points",
        description="Show every confirmation point this device saw for a message: composed, "
        "written to the socket, acked by the server's TCP stack, ✓ stored, ✓✓ delivered and "
        "read per device, ✗ expired. Reads the local store only.",
    )
    p.add_argument("message_id", help="message id (hex, as printed by `tidings send`)")
    _common(p)
    p.set_defaults(func=cmd_trace)


def cmd_trace(args: argparse.Namespace) -> int:
    mid = _hex(args.message_id, "message id")
    home = home_of(args)
    if not (home / DB_NAME).exists():
        raise ConfigError(f"{home} holds no device")
    with ClientStore(home / DB_NAME) as store:
        points = store.trace(mid)
        message = store.message(mid)
        if not points and message is None:
            raise ConfigError(f"no message {args.message_id} in {home}")
        if args.json:
            print(
                json.dumps(
                    {
                        "message_id": mid.hex(),
                        "status": (store.message_status(mid) or Status.PENDING).name.lower(),
                        "points": [
                            {"point": p.point, "at": p.at, "detail": p.detail} for p in points
                        ],
                    }
                )
            )
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
        for p in points:
            delta = (p.at - start) * 1000
            detail = f"  ({p.detail})" if p.detail else ""
            print(f"  {_ts(p.at)}  +{delta:9.1f} ms  {p.point}{detail}")
        if "tcp_acked" not in names and "written" in names:
            print("  tcp_acked: unavailable (no Linux TCP_INFO, or not observed)")
    return 0
