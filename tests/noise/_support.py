"""Helpers for the Noise tests: a seeded RNG and an in-memory wire between two Pipes peers."""

from __future__ import annotations

import hashlib

from tidings.noise import PipesInitiator, PipesResponder, Rng, generate_keypair

PROLOGUE = b"tidings noise test"


def seeded_rng(seed: bytes) -> Rng:
    """A deterministic RNG: SHA-256(seed || counter) blocks, stable across platforms."""
    counter = 0

    def rng(n: int) -> bytes:
        nonlocal counter
        out = b""
        while len(out) < n:
            out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
            counter += 1
        return out[:n]

    return rng


def keypair(seed: bytes) -> tuple[bytes, bytes]:
    """A deterministic X25519 key pair."""
    return generate_keypair(seeded_rng(b"key:" + seed))


CLIENT_PRIVATE, CLIENT_PUBLIC = keypair(b"client")
SERVER_PRIVATE, SERVER_PUBLIC = keypair(b"server")
OLD_SERVER_PRIVATE, OLD_SERVER_PUBLIC = keypair(b"old server")


def pair(
    *,
    pinned: bytes | None,
    server_private: bytes = SERVER_PRIVATE,
    server_payload: bytes = b"",
) -> tuple[PipesInitiator, PipesResponder]:
    """A client pinning ``pinned`` (``None``: XX) and a server, with seeded RNGs."""
    client = PipesInitiator(
        CLIENT_PRIVATE, server_static=pinned, prologue=PROLOGUE, rng=seeded_rng(b"client rng")
    )
    server = PipesResponder(
        server_private, prologue=PROLOGUE, rng=seeded_rng(b"server rng"), payload=server_payload
    )
    return client, server


def run(client: PipesInitiator, server: PipesResponder, client_payload: bytes = b"") -> list[bytes]:
    """Drive the handshake to the end over a perfect wire; return every message sent."""
    wire = [client.start(client_payload)]
    while True:
        reply = server.receive(wire[-1])
        if reply is None:
            break
        wire.append(reply)
        answer = client.receive(reply)
        if answer is None:
            break
        wire.append(answer)
    assert client.complete
    assert server.complete
    return wire
