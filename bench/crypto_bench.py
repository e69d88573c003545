"""CPU cost of the e2e layer: Double Ratchet messages, X3DH vs PQXDH session setup, ML-KEM.

Usage: ``python bench/crypto_bench.py [--quick] [--out PATH] [--repeat N]``. Prints a table in
µs and writes the same figures as JSON (default ``bench/results/crypto.json``).

What is measured, all in-process between two of our `Session` objects (Alice and Bob, built
from a seeded ``random.Random``; only ML-KEM encapsulation draws OpenSSL's randomness):

* **same direction**: Alice encrypts N messages of 200 bytes, then Bob decrypts them in order;
  no DH ratchet step, only the symmetric chains (HMAC + HKDF + AES-256-CBC + HMAC-SHA256 MAC).
* **alternating**: Alice → Bob, Bob → Alice, …: every message opens a new sending chain, so
  every decryption is a DH ratchet step (one X25519 key pair drawn, two X25519 agreements).
* **session setup**: a fresh initiator runs ``initiate`` (X3DH, v3) or ``initiate_pq`` (PQXDH,
  v4, real ML-KEM-1024) on a prebuilt bundle and encrypts the first message; a fresh responder
  decrypts it with its prekey store. Signature checks and the first message are included.
* **ML-KEM-1024** ``kem.encapsulate`` and ``kem.decapsulate`` alone (the latter re-derives the
  expanded key from the 64-byte seed each time, as the session does).

Each figure is the median of ``--repeat`` repetitions (5), timed in CPU time of this process
(``time.process_time``), so time other processes held the core is left out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cryptography
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend

from tidings.e2e import (
    IdentityKeyPair,
    KeyPair,
    MessageType,
    PQXDHBundle,
    PreKeyBundle,
    Session,
    bundle_for_session,
    generate_kem_prekey,
    generate_one_time_prekeys,
    generate_signed_prekey,
    kem,
)

DEFAULT_OUT = Path(__file__).parent / "results" / "crypto.json"
PAYLOAD = bytes(range(200))
ALICE_REG, BOB_REG = 1111, 2222
SPK_ID, OPK_ID, KEM_ID = 5, 9, 7

Rng = Callable[[int], bytes]
Wire = tuple[MessageType, bytes]

#: Iterations per repetition: (full run, --quick).
COUNTS = {
    "same_direction": (1000, 200),
    "alternating": (300, 60),
    "setup": (100, 20),
    "kem": (500, 100),
}


def seeded_rng(seed: int) -> Rng:
    generator = random.Random(seed)

    def rng(n: int) -> bytes:
        return generator.randbytes(n)

    return rng


class PreKeyStore:
    """Bob's prekeys in memory (a ``LocalKemPreKeys``); nothing is deleted, so the same
    one-time prekey serves every setup."""

    def __init__(self) -> None:
        self.signed: dict[int, KeyPair] = {}
        self.one_time: dict[int, KeyPair] = {}
        self.kem: dict[int, bytes] = {}

    def signed_prekey(self, prekey_id: int) -> KeyPair | None:
        return self.signed.get(prekey_id)

    def one_time_prekey(self, prekey_id: int) -> KeyPair | None:
        return self.one_time.get(prekey_id)

    def kem_prekey(self, prekey_id: int) -> bytes | None:
        return self.kem.get(prekey_id)


@dataclass
class World:
    """Alice's and Bob's identities, Bob's prekeys and his bundle (PQXDH; ``.x3dh`` for v3)."""

    rng: Rng
    alice_id: IdentityKeyPair
    bob_id: IdentityKeyPair
    prekeys: PreKeyStore
    bundle: PQXDHBundle
    kem_seed: bytes
    kem_public: bytes


def build_world(seed: int) -> World:
    rng = seeded_rng(seed)
    alice_id, bob_id = IdentityKeyPair.generate(rng), IdentityKeyPair.generate(rng)
    spk = generate_signed_prekey(SPK_ID, bob_id.sign, rng, 0)
    [opk] = generate_one_time_prekeys(OPK_ID, 1, rng)
    kem_prekey = generate_kem_prekey(KEM_ID, bob_id.sign, rng, False)
    prekeys = PreKeyStore()
    prekeys.signed[SPK_ID] = KeyPair.from_private(spk.private)
    prekeys.one_time[OPK_ID] = KeyPair.from_private(opk.private)
    prekeys.kem[KEM_ID] = kem_prekey.private
    relay = PreKeyBundle(bob_id.public.raw, spk.prekey, opk.prekey, kem_prekey.prekey)
    bundle = bundle_for_session(relay, registration_id=BOB_REG)
    return World(
        rng, alice_id, bob_id, prekeys, bundle, kem_prekey.private, kem_prekey.prekey.public
    )


def setup_once(world: World, pq: bool) -> tuple[float, float, Session, Session]:
    """One session setup: (initiator CPU s, responder CPU s, Alice, Bob)."""
    t0 = time.process_time()
    alice = Session(world.alice_id.dh_key_pair, ALICE_REG)
    if pq:
        alice.initiate_pq(world.bundle, world.rng)
    else:
        alice.initiate(world.bundle.x3dh, world.rng)
    kind, data = alice.encrypt(PAYLOAD)
    t1 = time.process_time()
    bob = Session(world.bob_id.dh_key_pair, BOB_REG)
    result = bob.decrypt(kind, data, world.rng, world.prekeys)
    t2 = time.process_time()
    assert kind == MessageType.PREKEY and result.plaintext == PAYLOAD
    return t1 - t0, t2 - t1, alice, bob


