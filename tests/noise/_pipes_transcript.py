"""The deterministic Pipes handshakes behind ``tests/vectors/noise/tidings-pipes.json``.

The vector was produced once by `transcripts` (``python -m tests.noise._pipes_transcript``
prints it) and frozen; ``tests/noise/test_pipes_vector.py`` runs the same code again and
compares every byte, and checks that docs/protocol.md prints the same hex.

Each private key is ``SHA-256("tidings-pipes-vector " || label)``. The client and the server are
the real `PipesInitiator` and `PipesResponder`, each given an rng that returns its fixed
ephemeral private key (and fails if asked for anything else). The transport keys are read off
``Split()`` (Noise §5.2) as the handshake runs: ``k1``/``k2`` are the first 32 bytes of
``HKDF(ck, "", 2)``, the keys of the CipherStates that the Noise initiator sends and receives
with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tidings.noise import PipesInitiator, PipesResponder, fingerprint, public_key
from tidings.noise.cipher import KEY_LEN, CipherState
from tidings.noise.symmetric import SymmetricState
from tidings.wire import PROLOGUE, Hello, Register, Registered, Welcome, encode

SOURCE = (
    "tidings: ours, frozen. Produced once by tests/noise/_pipes_transcript.py (the real "
    "PipesInitiator/PipesResponder driven with rngs that return the fixed ephemeral keys) and "
    "frozen; the Noise core it runs passes the public cacophony, snow and noise-c vectors "
    "(tests/vectors/noise/). Private keys are SHA-256('tidings-pipes-vector ' || label)."
)

#: Labels of the fixed private keys.
KEY_LABELS = (
    "client_static",
    "server_static",
    "server_static_old",
    "xx_client_ephemeral",
    "xx_server_ephemeral",
    "ik_client_ephemeral",
    "ik_server_ephemeral",
    "fallback_client_ephemeral",
    "fallback_server_ephemeral",
)

#: The frames each scenario sends first after its handshake: (client's, server's answer).
FIRST_FRAMES = {
    "xx": (Register(1, "alice", "alice's laptop", None), Registered("alice", 1)),
    "ik": (Hello(1, 0), Welcome("alice", 1, 1700000000.5, 2592000.0, 65536)),
    "fallback": (Hello(1, 0), Welcome("alice", 1, 1700000000.5, 2592000.0, 65536)),
}


def private_key(label: str) -> bytes:
    """The fixed private key named ``label``."""
    return hashlib.sha256(b"tidings-pipes-vector " + label.encode()).digest()


def _fixed_rng(key: bytes) -> Callable[[int], bytes]:
    """An rng that hands out ``key`` once, as one draw of its length."""
    left = [key]

    def rng(n: int) -> bytes:
        assert left and n == len(key), f"unexpected draw of {n} bytes"
        return left.pop()

    return rng


@contextmanager
def _recording_splits(keys: list[tuple[bytes, bytes]]) -> Iterator[None]:
    """Record ``(k1, k2)`` of every ``Split()`` run inside the block (Noise §5.2)."""
    original = SymmetricState.split

    def split(self: SymmetricState) -> tuple[CipherState, CipherState]:
        t1, t2 = self._hash.hkdf(self._ck, b"", 2)
        keys.append((t1[:KEY_LEN], t2[:KEY_LEN]))
        return original(self)

    SymmetricState.split = split  # type: ignore[method-assign]
    try:
        yield
    finally:
        SymmetricState.split = original  # type: ignore[method-assign]


def _run(scenario: str) -> dict[str, Any]:
    """One handshake and its first two transport messages, as hex."""
    pinned = {"xx": None, "ik": "server_static", "fallback": "server_static_old"}[scenario]
    client = PipesInitiator(
        private_key("client_static"),
        server_static=None if pinned is None else public_key(private_key(pinned)),
        prologue=PROLOGUE,
        rng=_fixed_rng(private_key(f"{scenario}_client_ephemeral")),
    )
    server = PipesResponder(
        private_key("server_static"),
        prologue=PROLOGUE,
        rng=_fixed_rng(private_key(f"{scenario}_server_ephemeral")),
    )
    splits: list[tuple[bytes, bytes]] = []
    with _recording_splits(splits):
        messages = [("client", client.start(b""))]
        while not (client.complete and server.complete):
            sender, last = messages[-1]
            reply = server.receive(last) if sender == "client" else client.receive(last)
            if reply is not None:
                messages.append(("server" if sender == "client" else "client", reply))
    assert client.handshake_hash == server.handshake_hash
    assert splits[0] == splits[1], "both sides split to the same keys"
    k1, k2 = splits[0]
    # The Noise initiator sends with k1: the client in XX and IK, the server in XXfallback.
    c2s, s2c = (k2, k1) if scenario == "fallback" else (k1, k2)
    request, answer = FIRST_FRAMES[scenario]
    request_plain, answer_plain = encode(request), encode(answer)
    return {
        "pattern": str(client.pattern),
        "pinned_server_key": None if pinned is None else public_key(private_key(pinned)).hex(),
        "messages": [{"from": who, "hex": data.hex()} for who, data in messages],
        "handshake_hash": client.handshake_hash.hex(),
        "client_to_server_key": c2s.hex(),
        "server_to_client_key": s2c.hex(),
        "transport": [
            {
                "from": "client",
                "frame": repr(request),
                "plaintext": request_plain.hex(),
                "hex": client.transport().encrypt(request_plain).hex(),
            },
            {
                "from": "server",
                "frame": repr(answer),
                "plaintext": answer_plain.hex(),
                "hex": server.transport().encrypt(answer_plain).hex(),
            },
        ],
    }


def transcripts() -> dict[str, Any]:
    """The whole vector file (see the module docstring)."""
    keys = {label: private_key(label) for label in KEY_LABELS}
    server_public = public_key(keys["server_static"])
    return {
        "source": SOURCE,
        "prologue": PROLOGUE.hex(),
        "handshake_payloads": "empty (zero bytes) in every message, as the reference code sends",
        "private_keys": {label: key.hex() for label, key in keys.items()},
        "public_keys": {
            label: public_key(keys[label]).hex()
            for label in ("client_static", "server_static", "server_static_old")
        },
        "server_fingerprint": fingerprint(server_public),
        "server_fingerprint_digest": hashlib.sha256(server_public).hexdigest(),
        "scenarios": {scenario: _run(scenario) for scenario in ("xx", "ik", "fallback")},
    }


if __name__ == "__main__":
    print(json.dumps(transcripts(), indent=1, ensure_ascii=False))
