"""What the device commands share: the ``--home``/``--json`` options and how they print."""

from __future__ import annotations

import argparse
import binascii
import datetime
import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError

DEFAULT_HOME = Path.home() / ".local" / "share" / "tidings" / "default"


def home_of(args: argparse.Namespace) -> Path:
    """The device home chosen by ``--home`` / ``TIDINGS_HOME`` / the default."""
    if args.home:
        return Path(args.home)
    return Path(os.environ.get("TIDINGS_HOME", DEFAULT_HOME))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", help=f"device directory (env TIDINGS_HOME; default {DEFAULT_HOME})")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of text")


def _ts(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S.%f")[:-3]


def _print(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    print(json.dumps(obj) if args.json else text, flush=True)


def _hex(text: str, what: str) -> bytes:
    try:
        return binascii.unhexlify(text.strip())
    except (binascii.Error, ValueError):
        raise ConfigError(f"the {what} must be hexadecimal") from None
