"""ML-KEM-1024 (tidings.e2e.kem): FIPS 203 known answers, round trips, sizes, implicit rejection.

The known answers are ``asymmetric/MLKEM/kat_MLKEM_1024.rsp`` of the ``cryptography-vectors``
package (a dev dependency; same version as ``cryptography``): 1000 records of ``d``, ``z``
(the key-generation seed is ``d ‖ z``), ``msg`` (the encapsulation randomness ``m``), ``pk``,
``sk`` (expanded), ``ct``/``ss`` (a ciphertext and its secret) and ``ct_n``/``ss_n`` (an invalid
ciphertext and its implicit-rejection secret). Checked: key generation from the seed,
decapsulation, implicit rejection. Encapsulation from ``msg`` cannot be checked: ``cryptography``
takes no encapsulation randomness (see ``tidings.e2e.kem``).
"""

from __future__ import annotations

import hashlib
import importlib.resources
from functools import cache
from types import SimpleNamespace

import pytest
from cryptography.exceptions import UnsupportedAlgorithm

from tidings.e2e import kem
from tidings.e2e.kem import (
    KEM_CIPHERTEXT_LEN,
    KEM_PUBLIC_KEY_LEN,
    KEM_SEED_LEN,
    KEM_SHARED_SECRET_LEN,
    check_kem_public_key,
    check_mlkem_support,
    decapsulate,
    encapsulate,
    generate_kem_keypair,
    kem_public_key,
)
from tidings.errors import ConfigError, DecryptionError

KAT_FILE = "asymmetric/MLKEM/kat_MLKEM_1024.rsp"
KAT_COUNT = 1000


@cache
def kat_records() -> list[dict[str, bytes]]:
    """The FIPS 203 ML-KEM-1024 records, hex-decoded. Fails (never skips) without the package."""
    try:
        root = importlib.resources.files("cryptography_vectors")
    except ModuleNotFoundError:
        pytest.fail("cryptography-vectors is missing: install the dev extra, pip install -e .[dev]")
    records: list[dict[str, bytes]] = []
    with root.joinpath(KAT_FILE).open("r") as lines:
        for line in lines:
            key, _, value = line.strip().partition(" = ")
            if key == "count":  # each record starts with its count
                records.append({})
            elif key:
                records[-1][key] = bytes.fromhex(value)
    return records


def seeded_rng(label: bytes) -> kem.Rng:
    """A deterministic rng: SHAKE-256 of ``label`` and a call counter."""
    calls = [0]

    def rng(n: int) -> bytes:
        calls[0] += 1
        return hashlib.shake_256(label + calls[0].to_bytes(4, "big")).digest(n)

    return rng


def replaying(data: bytes) -> kem.Rng:
    """An rng that must be asked for exactly ``len(data)`` bytes, and returns ``data``."""

    def rng(n: int) -> bytes:
        assert n == len(data)
        return data

    return rng


# --- FIPS 203 known answers ------------------------------------------------------------------


def test_kat_file_is_complete_and_well_formed() -> None:
    records = kat_records()
    assert len(records) == KAT_COUNT
    for r in records:
        assert len(r["d"]) == len(r["z"]) == 32
        assert len(r["pk"]) == KEM_PUBLIC_KEY_LEN
        assert len(r["ct"]) == len(r["ct_n"]) == KEM_CIPHERTEXT_LEN
        assert len(r["ss"]) == len(r["ss_n"]) == KEM_SHARED_SECRET_LEN
        # FIPS 203 §7.1: dk = dk_PKE ‖ ek ‖ H(ek) ‖ z, so the records agree with themselves.
        assert r["sk"][1536 : 1536 + KEM_PUBLIC_KEY_LEN] == r["pk"]
        assert r["sk"][-32:] == r["z"]


def test_kat_keygen_from_seed() -> None:
    wrong = [i for i, r in enumerate(kat_records()) if kem_public_key(r["d"] + r["z"]) != r["pk"]]
    assert wrong == []


def test_kat_generate_kem_keypair_uses_the_rng_as_the_seed() -> None:
    for r in kat_records()[:10]:
        seed = r["d"] + r["z"]
        assert generate_kem_keypair(replaying(seed)) == (seed, r["pk"])


def test_kat_decapsulation() -> None:
    records = kat_records()
    wrong = [i for i, r in enumerate(records) if decapsulate(r["d"] + r["z"], r["ct"]) != r["ss"]]
    assert wrong == []


def test_kat_implicit_rejection() -> None:
    records = kat_records()
    wrong = [
        i for i, r in enumerate(records) if decapsulate(r["d"] + r["z"], r["ct_n"]) != r["ss_n"]
    ]
    assert wrong == []


def test_kat_encapsulation_to_vector_keys_round_trips() -> None:
    for r in kat_records()[:20]:
        ciphertext, secret = encapsulate(r["pk"])
        assert decapsulate(r["d"] + r["z"], ciphertext) == secret


# --- round trips and determinism -------------------------------------------------------------


def test_round_trip() -> None:
    private, public = generate_kem_keypair(seeded_rng(b"round trip"))
    assert len(private) == KEM_SEED_LEN and len(public) == KEM_PUBLIC_KEY_LEN
    ciphertext, secret = encapsulate(public)
    assert len(ciphertext) == KEM_CIPHERTEXT_LEN and len(secret) == KEM_SHARED_SECRET_LEN
    assert decapsulate(private, ciphertext) == secret


