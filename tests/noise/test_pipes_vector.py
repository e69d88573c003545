"""Our Pipes handshakes against the frozen transcript ``tests/vectors/noise/tidings-pipes.json``.

The vector is ours (no public vector covers tidings' tag bytes and prologue); it was produced
once by ``tests/noise/_pipes_transcript.py`` and frozen. Here the real `PipesInitiator` and
`PipesResponder`, given the fixed ephemeral keys through their rngs, must produce every byte
again; the published transport keys must open the published transport messages with the plain
AES-256-GCM of Noise §12.4 (nonce 0, no associated data), so a reader can check their own code
against the keys without our Noise code; and the server fingerprint is recomputed from its
definition. docs/protocol.md prints the same hex (tests/wire/test_protocol_doc.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tidings.noise import fingerprint, public_key
from tidings.wire import parse

from ._pipes_transcript import FIRST_FRAMES, transcripts

VECTOR_FILE = Path(__file__).parents[1] / "vectors" / "noise" / "tidings-pipes.json"
VECTOR: dict[str, Any] = json.loads(VECTOR_FILE.read_text(encoding="utf-8"))
SCENARIOS = ("xx", "ik", "fallback")


def test_the_vector_names_its_source_and_covers_the_three_patterns() -> None:
    assert "ours, frozen" in VECTOR["source"]
    assert [VECTOR["scenarios"][s]["pattern"] for s in SCENARIOS] == ["XX", "IK", "XXfallback"]


def test_our_handshakes_reproduce_the_vector_byte_for_byte() -> None:
    assert transcripts() == VECTOR


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_message_sizes_and_tags_are_those_of_the_flows(scenario: str) -> None:
    # docs/protocol.md §3: tag byte, then e (32), encrypted s (48), payload tag (16).
    sizes = {"xx": [33, 97, 65], "ik": [97, 49], "fallback": [97, 97, 65]}[scenario]
    tags = {"xx": [1, 1, 1], "ik": [2, 2], "fallback": [2, 3, 3]}[scenario]
    messages = [bytes.fromhex(m["hex"]) for m in VECTOR["scenarios"][scenario]["messages"]]
    assert [len(m) for m in messages] == sizes
    assert [m[0] for m in messages] == tags


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_transport_keys_open_the_first_transport_messages(scenario: str) -> None:
    run = VECTOR["scenarios"][scenario]
    keys = {
        "client": bytes.fromhex(run["client_to_server_key"]),
        "server": bytes.fromhex(run["server_to_client_key"]),
    }
    expected = FIRST_FRAMES[scenario]
    for message, frame in zip(run["transport"], expected, strict=True):
        ciphertext = bytes.fromhex(message["hex"])
        nonce = bytes(12)  # Noise §12.4: 32 zero bits, then the 64-bit counter 0 big-endian
        plaintext = AESGCM(keys[message["from"]]).decrypt(nonce, ciphertext, b"")
        assert plaintext.hex() == message["plaintext"]
        assert parse(plaintext[4:]) == frame
        assert int.from_bytes(plaintext[:4], "big") == len(plaintext) - 4


def test_the_ephemeral_in_the_first_message_is_the_clients_fixed_one() -> None:
    for scenario in SCENARIOS:
        first = bytes.fromhex(VECTOR["scenarios"][scenario]["messages"][0]["hex"])
        ephemeral = bytes.fromhex(VECTOR["private_keys"][f"{scenario}_client_ephemeral"])
        assert first[1:33] == public_key(ephemeral)


def test_the_server_fingerprint_follows_its_definition() -> None:
    # docs/protocol.md §3.5: SHA-256 of the 32-byte key, first 16 bytes, hex, groups of 4.
    server = bytes.fromhex(VECTOR["public_keys"]["server_static"])
    digest = hashlib.sha256(server).hexdigest()
    assert digest == VECTOR["server_fingerprint_digest"]
    grouped = " ".join(digest[i : i + 4] for i in range(0, 32, 4))
    assert grouped == VECTOR["server_fingerprint"] == fingerprint(server)
