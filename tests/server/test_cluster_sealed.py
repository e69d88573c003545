"""A sealed send on one relay node reaches the recipient's device on the other through a hint
(two nodes on one PostgreSQL database and a Redis, as tests/server/test_cluster.py's)."""

from __future__ import annotations

from tests.server.noise_ws import NoiseWS
from tests.server.test_cluster import Nodes, count, next_of, redisd, registered, url  # noqa: F401
from tests.server.test_cluster import nodes as nodes  # the fixture
from tidings.store import DeviceRef
from tidings.wire import Deliver, SealedDevice, SealedSend, SealedSent

KEY = bytes(range(16))
TAG = b"s" * 16


async def test_a_sealed_send_on_one_node_reaches_a_device_on_the_other(nodes: Nodes) -> None:
    bob = await registered(nodes.ws(nodes.b), "bob")
    await nodes.a.store.put_access_key(DeviceRef("bob", 1), KEY)
    sender = await NoiseWS.open_nk(nodes.ws(nodes.a), nodes.a.static_public)
    await sender.send(SealedSend(TAG, "bob", KEY, (SealedDevice(1, b"sealed across"),)))
    (sent,) = await sender.next()
    assert isinstance(sent, SealedSent) and sent.code == 0
    deliver = await next_of(bob, Deliver)  # the poll interval is an hour: only a hint could
    assert isinstance(deliver, Deliver)
    assert (deliver.kind, deliver.sender_account, deliver.message_id) == (3, "", TAG)
    assert deliver.payload == b"sealed across"
    assert count(nodes.b, "tidings_hints_woken_total") == 1
