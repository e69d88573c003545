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

import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tidings.noise import PipesInitiator, PipesResponder, fingerprint, public_key
from tidings.noise.cipher import KEY_LEN, CipherState
from tidings.noise.symmetric import SymmetricState
from tidings.wire import PROLOGUE, Frame, Hello, Register, Registered, Welcome, encode

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
    "ik": (Hello(2, 0), Welcome("alice", 1, 1700000000.5, 2592000.0, 65536, 10000, 10042)),
    "fallback": (Hello(2, 0), Welcome("alice", 1, 1700000000.5, 2592000.0, 65536, 10000, 10042)),
}


def describe(frame: Frame) -> str:
    """A frame as docs/protocol.md writes it: ``NAME(field, …)``, nil for None."""

    def show(value: object) -> str:
        if value is None:
            return "nil"
        if isinstance(value, str):
            return json.dumps(value, ensure_ascii=False)
        return repr(value)

    values = (show(getattr(frame, f.name)) for f in dataclasses.fields(frame))  # type: ignore[arg-type]
    return f"{frame.TYPE.name}({', '.join(values)})"


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
                "frame": describe(request),
                "plaintext": request_plain.hex(),
                "hex": client.transport().encrypt(request_plain).hex(),
            },
            {
                "from": "server",
                "frame": describe(answer),
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


# -- the same values as docs/protocol.md §3.6 prints them -------------------------------------

_HEX_WIDTH = 64  # hex digits per line: 32 bytes
_LABEL_WIDTH = 29

_TITLES = {
    "xx": "XX, first contact: the client has no pinned server key (here it registers)",
    "ik": "IK: the client has pinned server_static",
    "fallback": (
        "IK → XXfallback: the client pinned server_static_old; the server now has server_static"
    ),
}
_KEY_NAMES = {
    "client_static": "client static",
    "server_static": "server static",
    "server_static_old": "server static (old)",
}


def _line(label: str, value: str, indent: str = "  ") -> list[str]:
    """``label`` then ``value`` wrapped at 64 hex digits, continuation lines aligned."""
    chunks = [value[i : i + _HEX_WIDTH] for i in range(0, len(value), _HEX_WIDTH)] or [""]
    pad = " " * (len(indent) + _LABEL_WIDTH)
    first = f"{indent}{label:<{_LABEL_WIDTH}}{chunks[0]}"
    return [first.rstrip()] + [pad + chunk for chunk in chunks[1:]]


def markdown(vector: dict[str, Any]) -> str:
    """The fenced block of docs/protocol.md §3.6: every key, message and key schedule output."""
    out = ["```"]
    out += _line("prologue", vector["prologue"], indent="")
    for label, name in _KEY_NAMES.items():
        out += _line(f"{name} private", vector["private_keys"][label], indent="")
        out += _line(f"{name} public", vector["public_keys"][label], indent="")
    out += _line("server fingerprint", vector["server_fingerprint"], indent="")
    for scenario, run in vector["scenarios"].items():
        out += ["", _TITLES[scenario]]
        for side in ("client", "server"):
            out += _line(
                f"{side} ephemeral private", vector["private_keys"][f"{scenario}_{side}_ephemeral"]
            )
        for number, message in enumerate(run["messages"], 1):
            arrow = "→" if message["from"] == "client" else "←"
            size = len(message["hex"]) // 2
            out += _line(f"{arrow} msg {number} ({size} bytes)", message["hex"])
        out += _line("handshake hash", run["handshake_hash"])
        out += _line("client → server key", run["client_to_server_key"])
        out += _line("server → client key", run["server_to_client_key"])
        for message in run["transport"]:
            arrow = "→" if message["from"] == "client" else "←"
            out.append(f"  {arrow} {message['frame']}")
            out += _line("  plaintext", message["plaintext"])
            out += _line(f"  sent ({len(message['hex']) // 2} bytes)", message["hex"])
    out.append("```")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        print(markdown(transcripts()), end="")
    else:
        print(json.dumps(transcripts(), indent=1, ensure_ascii=False))
