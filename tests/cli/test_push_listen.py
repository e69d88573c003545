"""``tidings push-listen``'s receiver: the relay's real wake-up reaches it, decrypts, and wakes
the device, which then gets its messages; what is not a wake-up of its subscription (another
path, no or a foreign VAPID token, a body that does not decrypt) is refused and wakes nothing.
Its keys live 0600 in the device home, and survive a restart of the listener."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.harness import TIMEOUT, ClientLab, ObservedRelay, RelayLab, is_received, is_status
from tests.server.test_push import offline
from tidings.api.server import ApiServer
from tidings.cli import push_cmd
from tidings.cli.common import _print as real_print
from tidings.cli.push_cmd import _listen
from tidings.cli.push_listen import (
    KEYS_FILE,
    PushListener,
    load_or_create_subscription,
    save_subscription,
)
from tidings.cli.remote import DAEMON
from tidings.delivery import Status
from tidings.push import vapid, webpush
from tidings.store import DeviceRef, PushSubscription
from tidings.wire import PushState, PushStatus


@pytest.fixture
async def woken() -> AsyncIterator[asyncio.Queue[bytes]]:
    yield asyncio.Queue()


async def test_a_wake_up_from_the_relay_decrypts_and_wakes_the_device(
    relays: RelayLab, clients: ClientLab, tmp_path: Path, woken: asyncio.Queue[bytes]
) -> None:
    relay = await relays.start(push_allow_private=True)
    alice = await clients.new("alice")
    bob = await clients.new("bob")
    hello = await alice.client.send("bob", "hello")
    await bob.until(is_received(hello))

    sub = load_or_create_subscription(bob.home)
    assert stat.S_IMODE(os.stat(bob.home / KEYS_FILE).st_mode) == 0o600

    async def on_wake(plaintext: bytes) -> None:
        woken.put_nowait(plaintext)

    listener = PushListener(sub, on_wake, clock=relays.clock)
    endpoint = await listener.start()
    try:
        status = await bob.client.push_register(endpoint, sub.keys.public, sub.keys.auth)
        assert status.state == PushState.ACTIVE
        listener.sub = sub = type(sub)(sub.keys, sub.token, status.vapid_key)
        save_subscription(bob.home, sub)
        await offline(relay, bob)

        mid = await alice.client.send("bob", "wake up")
        await alice.until(is_status(mid, Status.SENT))
        async with asyncio.timeout(TIMEOUT):
            plaintext = await woken.get()
        assert len(plaintext) == 16 and listener.accepted == 1
        again = await clients.start(bob.home)  # what `wake` makes the daemon do: connect
        await again.until(is_received(mid))
        kept = load_or_create_subscription(bob.home)  # the same keys next time
        assert kept.keys.private_bytes() == sub.keys.private_bytes()
        assert (kept.keys.auth, kept.token, kept.vapid_key) == (
            sub.keys.auth,
            sub.token,
            sub.vapid_key,
        )
    finally:
        await listener.close()


async def test_what_is_not_its_wake_up_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    relay_key = ec.generate_private_key(ec.SECP256R1())
    sub = load_or_create_subscription(home)
    sub = type(sub)(sub.keys, sub.token, webpush.public_bytes(relay_key))
    calls: list[bytes] = []

    async def on_wake(plaintext: bytes) -> None:
        calls.append(plaintext)

    listener = PushListener(sub, on_wake)
    endpoint = await listener.start()
    body = webpush.encrypt(b"n" * 16, sub.keys.public, sub.keys.auth, os.urandom)
    good = vapid.authorization(relay_key, endpoint, "mailto:ops@example.org", _now())
    other = vapid.authorization(
        ec.generate_private_key(ec.SECP256R1()), endpoint, "mailto:x@example.org", _now()
    )
    aes = {"Content-Encoding": "aes128gcm"}
    try:
        async with aiohttp.ClientSession() as http:
            cases = [
                (endpoint + "x", {**aes, "Authorization": good}, body, 404),
                (endpoint, aes, body, 401),
                (endpoint, {**aes, "Authorization": other}, body, 401),
                (endpoint, {"Authorization": good}, body, 400),
                (endpoint, {**aes, "Authorization": good}, body[:-1] + b"\x00", 400),
                (endpoint, {**aes, "Authorization": good}, bytes(9000), 413),
                (endpoint, {**aes, "Authorization": good}, body, 201),
            ]
            for url, headers, data, expected in cases:
                async with http.post(url, data=data, headers=headers) as resp:
                    assert resp.status == expected, (url, headers, resp.status)
    finally:
        await listener.close()
    assert calls == [b"n" * 16]
    assert listener.refused == 6


def _now() -> float:
    return time.time()


async def test_push_listen_registers_through_the_daemon_and_again_when_told_dead(
    relays: RelayLab,
    clients: ClientLab,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    relay = await relays.start(push_allow_private=True)
    bob = await clients.start(await clients.register("bob"), owner=DAEMON)  # as the daemon
    server = ApiServer(bob.client, bob.home)
    await server.start()
    args = argparse.Namespace(
        command="push-listen",
        home=str(bob.home),
        json=True,
        host="127.0.0.1",
        port=0,
        register=True,
        count=0,
        client_config=None,
        client_sets=None,
    )
    events: list[str] = []
    printed = asyncio.Event()

    def recorded(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
        real_print(args, obj, text)
        events.append(obj.get("event", ""))
        printed.set()

    monkeypatch.setattr(push_cmd, "_print", recorded)
    task = asyncio.ensure_future(_listen(args, bob.home))
    try:
        registered = await until_subscribed(relay, bob.me, dead=False)
        # The push service said it is gone: the relay marks it dead and tells the device.
        (attempt,) = [replace(registered, wake_attempts=1)]
        dead = relay.push.scheduler.gone(attempt, relays.clock.now)
        assert dead is not None and dead.dead
        session = relay.sessions[bob.me]
        session.send_frame(
            PushStatus(0, relay.push.vapid_public, int(PushState.DEAD), dead.endpoint)
        )
        revived = await until_subscribed(relay, bob.me, dead=False, after=dead)
        assert revived.endpoint == registered.endpoint
        async with asyncio.timeout(TIMEOUT):  # its line follows the relay's answer
            while events.count("registered") < 2:
                printed.clear()
                await printed.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.close()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines] == ["listening", "registered", "registered"]


async def until_subscribed(
    relay: ObservedRelay, device: DeviceRef, *, dead: bool, after: object = None
) -> PushSubscription:
    """The device's subscription once it is (not) dead and not ``after`` (waits on the relay's
    wake-up state changes, never sleeps)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            change = relay.push.changed()
            sub = relay.push.scheduler.get(device)
            if sub is not None and sub.dead is dead and sub is not after:
                return sub
            await change.wait()
