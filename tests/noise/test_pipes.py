"""Noise Pipes: XX, IK and IK→XXfallback between a PipesInitiator and a PipesResponder."""

from __future__ import annotations

import pytest

from tidings.errors import HandshakeError
from tidings.noise import (
    MAX_HANDSHAKE_PAYLOAD,
    MAX_MESSAGE,
    HandshakeTag,
    MessageTooLargeError,
    PipesInitiator,
    PipesPattern,
    PipesResponder,
)

from ._support import (
    CLIENT_PRIVATE,
    CLIENT_PUBLIC,
    OLD_SERVER_PUBLIC,
    PROLOGUE,
    SERVER_PRIVATE,
    SERVER_PUBLIC,
    pair,
    run,
    seeded_rng,
)

CASES = [
    pytest.param(None, PipesPattern.XX, [0x01, 0x01, 0x01], id="XX"),
    pytest.param(SERVER_PUBLIC, PipesPattern.IK, [0x02, 0x02], id="IK"),
    pytest.param(OLD_SERVER_PUBLIC, PipesPattern.XX_FALLBACK, [0x02, 0x03, 0x03], id="fallback"),
]

PINS = pytest.mark.parametrize(
    "pinned", [None, SERVER_PUBLIC, OLD_SERVER_PUBLIC], ids=["XX", "IK", "fallback"]
)


def flip(message: bytes, index: int) -> bytes:
    tampered = bytearray(message)
    tampered[index] ^= 0x01
    return bytes(tampered)


@pytest.mark.parametrize(("pinned", "pattern", "tags"), CASES)
def test_round_trip(pinned: bytes | None, pattern: PipesPattern, tags: list[int]) -> None:
    client, server = pair(pinned=pinned, server_payload=b"welcome")
    wire = run(client, server, b"my credentials")
    assert [message[0] for message in wire] == tags
    assert client.pattern == server.pattern == pattern
    assert client.remote_static == SERVER_PUBLIC  # after a fallback: the new key, not the pin
    assert server.remote_static == CLIENT_PUBLIC
    assert client.remote_payload == b"welcome"
    assert server.remote_payload == b"my credentials"
    assert client.handshake_hash == server.handshake_hash
    assert len(client.handshake_hash) == 32
    to_server, to_client = client.transport(), server.transport()
    for i in range(3):
        assert to_server.decrypt(to_client.encrypt(b"down %d" % i)) == b"down %d" % i
        assert to_client.decrypt(to_server.encrypt(b"up %d" % i)) == b"up %d" % i


@PINS
def test_the_client_payload_is_never_in_clear(pinned: bytes | None) -> None:
    secret = b"a very recognisable secret"
    client, server = pair(pinned=pinned)
    wire = run(client, server, secret)
    assert all(secret not in message for message in wire)
    assert server.remote_payload == secret


def test_a_stale_pin_falls_back_and_the_caller_sees_the_new_key() -> None:
    client, server = pair(pinned=OLD_SERVER_PUBLIC)
    run(client, server)
    assert client.pattern == "XXfallback"
    assert client.remote_static != OLD_SERVER_PUBLIC
    assert client.remote_static == SERVER_PUBLIC


def test_fallback_swaps_noise_roles_on_the_transport() -> None:
    # In XXfallback the server is the Noise initiator: it sends under Split()'s c1, which is
    # the key a plain XX client would send under. The transports still talk to each other.
    client, server = pair(pinned=OLD_SERVER_PUBLIC)
    run(client, server)
    server_first = server.transport().encrypt(b"x")
    assert client.transport().decrypt(server_first) == b"x"


# -- golden bytes: a symmetric bug (both sides wrong the same way) cannot pass these ----------

