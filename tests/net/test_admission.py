"""A server channel's limits on a peer that has not said who it is yet, with literal times.

Two peers over an in-memory wire (tests/net/test_channel.py's helpers): the handshake completes
at t = 0; REGISTER/HELLO is due by ``auth_timeout``; frames are limited to ``max_frame`` bytes
until HELLO.
"""

from __future__ import annotations

from tests.net.test_channel import (
    CLIENT_KA,
    CLIENT_PRIV,
    SERVER_KA,
    SERVER_PRIV,
    make_rng,
    settle,
    transfer,
)
from tidings.net.channel import (
    AdmissionParams,
    Channel,
    ChannelClosed,
    ChannelState,
    FrameReceived,
)
from tidings.noise import PipesInitiator, PipesResponder
from tidings.wire import (
    MAX_PRE_AUTH_FRAME,
    PROLOGUE,
    PROTOCOL_VERSION,
    ErrorCode,
    Hello,
    Ping,
    Register,
    Send,
    Target,
    encode,
)

ADMISSION = AdmissionParams(auth_timeout=5.0, max_frame=MAX_PRE_AUTH_FRAME)
HELLO = Hello(PROTOCOL_VERSION, 0)
REGISTER = Register(PROTOCOL_VERSION, "carol", "carol's phone", None)


def admitted_pair() -> tuple[Channel, Channel]:
    """A client and a server with admission limits, the handshake done at t = 0."""
    client = Channel(
        PipesInitiator(CLIENT_PRIV, server_static=None, prologue=PROLOGUE, rng=make_rng(3)),
        CLIENT_KA,
        0.0,
    )
    server = Channel(
        PipesResponder(SERVER_PRIV, prologue=PROLOGUE, rng=make_rng(4)),
        SERVER_KA,
        0.0,
        answer_pings=False,
        admission=ADMISSION,
    )
    client.start()
    settle(client, server)
    client.events()
    server.events()
    return client, server


def state(channel: Channel) -> ChannelState:
    return channel.state


def closes(channel: Channel) -> list[ChannelClosed]:
    return [e for e in channel.events() if isinstance(e, ChannelClosed)]


def send(client: Channel, server: Channel, now: float, *frames: object) -> None:
    for frame in frames:
        client.send_frame(frame)  # type: ignore[arg-type]
    transfer(client, server, now)


def test_a_peer_that_only_pings_is_closed_at_the_auth_deadline() -> None:
    client, server = admitted_pair()
    assert server.next_deadline() == 5.0  # before the keepalive's 30
    for t in (1.0, 2.0, 3.0, 4.0, 4.9):
        send(client, server, t, Ping(int(t * 10)))
        assert server.next_deadline() == 5.0  # PINGs are life, not authentication
    server.handle_timer(4.99)
    assert state(server) is ChannelState.OPEN
    server.handle_timer(5.0)
    assert state(server) is ChannelState.CLOSED
    (closed,) = closes(server)
    assert closed.code == ErrorCode.AUTH_TIMEOUT
    transfer(server, client, 5.0)  # the peer is told why
    (told,) = closes(client)
    assert told.by_peer and told.code == ErrorCode.AUTH_TIMEOUT


def test_hello_ends_the_wait() -> None:
    client, server = admitted_pair()
    send(client, server, 4.9, HELLO)
    assert server.next_deadline() == 4.9 + SERVER_KA.dead_after
    server.handle_timer(5.0)
    assert server.state is ChannelState.OPEN
    server.expect_auth(6.0)  # HELLO already came: nothing to wait for
    assert server.next_deadline() == 4.9 + SERVER_KA.dead_after


def test_register_ends_the_wait_and_registered_starts_it_again() -> None:
    client, server = admitted_pair()
    send(client, server, 1.0, REGISTER)
    assert server.next_deadline() == 1.0 + SERVER_KA.dead_after
    server.expect_auth(2.0)  # the relay answered REGISTERED: now HELLO is due
    assert server.next_deadline() == 7.0
    server.handle_timer(7.0)
    (closed,) = closes(server)
    assert closed.code == ErrorCode.AUTH_TIMEOUT


def test_register_and_hello_pipelined_need_no_second_wait() -> None:
    client, server = admitted_pair()
    send(client, server, 1.0, REGISTER, HELLO)
    server.expect_auth(2.0)  # REGISTERED, after HELLO already arrived
    assert server.next_deadline() == 1.0 + SERVER_KA.dead_after


def test_a_long_length_prefix_before_hello_is_refused_at_once() -> None:
    client, server = admitted_pair()
    client._plain += (MAX_PRE_AUTH_FRAME + 1).to_bytes(4, "big")  # the body never comes
    transfer(client, server, 1.0)
    assert server.state is ChannelState.CLOSED
    assert server.buffered == 0
    (closed,) = closes(server)
    assert closed.code == ErrorCode.FRAME_TOO_LARGE
    transfer(server, client, 1.0)
    (told,) = closes(client)
    assert told.by_peer and told.code == ErrorCode.FRAME_TOO_LARGE


def test_a_trickled_frame_before_hello_pins_at_most_the_limit() -> None:
    client, server = admitted_pair()
    stream = MAX_PRE_AUTH_FRAME.to_bytes(4, "big") + b"\x00" * (MAX_PRE_AUTH_FRAME - 1)
    most = 0
    for i, byte in enumerate(stream):  # one byte per Noise message
        client._plain += bytes([byte])
        transfer(client, server, i / 1000)
        most = max(most, server.buffered)
    assert server.state is ChannelState.OPEN  # one byte short of a (bad) frame
    assert most == MAX_PRE_AUTH_FRAME + 3


def test_the_1_mib_prefix_trickled_a_byte_at_a_time_is_refused_at_its_fourth_byte() -> None:
    client, server = admitted_pair()
    for i, byte in enumerate((1 << 20).to_bytes(4, "big")):
        assert server.state is ChannelState.OPEN
        client._plain += bytes([byte])
        transfer(client, server, float(i))
    assert server.state is ChannelState.CLOSED and server.buffered == 0


def test_big_frames_are_accepted_right_after_hello_even_in_the_same_message() -> None:
    client, server = admitted_pair()
    big = Send(b"m" * 16, "bob", (Target("bob", 1, b"x" * 60_000),))
    assert len(encode(big)) > MAX_PRE_AUTH_FRAME
    send(client, server, 1.0, HELLO, big)
    frames = [e.frame for e in server.events() if isinstance(e, FrameReceived)]
    assert frames == [HELLO, big]
    assert server.state is ChannelState.OPEN


def test_without_admission_a_channel_waits_for_nothing() -> None:
    client = Channel(
        PipesInitiator(CLIENT_PRIV, server_static=None, prologue=PROLOGUE, rng=make_rng(3)),
        CLIENT_KA,
        0.0,
    )
    server = Channel(PipesResponder(SERVER_PRIV, prologue=PROLOGUE, rng=make_rng(4)), SERVER_KA, 0)
    client.start()
    settle(client, server)
    assert server.next_deadline() == SERVER_KA.dead_after
    client._plain += (MAX_PRE_AUTH_FRAME + 1).to_bytes(4, "big")
    transfer(client, server, 1.0)
    assert server.state is ChannelState.OPEN and server.buffered == 4
