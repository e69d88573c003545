"""The sans-I/O channel as two peers over an in-memory wire, with literal times."""

from __future__ import annotations

import random

import pytest

from tidings.errors import ConnectionClosed
from tidings.net.channel import (
    Channel,
    ChannelClosed,
    ChannelState,
    FrameReceived,
    HandshakeDone,
    KeepaliveParams,
)
from tidings.noise import MAX_PLAINTEXT, PipesInitiator, PipesResponder, generate_keypair
from tidings.wire import PROLOGUE, Ack, Deliver, ErrorCode, Ping, Pong, encode


def rng_from(seed: int) -> random.Random:
    return random.Random(seed)


def make_rng(seed: int):  # type: ignore[no-untyped-def]
    r = rng_from(seed)
    return lambda n: r.randbytes(n)


SERVER_PRIV, SERVER_PUB = generate_keypair(make_rng(1))
CLIENT_PRIV, CLIENT_PUB = generate_keypair(make_rng(2))
CLIENT_KA = KeepaliveParams(ping_interval=10.0, dead_after=15.0, handshake_timeout=5.0)
SERVER_KA = KeepaliveParams(ping_interval=None, dead_after=30.0, handshake_timeout=5.0)


def pair(now: float = 0.0, pinned: bytes | None = None) -> tuple[Channel, Channel]:
    client = Channel(
        PipesInitiator(CLIENT_PRIV, server_static=pinned, prologue=PROLOGUE, rng=make_rng(3)),
        CLIENT_KA,
        now,
    )
    server = Channel(
        PipesResponder(SERVER_PRIV, prologue=PROLOGUE, rng=make_rng(4)), SERVER_KA, now
    )
    client.start()
    return client, server


def is_closed(channel: Channel) -> bool:
    return channel.state is ChannelState.CLOSED


def transfer(a: Channel, b: Channel, now: float = 0.0) -> int:
    """Move everything a has to send into b; return the number of messages moved."""
    msgs = a.data_to_send()
    for m in msgs:
        b.receive_message(m, now)
    return len(msgs)


def settle(a: Channel, b: Channel, now: float = 0.0) -> None:
    while transfer(a, b, now) + transfer(b, a, now):
        pass


def test_xx_handshake_then_frames_both_ways() -> None:
    client, server = pair()
    settle(client, server)
    assert client.state is server.state is ChannelState.OPEN
    (done,) = server.events()
    assert isinstance(done, HandshakeDone) and done.remote_static == CLIENT_PUB
    assert done.pattern == "XX"
    (cdone,) = client.events()
    assert isinstance(cdone, HandshakeDone) and cdone.remote_static == SERVER_PUB
    client.send_frame(Ack(7))
    client.send_frame(Ack(8))
    assert transfer(client, server) == 1  # two frames sealed into one Noise message
    assert [e.frame for e in server.events() if isinstance(e, FrameReceived)] == [Ack(7), Ack(8)]


def test_send_frames_queues_them_in_order_in_one_message() -> None:
    client, server = pair()
    settle(client, server)
    server.events()
    client.send_frames([Ack(1), Ping(2), Ack(3)])
    assert transfer(client, server) == 1
    assert [e.frame for e in server.events() if isinstance(e, FrameReceived)] == [Ack(1), Ack(3)]
    client.close()
    with pytest.raises(ConnectionClosed):
        client.send_frames([Ack(4)])


def test_the_handshake_state_is_dropped_once_complete() -> None:
    client, server = pair()
    settle(client, server)
    with pytest.raises(TypeError):
        client.start()  # only once, and only during the handshake
    assert client.remote_static == SERVER_PUB and server.remote_static == CLIENT_PUB


def test_ik_with_pinned_key() -> None:
    client, server = pair(pinned=SERVER_PUB)
    settle(client, server)
    (done,) = server.events()
    assert isinstance(done, HandshakeDone) and done.pattern == "IK"


def test_frames_sent_before_handshake_wait_for_it() -> None:
    client, server = pair()
    client.send_frame(Ack(1))
    settle(client, server)
    frames = [e.frame for e in server.events() if isinstance(e, FrameReceived)]
    assert frames == [Ack(1)]


def test_large_frame_spans_noise_messages() -> None:
    client, server = pair()
    settle(client, server)
    server.events()
    big = Deliver(1, 0, "alice", 1, b"m" * 16, 1.0, 2.0, b"x" * 65536)
    server.send_frame(big)
    server.send_frame(big)
    msgs = server.data_to_send()
    assert len(msgs) >= 3 and all(len(m) <= MAX_PLAINTEXT + 16 for m in msgs)
    for m in msgs:
        client.receive_message(m, 0.0)
    got = [e.frame for e in client.events() if isinstance(e, FrameReceived)]
    assert got == [big, big]


