"""A sealed send to an offline device wakes it as a SEND does, and the wake-up names nobody
(the fixtures and helpers of tests/server/test_push.py)."""

from __future__ import annotations

from tests.harness import ClientLab, RelayLab
from tests.server.noise_ws import NoiseWS
from tests.server.push_receiver import PushService
from tests.server.test_push import check_content_free, offline, start_relay, subscribe
from tests.server.test_push import service as service  # the fixture
from tidings.wire import SealedDevice, SealedSend, SealedSent

KEY = bytes(range(16))
TAG = bytes(range(100, 116))


async def test_a_sealed_send_wakes_an_offline_device(
    relays: RelayLab, clients: ClientLab, service: PushService
) -> None:
    relay = await start_relay(relays)
    bob = await clients.new("bob")
    keys = await subscribe(bob, service)
    await relay.store.put_access_key(bob.me, KEY)
    await offline(relay, bob)
    sender = await NoiseWS.open_nk(relay.url, relay.static_public)
    payload = (SealedDevice(bob.me.device_id, b"hello sealed"),)
    await sender.send(SealedSend(TAG, bob.me.account, KEY, payload))
    (sent,) = await sender.next()
    assert isinstance(sent, SealedSent) and sent.code == 0
    got = await service.next()
    assert got.path == f"/push/{bob.me}"
    check_content_free(got, keys, relay, [TAG])
