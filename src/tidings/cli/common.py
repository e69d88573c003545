"""What the device commands share: the ``--home``/``--json`` options (``--config``/``--set`` for
the commands that run a device) and how they print."""

from __future__ import annotations

import argparse
import binascii
import datetime
import json
import os
from pathlib import Path
from typing import Any

from ..client.config import ClientConfig, config_path, load_client_config, parse_sets
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


def _config_flags(p: argparse.ArgumentParser) -> None:
    """``--config PATH`` and ``--set NAME=VALUE``: the device's settings (``tidings config``)."""
    p.add_argument(
        "--config",
        dest="client_config",
        metavar="PATH",
        help="client settings file (env TIDINGS_CLIENT_CONFIG; default HOME/config.toml)",
    )
    p.add_argument(
        "--set",
        dest="client_sets",
        action="append",
        metavar="NAME=VALUE",
        help="a client setting, over the file and TIDINGS_CLIENT_<NAME> (see `tidings config`)",
    )


def config_of(args: argparse.Namespace) -> ClientConfig:
    """The device's settings: ``--set`` > ``TIDINGS_CLIENT_*`` > the file > the defaults.

    Raises:
        ConfigError: a bad file, key or value (one line naming it).
    """
    # getattr: a command (or a test) whose parser has no --config/--set gets the file and env
    path = config_path(home_of(args), getattr(args, "client_config", None), os.environ)
    return load_client_config(path, os.environ, parse_sets(getattr(args, "client_sets", None)))


def _ts(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%H:%M:%S.%f")[:-3]


def _print(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    print(json.dumps(obj) if args.json else text, flush=True)


def _hex(text: str, what: str) -> bytes:
    try:
        return binascii.unhexlify(text.strip())
    except (binascii.Error, ValueError):
        raise ConfigError(f"the {what} must be hexadecimal") from None