def test_ping_when_idle_and_dead_after_silence() -> None:
    client, server = pair()
    settle(client, server)
    client.events()
    assert client.next_deadline() == 10.0
    client.handle_timer(10.0)
    (ping,) = client.data_to_send()
    server.receive_message(ping, 10.0)
    transfer(server, client, 10.2)  # the PONG
    assert client.state is ChannelState.OPEN
    assert client.next_deadline() == pytest.approx(20.2)
    client.handle_timer(20.2)
    client.data_to_send()  # a ping nobody answers
    assert client.next_deadline() == pytest.approx(25.2)
    client.handle_timer(25.2)
    assert is_closed(client)
    (closed,) = [e for e in client.events() if isinstance(e, ChannelClosed)]
    assert closed.code == ErrorCode.KEEPALIVE_TIMEOUT


def test_server_answers_ping_and_reports_nothing() -> None:
    client, server = pair()
    settle(client, server)
    server.events()
    client.events()
    client.send_frame(Ping(5))
    transfer(client, server)
    assert server.events() == []
    (msg,) = server.data_to_send()
    client.receive_message(msg, 0.0)
    assert client.events() == []  # PONG is consumed by the channel


def test_handshake_timeout() -> None:
    _client, server = pair()
    assert server.next_deadline() == 5.0
    server.handle_timer(5.0)
    assert server.state is ChannelState.CLOSED


def test_garbage_handshake_closes_without_raising() -> None:
    _, server = pair()
    server.receive_message(b"\x01garbage-that-is-not-a-key", 0.0)
    assert server.state is ChannelState.CLOSED
    assert server.data_to_send() == []


def test_forged_transport_message_closes_silently() -> None:
    client, server = pair()
    settle(client, server)
    server.events()
    server.receive_message(b"\x00" * 40, 1.0)
    assert server.state is ChannelState.CLOSED
    assert server.data_to_send() == []  # no ERROR to a forger
    with pytest.raises(ConnectionClosed):
        server.send_frame(Pong(1))


def test_replayed_transport_message_closes() -> None:
    client, server = pair()
    settle(client, server)
    client.send_frame(Ack(1))
    (msg,) = client.data_to_send()
    server.receive_message(msg, 0.0)
    server.receive_message(msg, 0.0)
    assert server.state is ChannelState.CLOSED


def test_invalid_frame_gets_error_frame_then_close() -> None:
    client, server = pair()
    settle(client, server)
    client.events()
    server.events()
    # A valid Noise message carrying a frame with an unknown type.
    bad = b"\x00\x00\x00\x02\x91\x63"
    client._plain += bad
    transfer(client, server)
    assert server.state is ChannelState.CLOSED
    transfer(server, client)
    (closed,) = [e for e in client.events() if isinstance(e, ChannelClosed)]
    assert closed.by_peer and closed.code == ErrorCode.MALFORMED_FRAME
    assert client.state is ChannelState.CLOSED


def test_close_with_code_sends_error() -> None:
    client, server = pair()
    settle(client, server)
    client.events()
    server.close(int(ErrorCode.SHUTTING_DOWN), "bye")
    transfer(server, client)
    (closed,) = client.events()
    assert isinstance(closed, ChannelClosed) and closed.code == ErrorCode.SHUTTING_DOWN


def test_frames_before_bad_one_are_still_delivered() -> None:
    client, server = pair()
    settle(client, server)
    server.events()
    client._plain += encode(Ack(3)) + b"\x00\x00\x00\x01\xc1"
    transfer(client, server)
    evs = server.events()
    assert isinstance(evs[0], FrameReceived) and evs[0].frame == Ack(3)
    assert isinstance(evs[-1], ChannelClosed)


def test_a_server_that_answers_pings_itself_reports_them_instead() -> None:
    client, _ = pair()
    server = Channel(
        PipesResponder(SERVER_PRIV, prologue=PROLOGUE, rng=make_rng(4)),
        SERVER_KA,
        0.0,
        answer_pings=False,
    )
    settle(client, server)
    server.events()
    client.send_frame(Ack(1))
    client.send_frame(Ping(5))
    transfer(client, server, 1.0)
    assert [e.frame for e in server.events() if isinstance(e, FrameReceived)] == [Ack(1), Ping(5)]
    assert server.data_to_send() == []  # no PONG of its own: the owner answers, in order
    assert server.next_deadline() == 1.0 + SERVER_KA.dead_after  # the PING still counts as life