def established_pair(world: World) -> tuple[Session, Session]:
    """A v4 session after one round trip: both sides now send WhisperMessages."""
    _, _, alice, bob = setup_once(world, pq=True)
    kind, data = bob.encrypt(PAYLOAD)
    assert alice.decrypt(kind, data, world.rng).plaintext == PAYLOAD
    return alice, bob


def us(seconds: float, n: int) -> float:
    return seconds / n * 1e6


def same_direction(world: World, alice: Session, bob: Session, n: int) -> dict[str, float]:
    t0 = time.process_time()
    wires = [alice.encrypt(PAYLOAD) for _ in range(n)]
    t1 = time.process_time()
    for kind, data in wires:
        bob.decrypt(kind, data, world.rng)
    t2 = time.process_time()
    assert wires[-1][0] == MessageType.WHISPER
    return {"encrypt_us": us(t1 - t0, n), "decrypt_us": us(t2 - t1, n), "total_us": us(t2 - t0, n)}


def alternating(world: World, alice: Session, bob: Session, n: int) -> dict[str, float]:
    sender, receiver = alice, bob
    t0 = time.process_time()
    for _ in range(n):
        kind, data = sender.encrypt(PAYLOAD)
        receiver.decrypt(kind, data, world.rng)
        sender, receiver = receiver, sender
    t1 = time.process_time()
    return {"total_us": us(t1 - t0, n)}


def setups(world: World, n: int, pq: bool) -> dict[str, float]:
    initiator = responder = 0.0
    for _ in range(n):
        a, b, _, _ = setup_once(world, pq)
        initiator += a
        responder += b
    return {
        "initiator_us": us(initiator, n),
        "responder_us": us(responder, n),
        "total_us": us(initiator + responder, n),
    }


def kem_ops(world: World, n: int) -> dict[str, float]:
    t0 = time.process_time()
    encapsulated = [kem.encapsulate(world.kem_public) for _ in range(n)]
    t1 = time.process_time()
    for ciphertext, secret in encapsulated:
        assert kem.decapsulate(world.kem_seed, ciphertext) == secret
    t2 = time.process_time()
    return {"encapsulate_us": us(t1 - t0, n), "decapsulate_us": us(t2 - t1, n)}


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, object]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "openssl": openssl_backend.openssl_version_text(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 5x fewer iterations")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions; the median is kept")
    parser.add_argument("--seed", type=int, default=1, help="seed of the key material")
    args = parser.parse_args()

    kem.check_mlkem_support()
    counts = {name: pair[1] if args.quick else pair[0] for name, pair in COUNTS.items()}
    world = build_world(args.seed)
    runs: dict[str, list[dict[str, float]]] = {
        name: [] for name in ("same_direction", "alternating", "setup_x3dh", "setup_pqxdh", "kem")
    }
    start = time.process_time()
    for _ in range(args.repeat):
        alice, bob = established_pair(world)
        runs["same_direction"].append(same_direction(world, alice, bob, counts["same_direction"]))
        alice, bob = established_pair(world)
        runs["alternating"].append(alternating(world, alice, bob, counts["alternating"]))
        runs["setup_x3dh"].append(setups(world, counts["setup"], pq=False))
        runs["setup_pqxdh"].append(setups(world, counts["setup"], pq=True))
        runs["kem"].append(kem_ops(world, counts["kem"]))
    elapsed = time.process_time() - start
    results = {name: median_of(r) for name, r in runs.items()}

    same, alt = results["same_direction"], results["alternating"]
    x3dh, pqxdh, mlkem = results["setup_x3dh"], results["setup_pqxdh"], results["kem"]
    print(f"median of {args.repeat}, CPU µs; payload {len(PAYLOAD)} B")
    print(f"{'':<40}{'µs':>10}")
    print(f"{'same direction, per message (enc+dec)':<40}{same['total_us']:>10.1f}")
    print(f"{'  encrypt':<40}{same['encrypt_us']:>10.1f}")
    print(f"{'  decrypt':<40}{same['decrypt_us']:>10.1f}")
    print(f"{'alternating (DH ratchet step), per msg':<40}{alt['total_us']:>10.1f}")
    for label, r in (("X3DH", x3dh), ("PQXDH", pqxdh)):
        print(f"{f'setup {label} (initiate+1st msg+respond)':<40}{r['total_us']:>10.1f}")
        print(f"{'  initiator':<40}{r['initiator_us']:>10.1f}")
        print(f"{'  responder':<40}{r['responder_us']:>10.1f}")
    print(f"{'ML-KEM-1024 encapsulate':<40}{mlkem['encapsulate_us']:>10.1f}")
    print(f"{'ML-KEM-1024 decapsulate (from seed)':<40}{mlkem['decapsulate_us']:>10.1f}")
    print(f"total CPU {elapsed:.1f} s")

    report = {
        "machine": machine_info(),
        "quick": args.quick,
        "repeat": args.repeat,
        "iterations": counts,
        "payload_bytes": len(PAYLOAD),
        "cpu_seconds": round(elapsed, 2),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
