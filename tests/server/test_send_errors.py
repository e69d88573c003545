"""Which answer a bad SEND gets, through a real relay (docs/protocol.md §8, "A bad SEND").

A SEND is checked twice: first by the frame codec, as every frame is (a violation is an ERROR
and a close, nothing stored), then by the relay's send rules (a REFUSED for that send alone; the
connection stays open). These tests send raw frame bytes that a well-behaved client refuses to
build, and check both the codec's verdict (code and frame type of the ERROR) and the relay's
answer on the wire.
"""

from __future__ import annotations

import os
from typing import Any

import msgpack
import pytest

from tests.harness import ClientLab, RelayLab, open_raw, send_plaintext, send_sealed, wait_closed
from tidings.client.connect import DB_NAME
from tidings.client.store import ClientStore
from tidings.errors import FrameError
from tidings.noise import MAX_PLAINTEXT
from tidings.wire import (
    MAX_PAYLOAD,
    MAX_TARGETS,
    PROTOCOL_VERSION,
    ErrorCode,
    FrameType,
    Hello,
    Refused,
    Send,
    Sent,
    Target,
    Welcome,
    parse,
)

#: The relay's payload limit in these tests: lower than the wire's, as a server may set it.
SERVER_MAX_PAYLOAD = 256


def body(targets: Any) -> bytes:
    """A SEND body from alice to bob with these targets, encoded as MessagePack."""
    return bytes(msgpack.packb([int(FrameType.SEND), os.urandom(16), "bob", targets]))


def target(device: int, size: int, account: str = "bob") -> list[Any]:
    return [account, device, b"x" * size]


# (SEND body, the ERROR's code, the ERROR's frame_type). Device ids are checked against the
# account's devices only after the codec, so [bob, 1] twice is a codec error, not a mismatch. A
# body over MAX_FRAME is refused from its length prefix, before its type is known: frame_type 0.
CODEC_ERRORS = [
    pytest.param(
        body([target(1, MAX_PAYLOAD + 1)]), ErrorCode.INVALID_FIELD, 5, id="payload>65536"
    ),
    pytest.param(body([]), ErrorCode.INVALID_FIELD, 5, id="zero-targets"),
    pytest.param(body([target(1, 1), target(1, 2)]), ErrorCode.INVALID_FIELD, 5, id="duplicate"),
    pytest.param(
        body([target(i, 1) for i in range(1, MAX_TARGETS + 2)]),
        ErrorCode.INVALID_FIELD,
        5,
        id="33-targets",
    ),
    pytest.param(body([["Bob", 1, b"x"]]), ErrorCode.INVALID_FIELD, 5, id="bad-account"),
    pytest.param(body([["bob", -1, b"x"]]), ErrorCode.INVALID_FIELD, 5, id="negative-device"),
    pytest.param(body([["bob", 1, "x"]]), ErrorCode.INVALID_FIELD, 5, id="payload-as-str"),
    pytest.param(body([["bob", 1]]), ErrorCode.MALFORMED_FRAME, 5, id="target-of-2"),
    pytest.param(body({"bob": 1}), ErrorCode.MALFORMED_FRAME, 5, id="targets-not-array"),
    pytest.param(
        body([target(i, MAX_PAYLOAD) for i in range(1, 18)]),
        ErrorCode.FRAME_TOO_LARGE,
        0,
        id="frame>1MiB",
    ),
]


async def _connect_alice(relays: RelayLab, clients: ClientLab) -> tuple[Any, Any, Any]:
    relay = await relays.start(max_payload=SERVER_MAX_PAYLOAD)
    home = await clients.register("alice")
    await clients.register("bob")
    with ClientStore(home / DB_NAME) as store:
        identity = store.get_identity()
    assert identity is not None
    conn, peer = await open_raw(relay.url, identity.noise_private_key, identity.server_key)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    return relay, conn, peer


def _send_stream(conn: Any, frame_body: bytes) -> None:
    """Write one frame (length prefix and body) as authentic Noise messages."""
    stream = len(frame_body).to_bytes(4, "big") + frame_body
    for start in range(0, len(stream), MAX_PLAINTEXT):
        send_plaintext(conn, stream[start : start + MAX_PLAINTEXT])


@pytest.mark.parametrize(("frame_body", "code", "frame_type"), CODEC_ERRORS)
async def test_a_send_the_codec_refuses_is_an_error_and_a_close(
    relays: RelayLab, clients: ClientLab, frame_body: bytes, code: ErrorCode, frame_type: int
) -> None:
    with pytest.raises(FrameError) as refused:
        parse(frame_body)
    assert (refused.value.code, refused.value.frame_type or 0) == (code, frame_type)

    relay, conn, peer = await _connect_alice(relays, clients)
    _send_stream(conn, frame_body)
    await wait_closed(conn)
    assert peer.closed is not None and peer.closed.by_peer
    assert peer.closed.code == code
    assert relay.refusals == []
    assert await relay.store.total_queued() == 0


async def test_a_payload_over_the_servers_limit_is_refused_and_the_connection_stays(
    relays: RelayLab, clients: ClientLab
) -> None:
    relay, conn, peer = await _connect_alice(relays, clients)
    big = Send(os.urandom(16), "bob", (Target("bob", 1, b"x" * (SERVER_MAX_PAYLOAD + 1)),))
    send_sealed(conn, big)
    refused = await peer.frame(Refused)
    assert (refused.message_id, refused.code) == (big.message_id, ErrorCode.PAYLOAD_TOO_LARGE)
    assert refused.retry_after == 0
    assert await relay.store.total_queued() == 0

    fits = Send(os.urandom(16), "bob", (Target("bob", 1, b"x" * SERVER_MAX_PAYLOAD),))
    send_sealed(conn, fits)  # the same connection still works
    sent = await peer.frame(Sent)
    assert sent.message_id == fits.message_id and not sent.duplicate
    conn.close()