def test_keygen_is_deterministic_in_the_rng() -> None:
    assert generate_kem_keypair(seeded_rng(b"a")) == generate_kem_keypair(seeded_rng(b"a"))
    assert generate_kem_keypair(seeded_rng(b"a")) != generate_kem_keypair(seeded_rng(b"b"))


def test_encapsulation_is_randomised() -> None:
    _, public = generate_kem_keypair(seeded_rng(b"twice"))
    assert encapsulate(public) != encapsulate(public)


# --- implicit rejection ----------------------------------------------------------------------


def test_garbage_ciphertext_gives_the_rejection_secret_without_raising() -> None:
    private, public = generate_kem_keypair(seeded_rng(b"garbage"))
    _, secret = encapsulate(public)
    garbage = hashlib.shake_256(b"not a ciphertext").digest(KEM_CIPHERTEXT_LEN)
    rejected = decapsulate(private, garbage)
    assert len(rejected) == KEM_SHARED_SECRET_LEN and rejected != secret
    assert decapsulate(private, garbage) == rejected  # J(z ‖ c) is a function of key and c


def test_one_flipped_bit_gives_an_unrelated_secret() -> None:
    private, public = generate_kem_keypair(seeded_rng(b"flip"))
    ciphertext, secret = encapsulate(public)
    tampered = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    assert decapsulate(private, tampered) != secret


def test_another_key_gets_another_secret() -> None:
    _, public = generate_kem_keypair(seeded_rng(b"alice"))
    other, _ = generate_kem_keypair(seeded_rng(b"mallory"))
    ciphertext, secret = encapsulate(public)
    assert decapsulate(other, ciphertext) != secret


# --- bad sizes and bad keys ------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, KEM_SEED_LEN - 1, KEM_SEED_LEN + 1, 3168])
def test_bad_private_key_size(size: int) -> None:
    with pytest.raises(ValueError, match="64-byte seed"):
        kem_public_key(bytes(size))
    with pytest.raises(ValueError, match="64-byte seed"):
        decapsulate(bytes(size), bytes(KEM_CIPHERTEXT_LEN))


@pytest.mark.parametrize("size", [0, 32, KEM_PUBLIC_KEY_LEN - 1, KEM_PUBLIC_KEY_LEN + 1])
def test_bad_public_key_size(size: int) -> None:
    with pytest.raises(ValueError, match="1568 bytes"):
        encapsulate(bytes(size))
    with pytest.raises(ValueError, match="1568 bytes"):
        check_kem_public_key(bytes(size))


@pytest.mark.parametrize("size", [0, 1, KEM_CIPHERTEXT_LEN - 1, KEM_CIPHERTEXT_LEN + 1])
def test_bad_ciphertext_size_is_a_decryption_error(size: int) -> None:
    private, _ = generate_kem_keypair(seeded_rng(b"sizes"))
    with pytest.raises(DecryptionError):
        decapsulate(private, bytes(size))


def test_non_bytes_are_refused() -> None:
    private, public = generate_kem_keypair(seeded_rng(b"types"))
    with pytest.raises(ValueError):
        encapsulate(bytearray(public))  # type: ignore[arg-type]
    with pytest.raises(DecryptionError):
        decapsulate(private, bytearray(KEM_CIPHERTEXT_LEN))  # type: ignore[arg-type]


def test_public_key_failing_the_modulus_check_is_refused() -> None:
    public = kat_records()[0]["pk"]
    check_kem_public_key(public)
    # The first 12-bit coefficient is bytes 0 and the low nibble of 1: make it 4095 >= q = 3329.
    bad = bytes([0xFF, public[1] | 0x0F]) + public[2:]
    with pytest.raises(ValueError, match="modulus check"):
        check_kem_public_key(bad)
    with pytest.raises(ValueError, match="modulus check"):
        encapsulate(bad)


def test_rng_breaking_its_contract() -> None:
    with pytest.raises(ValueError, match="rng"):
        generate_kem_keypair(lambda n: bytes(n - 1))


# --- support check ---------------------------------------------------------------------------


def test_support_check_passes_here() -> None:
    check_mlkem_support()


def test_support_check_names_versions_when_the_module_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(kem, "_mlkem", None)
    with pytest.raises(ConfigError, match=r"OpenSSL >= 3\.5.*this build is cryptography \d+"):
        check_mlkem_support()
    with pytest.raises(ConfigError):
        generate_kem_keypair(seeded_rng(b"x"))


def test_support_check_when_the_backend_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(data: bytes) -> None:
        raise UnsupportedAlgorithm("ML-KEM-1024 is not supported by this backend.")

    fake = SimpleNamespace(
        MLKEM1024PrivateKey=SimpleNamespace(from_seed_bytes=refuse),
        MLKEM1024PublicKey=SimpleNamespace(from_public_bytes=refuse),
    )
    monkeypatch.setattr(kem, "_mlkem", fake)
    with pytest.raises(ConfigError, match="OpenSSL") as info:
        check_mlkem_support()
    assert isinstance(info.value.__cause__, UnsupportedAlgorithm)
    with pytest.raises(ConfigError):
        encapsulate(bytes(KEM_PUBLIC_KEY_LEN))
