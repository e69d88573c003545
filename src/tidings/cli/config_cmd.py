"""``tidings config``: the settings a device would run with, each with its value and source.

It loads the settings as ``listen``, ``send`` and ``daemon`` do (``--set`` > ``TIDINGS_CLIENT_*``
> ``--config``/``TIDINGS_CLIENT_CONFIG``/``HOME/config.toml`` > defaults), so a bad setting
fails here with the same one line. ``read_receipts`` unset by them is the device's stored
setting (``tidings read-receipts``), read from the home when it holds a device.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..client.config import CONFIG_NAME, config_path
from ..client.home import DB_NAME, prepare_home
from ..client.store import ClientStore
from .common import _common, _config_flags, config_of, home_of


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "config",
        help="show this device's client settings, their values and where each came from",
        description="Print each client setting (keepalive, reconnect backoff, outbox window, "
        "read receipts) with its value and source: default, file (--config, "
        f"TIDINGS_CLIENT_CONFIG or HOME/{CONFIG_NAME}), env (TIDINGS_CLIENT_<NAME>) or flag "
        "(--set NAME=VALUE); the commands that run a device use the same. Exit 1 on a bad "
        "setting.",
    )
    _common(p)
    _config_flags(p)
    p.set_defaults(func=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    home = home_of(args)
    config = config_of(args)
    settings = config.describe()
    if config.read_receipts is None:
        settings["read_receipts"] = _stored_read_receipts(home)
    path = config_path(home, args.client_config, os.environ)
    relays = _stored_relays(home)
    if args.json:
        out = {"file": str(path) if path else None, "settings": settings, "relays": relays}
        print(json.dumps(out))
        return 0
    print(f"file: {path}" if path else f"file: none ({home / CONFIG_NAME} does not exist)")
    if relays:
        print(f"relays: {', '.join(relays)} (tidings relays)")
    width = max(map(len, settings))
    for name, s in settings.items():
        where = f" ({s['where']})" if s["where"] else ""
        if s["source"] == "stored":
            where = " (tidings read-receipts)"
        print(f"{name:<{width}}  {_value(s['value']):<6}  {s['source']}{where}")
    return 0


def _stored_read_receipts(home: Path) -> dict[str, Any]:
    """The stored read-receipts setting, or the default of a home without a device."""
    if not (home / DB_NAME).is_file():
        return {"value": True, "source": "default", "where": None}
    with ClientStore(prepare_home(home)) as store:
        identity = store.get_identity()
    value = identity.read_receipts if identity else True
    return {"value": value, "source": "stored", "where": None}


def _stored_relays(home: Path) -> list[str]:
    """The relay URLs the device connects to, preferred first ([] without a device)."""
    if not (home / DB_NAME).is_file():
        return []
    with ClientStore(prepare_home(home)) as store:
        identity = store.get_identity()
    return list(identity.server_urls) if identity else []


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return f"{v:g}" if isinstance(v, float) else str(v)
