"""``tidings relays``: the URLs this device knows its relay by, and replacing them.

A relay that runs as several nodes (``tidings server`` processes on one PostgreSQL database,
sharing the relay's ``server.key``) is known by several URLs, preferred first
(:mod:`tidings.client.relays` says which one each attempt goes to). ``tidings register --server``
stores the first list; this command shows it, and ``tidings relays URL [URL …]`` replaces it.

Replacing checks every URL first (a bad one: one line, nothing stored) and holds the device's
lock while it writes, so a running ``listen``, ``chat`` or ``daemon`` must be stopped first (the
URLs are read when a device starts). The pinned relay key stays: URLs of another relay are
refused at the first connection, as a relay whose key changed.
"""

from __future__ import annotations

import argparse

from ..client.home import prepare_home
from ..client.lock import DeviceLock
from ..client.relays import MAX_RELAY_URLS, parse_relay_urls
from ..client.store import ClientStore, Identity
from ..errors import ConfigError
from .common import _common, _print, home_of


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "relays",
        help="show or replace the URLs of this device's relay (its nodes)",
        description="Without URL: print the relay URLs this device connects to, preferred "
        "first. With URLs (repeated, or comma-separated; at most "
        f"{MAX_RELAY_URLS}): replace them, for a relay that runs as several nodes sharing one "
        "server.key. The device must not be running (stop listen, chat or the daemon first). A "
        "bad URL changes nothing.",
    )
    p.add_argument("urls", nargs="*", metavar="URL", help="the relay's URLs, preferred first")
    _common(p)
    p.set_defaults(func=cmd_relays)


def cmd_relays(args: argparse.Namespace) -> int:
    home = home_of(args)
    db = prepare_home(home)
    if args.urls:
        urls = parse_relay_urls(args.urls)  # before anything is locked or written
        lock = DeviceLock.acquire(home, f"tidings {args.command}")  # DeviceBusy: stop it first
        try:
            with ClientStore(db) as store:
                _identity(store)
                store.set_relay_urls(urls)
                identity = _identity(store)
        finally:
            lock.release()
    else:
        with ClientStore(db) as store:
            identity = _identity(store)
    _print(args, {"relays": list(identity.server_urls)}, "\n".join(identity.server_urls))
    return 0


def _identity(store: ClientStore) -> Identity:
    identity = store.get_identity()
    if identity is None:
        raise ConfigError("this home holds no registered device: run `tidings register` first")
    return identity
