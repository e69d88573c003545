"""The Noise core against the public test vectors (cacophony, snow, noise-c fallback).

The vectors live in ``tests/vectors/noise/`` (copied, ``source`` field kept, from the shared
``crypto-vectors/noise/``; the NK file from noise-c's copy of cacophony's vectors), in the
noise_wiki "Test-vectors" format. Set ``TIDINGS_VECTORS_DIR`` to a directory holding a
``noise/`` folder to test other copies.

Message ``i`` is sent by the initiator iff ``i`` is even, handshake and transport alike.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tidings.errors import HandshakeError
from tidings.noise import CipherState, HandshakeState

_REPO_VECTORS = Path(__file__).resolve().parents[1] / "vectors"
_SHARED_VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "crypto-vectors"

EXPECTED_COUNTS = {
    "cacophony-IK-XX-NN-25519.json": 64,
    "snow-IK-XX-NN-25519.json": 24,
    "noise-c-fallback-25519.json": 8,
    # NK (sealed sends): copied from noise-c's copy of cacophony's file; not in the shared set.
    "cacophony-NK-25519.json": 8,
}
_REPO_ONLY = {"cacophony-NK-25519.json"}
SHORT_NAMES = {file_name: file_name.split("-25519")[0] for file_name in EXPECTED_COUNTS}

Vector = dict[str, Any]


def vectors_dir() -> Path:
    """The ``noise/`` vector folder: $TIDINGS_VECTORS_DIR, else the repo's, else shared."""
    override = os.environ.get("TIDINGS_VECTORS_DIR")
    if override:
        return Path(override) / "noise"
    if (_REPO_VECTORS / "noise").is_dir():
        return _REPO_VECTORS / "noise"
    return _SHARED_VECTORS / "noise"


def load(file_name: str) -> list[Vector]:
    data = json.loads((vectors_dir() / file_name).read_text(encoding="utf-8"))
    assert data["source"], "a vector file names its source"
    vectors: list[Vector] = data["vectors"]
    return vectors


def _cases() -> list[Any]:
    cases = []
    for file_name in EXPECTED_COUNTS:
        for vector in load(file_name):
            name = vector.get("protocol_name") or vector["name"]
            cases.append(pytest.param(vector, id=f"{SHORT_NAMES[file_name]}:{name}"))
    return cases


def _hex(vector: Vector, key: str) -> bytes | None:
    value = vector.get(key)
    return None if value is None else bytes.fromhex(value)


def _psks(vector: Vector, side: str) -> list[bytes]:
    return [bytes.fromhex(psk) for psk in vector.get(f"{side}_psks", [])]


def _pair(vector: Vector, name: str) -> tuple[HandshakeState, HandshakeState]:
    initiator = HandshakeState(
        name,
        initiator=True,
        prologue=_hex(vector, "init_prologue") or b"",
        static_private=_hex(vector, "init_static"),
        ephemeral_private=_hex(vector, "init_ephemeral"),
        remote_static=_hex(vector, "init_remote_static"),
        psks=_psks(vector, "init"),
    )
    responder = HandshakeState(
        name,
        initiator=False,
        prologue=_hex(vector, "resp_prologue") or b"",
        static_private=_hex(vector, "resp_static"),
        ephemeral_private=_hex(vector, "resp_ephemeral"),
        remote_static=_hex(vector, "resp_remote_static"),
        psks=_psks(vector, "resp"),
    )
    return initiator, responder


def _run_handshake(
    vector: Vector, messages: list[Vector], sides: tuple[HandshakeState, HandshakeState]
) -> int:
    """Play handshake messages (index 0 from ``sides[0]``); return how many were used."""
    index = 0
    while not sides[0].complete:
        sender, receiver = sides[index % 2], sides[(index + 1) % 2]
        message = messages[index]
        payload = bytes.fromhex(message["payload"])
        ciphertext = sender.write_message(payload)
        assert ciphertext.hex() == message["ciphertext"], f"handshake message {index}"
        assert receiver.read_message(ciphertext) == payload
        index += 1
    assert sides[1].complete
    expected_hash = vector.get("handshake_hash")
    if expected_hash is not None:
        assert sides[0].handshake_hash.hex() == expected_hash
        assert sides[1].handshake_hash.hex() == expected_hash
    assert sides[0].handshake_hash == sides[1].handshake_hash
    return index


def _run_transport(
    messages: list[Vector], start: int, initiator: HandshakeState, responder: HandshakeState
) -> None:
    """Transport messages: even index initiator→responder under c1, odd under c2."""
    i_c1, i_c2 = initiator.split()
    r_c1, r_c2 = responder.split()
    directions: tuple[tuple[CipherState, CipherState], tuple[CipherState, CipherState]] = (
        (i_c1, r_c1),
        (r_c2, i_c2),
    )
    for index in range(start, len(messages)):
        send, receive = directions[index % 2]
        payload = bytes.fromhex(messages[index]["payload"])
        ciphertext = send.encrypt_with_ad(b"", payload)
        assert ciphertext.hex() == messages[index]["ciphertext"], f"transport message {index}"
        assert receive.decrypt_with_ad(b"", ciphertext) == payload


def _run_plain(vector: Vector) -> None:
    initiator, responder = _pair(vector, vector["protocol_name"])
    used = _run_handshake(vector, vector["messages"], (initiator, responder))
    _run_transport(vector["messages"], used, initiator, responder)


def _run_fallback(vector: Vector) -> None:
    """noise-c fallback: a failed IK, then XXfallback with Bob as the Noise initiator."""
    suite = vector["name"].removeprefix("Noise_XXfallback_")
    messages: list[Vector] = vector["messages"]
    alice_ik, bob_ik = _pair(vector, f"Noise_IK_{suite}")
    first = messages[0]
    ik_message = alice_ik.write_message(bytes.fromhex(first["payload"]))
    assert ik_message.hex() == first["ciphertext"]
    with pytest.raises(HandshakeError):
        bob_ik.read_message(ik_message)  # Alice pinned the wrong key for Bob

    bob = HandshakeState(
        vector["name"],
        initiator=True,
        prologue=_hex(vector, "resp_prologue") or b"",
        static_private=_hex(vector, "resp_static"),
        ephemeral_private=_hex(vector, "resp_ephemeral"),
        remote_ephemeral=ik_message[:32],
    )
    alice = HandshakeState(
        vector["name"],
        initiator=False,
        prologue=_hex(vector, "init_prologue") or b"",
        static_private=_hex(vector, "init_static"),
        ephemeral_private=_hex(vector, "init_ephemeral"),
    )
    used = _run_handshake(vector, messages[1:], (bob, alice))
    # Transport: messages[1 + used] onwards, Bob (fallback initiator) first, under c1.
    _run_transport(messages[1:], used, bob, alice)


@pytest.mark.parametrize("vector", _cases())
def test_vector(vector: Vector) -> None:
    if vector.get("fallback"):
        _run_fallback(vector)
    else:
        _run_plain(vector)


@pytest.mark.parametrize(("file_name", "count"), EXPECTED_COUNTS.items())
def test_every_vector_is_loaded(file_name: str, count: int) -> None:
    assert len(load(file_name)) == count


def test_repo_copies_match_shared_vectors() -> None:
    shared = _SHARED_VECTORS / "noise"
    if not shared.is_dir():
        pytest.skip("no shared vector directory next to this checkout")
    for file_name in EXPECTED_COUNTS.keys() - _REPO_ONLY:
        assert (_REPO_VECTORS / "noise" / file_name).read_bytes() == (
            shared / file_name
        ).read_bytes()