GOLDEN = {
    "XX": (
        None,
        [
            "01ee3cfc69628f6900b8661dde601b994e5dce50c299c376418abcc71621988f35",
            "0146db3a090a616f5bf3d80fe406a54dccdd955bda7246e2297ce16d7cc064472c290472556c031c"
            "da1f70b9f822f5eaf9dcdb487c489d628fda3aac3ff9f9715e3e81c22883efa3e494cc73b821833f"
            "53119b723a55cb094b77b3c749186d7bf1669763a12e9a25f38ff5d01b",
            "01f3274bda4fa08c429eb4a71f76bc46b9ec6c24f640cdbe5da03e5b4687fcd1aa1a124534ec9e8a"
            "5e47c422a30e40aa8758c99b57d9825748a9f64abf733f64fe5b9a2c304bb78b31369b069e",
        ],
        "6c06432156c7e77797024fabe41f7df7aed96fac76525c7f36be40baa18c7143",
        "62da154ba5883d70effc5bf42da16b106cbf4701",
        "6061ee53c4cf77e4075fa749bbf5ef768db26e9d",
    ),
    "IK": (
        SERVER_PUBLIC,
        [
            "02ee3cfc69628f6900b8661dde601b994e5dce50c299c376418abcc71621988f3564f5fbb45b6060"
            "cf40b1da7a2c76966a4cad414f310db8248c04fc956a5a2bf901d0e014573306bb72a6a097f3fdbe"
            "603ee0c7068f5f559c7851dfa5a4f33df16eb7df467ad4b5625a4e9184",
            "0246db3a090a616f5bf3d80fe406a54dccdd955bda7246e2297ce16d7cc064472c30f24a1dc02ee2"
            "a26a7142ee87875e1ef081166845779b79b2a71101",
        ],
        "2f4527941c2ad273f7ec695616d1a45f7807ffdfc5da01d0d12878fa5ed53753",
        "b6d00d214102ab9d3fba8e9baef56b484adf2570",
        "a9a9af37ccacd965cb3d8ab1970504dcd150e6a9",
    ),
    "XXfallback": (
        OLD_SERVER_PUBLIC,
        [
            "02ee3cfc69628f6900b8661dde601b994e5dce50c299c376418abcc71621988f35a41e7d23346500"
            "91ec0eabdd831f51f173cc711681782395173296facda13cbae46369da472dbeabd1331c2554b20c"
            "42ed5f9f2d2186bf29338c765c9300514b0c6973621c8f80c0cf84ce63",
            "0346db3a090a616f5bf3d80fe406a54dccdd955bda7246e2297ce16d7cc064472c2650aae65e1f4c"
            "7400e9c4612c2af9dce6f2332b7d0c97203d9444c92177ecff94f5f1c7f4be07a03c215183714309"
            "b28aa8b33fa8f40c050312a9fcb6c005df0e5159dbae5005dccd0c409b",
            "03feb1061d104ad67de37a61ab288b19e71b5d2e506a8dc86883a65d0a7cba55b581f719acf4a405"
            "51121603795c5a987fe1bb107cbadee8f7d3fc0902ea2b87a69d12969a13276a2e3953ebf4",
        ],
        "56b5b59acc2e68c0db412cbc07831f6df8075e100642cf308aa783c9e7446da6",
        "82f75a50898fcf8112c0290b44a27099345c85aa",
        "2ed1acbbf770fd85eec528680a9b8d3f2681b257",
    ),
}


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_exchange(name: str) -> None:
    pinned, messages, handshake_hash, ping, pong = GOLDEN[name]
    client, server = pair(pinned=pinned, server_payload=b"server hello")
    wire = run(client, server, b"client hello")
    assert [message.hex() for message in wire] == messages
    assert client.handshake_hash.hex() == server.handshake_hash.hex() == handshake_hash
    assert client.transport().encrypt(b"ping").hex() == ping
    assert server.transport().encrypt(b"pong").hex() == pong


# -- tampering and protocol violations ------------------------------------------------------


@PINS
@pytest.mark.parametrize("index", [1, 40, -1])
def test_tampered_server_reply_fails_the_client(pinned: bytes | None, index: int) -> None:
    client, server = pair(pinned=pinned)
    reply = server.receive(client.start())
    assert reply is not None
    with pytest.raises(HandshakeError):
        client.receive(flip(reply, index))
    assert client.failed and not client.complete
    with pytest.raises(HandshakeError):
        client.receive(reply)  # dead, even for the genuine message


@pytest.mark.parametrize("pinned", [None, OLD_SERVER_PUBLIC], ids=["XX", "fallback"])
@pytest.mark.parametrize("index", [1, 40, -1])
def test_tampered_client_finish_fails_the_server(pinned: bytes | None, index: int) -> None:
    client, server = pair(pinned=pinned)
    reply = server.receive(client.start())
    assert reply is not None
    finish = client.receive(reply)
    assert finish is not None and client.complete
    with pytest.raises(HandshakeError):
        server.receive(flip(finish, index))
    assert server.failed
    with pytest.raises(HandshakeError):
        server.transport()


def test_tampered_ik_ciphertext_makes_the_server_fall_back() -> None:
    # Noise Pipes §10.4: an IK message the server cannot read is answered with XXfallback,
    # whatever the cause. The handshake still completes, authenticated, with the real key.
    client, server = pair(pinned=SERVER_PUBLIC)
    first = client.start(b"zero-rtt")
    reply = server.receive(flip(first, 40))
    assert reply is not None and reply[0] == HandshakeTag.XX_FALLBACK
    finish = client.receive(reply)
    assert finish is not None
    assert server.receive(finish) is None
    assert client.remote_static == SERVER_PUBLIC
    assert server.remote_payload == b"zero-rtt"


def test_tampered_ik_ephemeral_fails_the_client() -> None:
    client, server = pair(pinned=SERVER_PUBLIC)
    reply = server.receive(flip(client.start(), 5))
    assert reply is not None
    with pytest.raises(HandshakeError):
        client.receive(reply)


@pytest.mark.parametrize("suffix", [b"\x00", b"trailing bytes"])
def test_trailing_bytes_are_rejected(suffix: bytes) -> None:
    client, server = pair(pinned=None)
    reply = server.receive(client.start())
    assert reply is not None
    with pytest.raises(HandshakeError):
        client.receive(reply + suffix)


