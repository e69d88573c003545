"""``tidings daemon``: run a device in the foreground and serve its local API.

The daemon holds the device (its lock, its one connection, its ratchet sessions) for as long as
it runs, and answers JSON-RPC 2.0 on ``HOME/api.sock`` (docs/api.md). It prints one line per
change of its connection and never a message's content (a journal should not hold what the
device encrypts). SIGTERM or Ctrl-C stop it cleanly: the socket goes, what is in the outbox stays
for the next start. docs/tidings-daemon.service is a systemd user unit for it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import Protocol

from ..api.server import ApiServer
from ..client import (
    Client,
    Connected,
    ConnectFailed,
    Disconnected,
    EventStream,
    StorageFailed,
)
from ..errors import ConfigError, StoreUnavailable
from .common import _common, _config_flags, _print, config_of, home_of
from .exits import Exit
from .show import _show_event


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "daemon",
        help="run this device in the foreground and serve its local API",
        description="Run the device (its connection, outbox and sessions) until SIGTERM or "
        "Ctrl-C, and serve the local API (JSON-RPC 2.0, one message per line) on HOME/api.sock "
        "(mode 0600). Prints connection changes, never message content. See docs/api.md.",
    )
    _common(p)
    _config_flags(p)
    p.set_defaults(func=cmd_daemon)


class FrontEnd(Protocol):
    """What the daemon starts beside its API once the device runs (``tidings web``)."""

    async def start(self, client: Client) -> None: ...
    async def close(self) -> None: ...


def cmd_daemon(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace, front: FrontEnd | None = None) -> int:
    """Run the device and its API until stopped; ``front`` (the web app) starts with them."""
    home = home_of(args)
    client = Client(home, owner="tidings daemon", config=config_of(args))
    stream = client.events()
    api = ApiServer(client, home)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await api.start()
        await client.start()
        _print(
            args,
            {
                "event": "daemon",
                "device": str(client.me),
                "relay": client.identity.server_url,
                "relays": list(client.identity.server_urls),
                "api": str(api.path),
            },
            f"tidings daemon: {client.me} via {' or '.join(client.identity.server_urls)}; "
            f"API at {api.path}",
        )
        if front is not None:
            await front.start(client)
        watcher = asyncio.ensure_future(_watch(args, client, stream))
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({watcher, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (watcher, stopped):
            task.cancel()
        if watcher in done and not watcher.cancelled():
            watcher.result()  # StoreUnavailable / ConfigError: one line and the exit code (main)
        _print(args, {"event": "stopped"}, "tidings daemon: stopped")
        return Exit.OK
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        stream.close()
        if front is not None:
            await front.close()
        await api.close()
        with contextlib.suppress(Exception):
            await client.close()


async def _watch(args: argparse.Namespace, client: Client, stream: EventStream) -> None:
    """Print the connection's changes; end on a failure that stops the device."""
    async for event in stream:
        if isinstance(event, StorageFailed):
            raise StoreUnavailable(event.state, event.message)
        if isinstance(event, Connected | ConnectFailed | Disconnected):
            _show_event(args, event)
        if isinstance(event, Disconnected) and event.fatal:
            raise ConfigError(client.fatal_message)
