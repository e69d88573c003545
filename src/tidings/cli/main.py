"""The ``tidings`` command.

Subcommands: ``server``, ``register``, ``link-code``, ``send``, ``listen``, ``daemon``,
``conversations``, ``history``, ``search``, ``chat``, ``read-receipts``, ``config``, ``relays``,
``trace``, ``safety-number``, ``timer``, ``devices``, ``push``, ``push-listen``, ``web``,
``demo``, ``lab``, ``group``.
``tidings COMMAND --help`` describes each. Every failure is one line on stderr and an exit
code of :class:`~tidings.cli.exits.Exit` (the README's "Exit codes" table lists them).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .. import __version__
from ..errors import ConnectionBroken, DeviceBusy, RefusedError, StoreUnavailable, TidingsError
from . import (
    block_cmd,
    chat_cmd,
    client_cmds,
    config_cmd,
    daemon_cmd,
    demo,
    devices_cmd,
    group_cmd,
    history_cmd,
    lab_cmd,
    push_cmd,
    relays_cmd,
    safety_cmd,
    server_cmd,
    timer_cmd,
    web_cmd,
)
from .exits import Exit


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``tidings``."""
    p = argparse.ArgumentParser(
        prog="tidings",
        description="End-to-end guaranteed messaging: a store-and-forward relay and its clients.",
    )
    p.add_argument("--version", action="version", version=f"tidings {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log connection events")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    server_cmd.add_parser(sub)
    client_cmds.add_parsers(sub)
    daemon_cmd.add_parser(sub)
    web_cmd.add_parser(sub)
    config_cmd.add_parser(sub)
    relays_cmd.add_parser(sub)
    history_cmd.add_parsers(sub)
    timer_cmd.add_parser(sub)
    block_cmd.add_parsers(sub)
    devices_cmd.add_parser(sub)
    chat_cmd.add_parser(sub)
    safety_cmd.add_parser(sub)
    push_cmd.add_parsers(sub)
    demo.add_parser(sub)
    lab_cmd.add_parser(sub)
    group_cmd.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``tidings``; returns the exit code."""
    try:
        try:
            args = parser().parse_args(argv)
        finally:
            sys.stdout.flush()  # --help and --version print, then exit, here
    except BrokenPipeError:
        return _pipe_closed()
    code = _run(args)
    try:
        sys.stdout.flush()  # a pipe closed early shows here, at the latest
    except BrokenPipeError:
        return _pipe_closed()
    return code


def _pipe_closed() -> int:
    """``tidings … | head``: the reader has what it wanted; say nothing, and make sure the
    interpreter's last flush at exit says nothing either."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return Exit.PIPE_CLOSED


def _run(args: argparse.Namespace) -> int:
    if args.command != "server":
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING,
            format="%(levelname)s %(name)s %(message)s",
        )
        logging.getLogger("picows").setLevel(logging.WARNING)
    try:
        _use_uvloop()
        return int(args.func(args))
    except DeviceBusy as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return Exit.DEVICE_BUSY
    except RefusedError as exc:
        print(f"tidings: refused by the server: {exc.reason} (code {exc.code})", file=sys.stderr)
        return Exit.ERROR
    except StoreUnavailable as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return Exit.STORAGE
    except ConnectionBroken as exc:  # RelayUnreachable: refused, DNS, TLS, timed out
        print(f"tidings: {exc}", file=sys.stderr)
        return Exit.UNREACHABLE
    except TidingsError as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return Exit.ERROR
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    except BrokenPipeError:
        return _pipe_closed()
    except OSError as exc:  # a file tidings was told to use: permission denied, not a directory
        where = f": {exc.filename}" if exc.filename else ""
        print(f"tidings: {exc.strerror or exc}{where}", file=sys.stderr)
        return Exit.ERROR


def _use_uvloop() -> None:
    """Use uvloop's faster event loop where it is installed."""
    try:
        import uvloop
    except ImportError:
        return
    import asyncio

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    sys.exit(main())