@pytest.mark.parametrize(
    "message",
    [b"", b"\x00" + bytes(32), b"\x04" + bytes(32), b"\x03" + bytes(32), b"\x01" + bytes(31)],
    ids=["empty", "tag 0", "tag 4", "fallback first", "short e"],
)
def test_server_rejects_bad_first_messages(message: bytes) -> None:
    _, server = pair(pinned=None)
    with pytest.raises(HandshakeError):
        server.receive(message)
    assert server.failed


def test_server_rejects_a_cleartext_payload_in_the_xx_hello() -> None:
    _, server = pair(pinned=None)
    with pytest.raises(HandshakeError):
        server.receive(b"\x01" + bytes(range(1, 33)) + b"cleartext")


def test_server_rejects_oversize_messages() -> None:
    _, server = pair(pinned=None)
    with pytest.raises(HandshakeError):
        server.receive(b"\x02" + bytes(MAX_MESSAGE + 1))


def test_client_rejects_replies_of_the_wrong_pattern() -> None:
    xx_client, xx_server = pair(pinned=None)
    ik_client, ik_server = pair(pinned=SERVER_PUBLIC)
    xx_reply = xx_server.receive(xx_client.start())
    ik_reply = ik_server.receive(ik_client.start())
    assert xx_reply is not None and ik_reply is not None
    with pytest.raises(HandshakeError):
        xx_client.receive(ik_reply)
    with pytest.raises(HandshakeError):
        ik_client.receive(xx_reply)


def test_server_rejects_a_finish_of_the_wrong_pattern() -> None:
    client, server = pair(pinned=None)
    reply = server.receive(client.start())
    assert reply is not None
    finish = client.receive(reply)
    assert finish is not None
    with pytest.raises(HandshakeError):
        server.receive(bytes([HandshakeTag.XX_FALLBACK]) + finish[1:])


def test_client_call_order() -> None:
    client, server = pair(pinned=SERVER_PUBLIC)
    with pytest.raises(HandshakeError):
        client.receive(b"\x02" + bytes(48))  # before start()
    client, server = pair(pinned=SERVER_PUBLIC)
    with pytest.raises(HandshakeError):
        client.transport()
    with pytest.raises(HandshakeError):
        _ = client.remote_static
    first = client.start()
    with pytest.raises(HandshakeError):
        client.start()
    reply = server.receive(first)
    assert reply is not None
    assert client.receive(reply) is None
    assert client.complete
    with pytest.raises(HandshakeError):
        client.receive(reply)  # a stray message after completion
    assert client.complete  # ...does not undo it
    with pytest.raises(HandshakeError):
        server.receive(first)


@PINS
def test_payload_limits(pinned: bytes | None) -> None:
    client, _ = pair(pinned=pinned)
    with pytest.raises(MessageTooLargeError):
        client.start(bytes(MAX_HANDSHAKE_PAYLOAD + 1))
    with pytest.raises(MessageTooLargeError):
        PipesResponder(
            SERVER_PRIVATE,
            prologue=PROLOGUE,
            rng=seeded_rng(b"r"),
            payload=bytes(MAX_HANDSHAKE_PAYLOAD + 1),
        )
    client, server = pair(pinned=pinned, server_payload=bytes(MAX_HANDSHAKE_PAYLOAD))
    wire = run(client, server, bytes(MAX_HANDSHAKE_PAYLOAD))
    assert max(len(message) for message in wire) <= 1 + MAX_MESSAGE
    assert server.remote_payload == client.remote_payload == bytes(MAX_HANDSHAKE_PAYLOAD)


def test_prologue_mismatch_fails() -> None:
    client = PipesInitiator(
        CLIENT_PRIVATE, server_static=None, prologue=b"v1", rng=seeded_rng(b"c")
    )
    server = PipesResponder(SERVER_PRIVATE, prologue=b"v2", rng=seeded_rng(b"s"))
    reply = server.receive(client.start())
    assert reply is not None
    with pytest.raises(HandshakeError):
        client.receive(reply)


def test_bad_keys_are_refused_at_construction() -> None:
    with pytest.raises(ValueError):
        PipesInitiator(bytes(31), server_static=None, prologue=b"", rng=seeded_rng(b"c"))
    with pytest.raises(ValueError):
        PipesInitiator(CLIENT_PRIVATE, server_static=bytes(33), prologue=b"", rng=seeded_rng(b"c"))
    with pytest.raises(ValueError):
        PipesResponder(bytes(16), prologue=b"", rng=seeded_rng(b"s"))


def test_a_low_order_pinned_key_fails_the_start() -> None:
    client = PipesInitiator(
        CLIENT_PRIVATE, server_static=bytes(32), prologue=b"", rng=seeded_rng(b"c")
    )
    with pytest.raises(HandshakeError):
        client.start()
    assert client.failed
