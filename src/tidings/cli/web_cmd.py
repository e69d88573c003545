"""``tidings web``: the daemon, plus the local web app on 127.0.0.1.

It runs the device exactly as ``tidings daemon`` does (the lock, the one connection, the API
socket; other commands on the home go through it) and serves the web app
(:mod:`tidings.web.server`) on loopback. It prints the URL to open, with the session token;
``--open`` also opens it in the default browser. Ctrl-C or SIGTERM stop both.
"""

from __future__ import annotations

import argparse
import asyncio
import webbrowser
from typing import TYPE_CHECKING

from ..client import Client
from .common import _common, _config_flags, _print
from .daemon_cmd import _run

if TYPE_CHECKING:
    from ..web.server import WebApp

__all__ = ["add_parser", "cmd_web"]

#: The port when none is given: 0, a free one (printed); a fixed one can be taken already.
DEFAULT_PORT = 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the subcommand."""
    p = sub.add_parser(
        "web",
        help="run this device with the local web app (chat, message journeys)",
        description="Run the device as `tidings daemon` does and serve the web app on "
        "127.0.0.1 (loopback only). Prints the URL to open: it carries a session token, which "
        "the first visit trades for a cookie. Nothing is fetched from the internet.",
    )
    p.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help="port on 127.0.0.1 (default: a free one, printed)",
    )
    p.add_argument("--open", action="store_true", help="also open the URL in the browser")
    _common(p)
    _config_flags(p)
    p.set_defaults(func=cmd_web)


class _Web:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.app: WebApp | None = None

    async def start(self, client: Client) -> None:
        from ..web.server import WebApp  # aiohttp loads only for this command

        self.app = WebApp(client, port=self.args.port)
        await self.app.start()
        url = self.app.url
        _print(self.args, {"event": "web", "url": url}, f"tidings web: open {url}")
        if self.args.open:
            await asyncio.to_thread(webbrowser.open, url)

    async def close(self) -> None:
        if self.app is not None:
            await self.app.close()


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, not {port}")
    return port


def cmd_web(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args, _Web(args)))
