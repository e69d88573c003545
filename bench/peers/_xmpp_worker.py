"""Worker process of the Prosody peer: XMPP clients (slixmpp) on one event loop.

Not meant to be run by hand: ``python bench/peers/_xmpp_worker.py SPEC.json`` (see
``_worker.py`` for the protocol with the orchestrator). Every client logs in (SASL SCRAM over
plain TCP on loopback), binds a resource, enables stream management (XEP-0198) and sends its
initial presence. The sender sends ``chat`` messages to its receiver's bare JID, each asking for
a receipt (XEP-0184), and keeps ``window`` of them not yet acknowledged by the server through
stream management (✓: slixmpp asks for an ack every ``SM_WINDOW`` stanzas, its default); the
receiver's slixmpp answers each message with its receipt by itself (the plugin's ``auto_ack``),
and the sender counts the receipt as ✓✓.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import slixmpp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _worker import Closer, PairStats, body, main, parse_body

#: Stanzas between the client's ack requests (<r/>): slixmpp's default.
SM_WINDOW = 5
#: The password every account of the bench has (written by ``servers.py``).
PASSWORD = "bench"


class BenchClient(slixmpp.ClientXMPP):  # type: ignore[misc]
    """One account's client: ready once its session started with stream management on."""

    def __init__(self, jid: str) -> None:
        # SCRAM over plain TCP: slixmpp refuses it unless told (loopback only here).
        super().__init__(
            jid, PASSWORD, plugin_config={"feature_mechanisms": {"unencrypted_scram": True}}
        )
        self.enable_starttls = False  # loopback: the bench measures XMPP, not TLS
        self.enable_direct_tls = False
        self.enable_plaintext = True
        self.register_plugin("xep_0198", {"window": SM_WINDOW})
        self.register_plugin("xep_0184", {"auto_ack": True, "auto_request": False})
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._session = False
        self._sm = False
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("sm_enabled", self._on_sm_enabled)
        self.add_event_handler("failed_auth", lambda _: self._fail("login refused"))
        self.add_event_handler("connection_failed", lambda e: self._fail(f"cannot connect: {e}"))

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"{self.boundjid.bare}: {why}"))

    def _on_session_start(self, _event: object) -> None:
        self.send_presence()
        self._session = True
        self._maybe_ready()

    def _on_sm_enabled(self, _event: object) -> None:
        self._sm = True
        self._maybe_ready()

    def _maybe_ready(self) -> None:
        if self._session and self._sm and not self.ready.done():
            self.ready.set_result(None)


async def connect(spec: dict[str, Any], name: str) -> BenchClient:
    client = BenchClient(f"{name}@{spec['domain']}/bench")
    client.connect(spec["host"], int(spec["port"]))
    await client.ready
    return client


def seq_of(stanza_id: str) -> int | None:
    return int(stanza_id[1:]) if stanza_id.startswith("m") and stanza_id[1:].isdigit() else None


async def open_pairs(
    spec: dict[str, Any],
) -> tuple[list[tuple[PairStats, Callable[[float], Awaitable[None]]]], Closer]:
    n, window, size = int(spec["messages"]), int(spec["window"]), int(spec["payload"])
    clients: list[BenchClient] = []
    out: list[tuple[PairStats, Callable[[float], Awaitable[None]]]] = []

    def wire(sender: BenchClient, receiver: BenchClient, stats: PairStats) -> None:
        def acked(stanza: Any) -> None:
            if isinstance(stanza, slixmpp.Message):
                seq = seq_of(stanza["id"])
                if seq is not None:
                    stats.on_ack(seq)

        def receipt(msg: Any) -> None:
            seq = seq_of(msg["receipt"])
            if seq is not None:
                stats.on_receipt(seq)

        def message(msg: Any) -> None:
            text = msg["body"]
            if text:
                stats.on_message(*parse_body(text))

        sender.add_event_handler("stanza_acked", acked)
        sender.add_event_handler("receipt_received", receipt)
        receiver.add_event_handler("message", message)

    def producer(sender: BenchClient, stats: PairStats, to: str) -> Callable[[float], Any]:
        async def produce(deadline: float) -> None:
            for seq in range(n):
                await stats.wait_slot(deadline)
                msg = sender.make_message(mto=to, mbody=body(seq, size), mtype="chat")
                msg["id"] = f"m{seq}"
                msg["request_receipt"] = True
                stats.on_send(seq)
                msg.send()
            sender.plugin["xep_0198"].request_ack()  # the ✓ of the last < SM_WINDOW

        return produce

    for pair in spec["pairs"]:
        stats = PairStats(n, window)
        sender = await connect(spec, pair["sender"])
        receiver = await connect(spec, pair["receiver"])
        clients += [sender, receiver]
        wire(sender, receiver, stats)
        to = f"{pair['receiver']}@{spec['domain']}"
        out.append((stats, producer(sender, stats, to)))

    async def close() -> None:
        await asyncio.gather(*(c.disconnect(wait=1.0) for c in clients), return_exceptions=True)

    return out, close


#: Logins in progress at once (SCRAM costs the client a few ms each).
CONNECT_CONCURRENCY = 16


async def open_idle(spec: dict[str, Any]) -> tuple[int, Closer]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(name: str) -> BenchClient:
        async with gate:
            return await connect(spec, name)

    clients = await asyncio.gather(*(one(name) for name in spec["names"]))

    async def close() -> None:
        await asyncio.gather(*(c.disconnect(wait=1.0) for c in clients), return_exceptions=True)

    return len(clients), close


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    sys.exit(main(open_pairs, open_idle))
