"""Worker process of the Mosquitto peer: MQTT 3.1.1 clients (aiomqtt) on one event loop.

Not meant to be run by hand: ``python bench/peers/_mqtt_worker.py SPEC.json`` (see
``_worker.py`` for the protocol with the orchestrator). Per pair: the receiver subscribes to
``bench/<receiver>`` and the sender to ``bench/<sender>`` (QoS 1, persistent sessions:
``clean_session=False``). The sender publishes each message to its receiver's topic at QoS 1
and keeps ``window`` of them without a PUBACK (✓: the broker has it); the receiver publishes a
receipt (the message's sequence number) to the sender's topic at QoS 1 for every message it
gets, and the sender counts it as ✓✓.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _worker import Closer, PairStats, body, main, parse_body

#: What paho queues beyond its in-flight limit; 0 = no limit: the receipts are not windowed.
UNLIMITED = 0


def new_client(spec: dict[str, Any], name: str, inflight: int) -> aiomqtt.Client:
    return aiomqtt.Client(
        spec["host"],
        int(spec["port"]),
        identifier=name,
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=False,
        max_inflight_messages=inflight,
        keepalive=300,
    )


async def connect(spec: dict[str, Any], name: str, inflight: int) -> aiomqtt.Client:
    client = new_client(spec, name, inflight)
    await client.__aenter__()
    await client.subscribe(f"bench/{name}", qos=1)
    return client


async def open_pairs(
    spec: dict[str, Any],
) -> tuple[list[tuple[PairStats, Callable[[float], Awaitable[None]]]], Closer]:
    n, window, size = int(spec["messages"]), int(spec["window"]), int(spec["payload"])
    clients: list[aiomqtt.Client] = []
    readers: list[asyncio.Task[None]] = []
    background: set[asyncio.Task[None]] = set()
    out: list[tuple[PairStats, Callable[[float], Awaitable[None]]]] = []

    def spawn(coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        background.add(task)
        task.add_done_callback(background.discard)

    async def receive(client: aiomqtt.Client, stats: PairStats, receipts_to: str) -> None:
        async for m in client.messages:
            seq, sent = parse_body(bytes(m.payload).decode())  # type: ignore[arg-type]
            if stats.on_message(seq, sent):
                spawn(client.publish(receipts_to, str(seq).encode(), qos=1))

    async def receipts(client: aiomqtt.Client, stats: PairStats) -> None:
        async for m in client.messages:
            stats.on_receipt(int(bytes(m.payload)))  # type: ignore[arg-type]

    def producer(client: aiomqtt.Client, stats: PairStats, to: str) -> Callable[[float], Any]:
        async def publish(seq: int) -> None:
            await client.publish(to, body(seq, size).encode(), qos=1)
            stats.on_ack(seq)

        async def produce(deadline: float) -> None:
            for seq in range(n):
                await stats.wait_slot(deadline)
                stats.on_send(seq)
                spawn(publish(seq))

        return produce

    for pair in spec["pairs"]:
        sender_name, receiver_name = pair["sender"], pair["receiver"]
        stats = PairStats(n, window)
        sender = await connect(spec, sender_name, window)
        receiver = await connect(spec, receiver_name, UNLIMITED)
        clients += [sender, receiver]
        readers.append(asyncio.ensure_future(receipts(sender, stats)))
        readers.append(asyncio.ensure_future(receive(receiver, stats, f"bench/{sender_name}")))
        out.append((stats, producer(sender, stats, f"bench/{receiver_name}")))

    async def close() -> None:
        for task in [*readers, *background]:
            task.cancel()
        await asyncio.gather(*readers, *background, return_exceptions=True)
        await asyncio.gather(*(c.__aexit__(None, None, None) for c in clients))

    return out, close


async def open_idle(spec: dict[str, Any]) -> tuple[int, Closer]:
    clients = [await connect(spec, name, UNLIMITED) for name in spec["names"]]

    async def close() -> None:
        await asyncio.gather(*(c.__aexit__(None, None, None) for c in clients))

    return len(clients), close


if __name__ == "__main__":
    sys.exit(main(open_pairs, open_idle))
