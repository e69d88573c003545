"""The lab resolver process: :class:`~tidings.lab.dns.Zone` on a UDP socket, and its controller.

Usage (inside the lab's server namespace)::

    python -m tidings.lab.dns_server --listen ADDR [--port 53] --name NAME=ADDR… --wrong ADDR

stdout, one JSON line each: ``{"listening": [addr, port]}`` once bound; ``{"mode": m,
"queries": {...}}`` after each mode change (the queries seen so far, by the mode they met).
stdin, one JSON line each: ``{"cmd": "mode", "mode": "answer|servfail|timeout|wrong"}``. The end
of stdin (the controller is gone) ends the process: it never outlives the lab, and a lab killed
-9 leaves it in a namespace that the next start's sweep deletes (killing it).

:class:`ResolverProc` runs it as a lab process (:class:`~tidings.lab.procs.Proc`, reaped with
the run's registry).
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .dns import MAX_DATAGRAM, Mode, Zone
from .netns import argv_in
from .proc_base import WAIT, LabProcError, Proc, ProcRegistry

__all__ = ["DNS_PORT", "ResolverProc", "main"]

DNS_PORT = 53
"""Where resolvers listen (``resolv.conf`` cannot name another port)."""


def _emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def serve(zone: Zone, sock: socket.socket) -> None:
    """Answer datagrams on ``sock`` and commands on stdin until stdin ends."""
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, "dns")
    stdin = sys.stdin.fileno()
    sel.register(stdin, selectors.EVENT_READ, "cmd")
    pending = b""
    while True:
        for key, _ in sel.select():
            if key.data == "dns":
                data, peer = sock.recvfrom(MAX_DATAGRAM + 1)
                reply = zone.answer(data)
                if reply is not None:
                    sock.sendto(reply, peer)
                continue
            chunk = os.read(stdin, 4096)  # unbuffered: select() sees every line that is left
            if not chunk:
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                _command(zone, line)


def _command(zone: Zone, line: bytes) -> None:
    try:
        cmd = json.loads(line)
        zone.mode = Mode(cmd["mode"])
    except (ValueError, KeyError, TypeError) as exc:
        _emit({"error": f"bad command {line.strip()!r}: {exc}"})
        return
    _emit({"mode": zone.mode.value, "queries": dict(zone.queries)})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="the tidings lab's resolver")
    p.add_argument("--listen", required=True, help="the address to listen on")
    p.add_argument("--port", type=int, default=DNS_PORT)
    p.add_argument("--name", action="append", required=True, metavar="NAME=ADDR")
    p.add_argument("--wrong", required=True, help="the address a wrong answer gives")
    args = p.parse_args(argv)
    names = dict(item.split("=", 1) for item in args.name)
    zone = Zone(names, args.wrong)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((args.listen, args.port))
        _emit({"listening": list(sock.getsockname())})
        serve(zone, sock)
    return 0


class ResolverProc(Proc):
    """The resolver process inside namespace ``ns`` (``None``: this one), as a lab process.

    Args:
        listen: the address it binds (port :data:`DNS_PORT` unless ``port``).
        names: name → address, the zone's truth.
        wrong: the address of a ``wrong`` answer.
        log_dir, registry: as :class:`~tidings.lab.procs.Proc`.
    """

    def __init__(
        self,
        ns: str | None,
        listen: str,
        names: Mapping[str, str],
        wrong: str,
        log_dir: Path,
        *,
        port: int = DNS_PORT,
        registry: ProcRegistry | None = None,
    ) -> None:
        prefix: Sequence[str] = argv_in(ns, []) if ns is not None else ()
        super().__init__("resolver", log_dir, argv_prefix=prefix, registry=registry)
        self.listen, self.port, self.names, self.wrong = listen, port, dict(names), wrong
        self.mode = Mode.ANSWER

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "tidings.lab.dns_server", "--listen", self.listen]
        argv += ["--port", str(self.port), "--wrong", self.wrong]
        for name, address in self.names.items():
            argv += ["--name", f"{name}={address}"]
        return argv

    def start(self, timeout: float = WAIT) -> None:
        """Start it and wait until it listens (its port, if it was 0, in :attr:`port`)."""
        self.spawn()
        line = self.wait_line("listening", timeout)
        self.port = int(line["listening"][1])

    def set_mode(self, mode: Mode, timeout: float = WAIT) -> dict[str, int]:
        """Answer in ``mode`` from now on; return the queries seen so far, by mode."""
        since = len(self.lines)
        self.write({"cmd": "mode", "mode": mode.value})
        line = self.wait_line("mode", timeout, since)
        if line["mode"] != mode.value:
            raise LabProcError(f"resolver answered {line} to mode {mode.value}")
        self.mode = mode
        queries: dict[str, int] = line["queries"]
        return queries


if __name__ == "__main__":
    sys.exit(main())
