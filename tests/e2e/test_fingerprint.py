"""e2e.fingerprint: safety numbers and scannable fingerprints against libsignal's known answers."""

from __future__ import annotations

import pytest

from tidings.e2e import (
    DEFAULT_ITERATIONS,
    FingerprintParsingError,
    FingerprintVersionMismatchError,
    IdentityKeyPair,
    KeyPair,
    compare_scannable,
    format_safety_number,
    safety_number,
    scannable_fingerprint,
)

from ._support import seeded_rng

# libsignal's known answers: signalapp/libsignal, rust/protocol/src/fingerprint.rs, `mod test`
# (fingerprint_test_v1 / fingerprint_test_v2, "testVectorsVersion1/2 in Java"), as stored at
# commit 03a739a95caeea91dbdef44b67b24735f401953c. The same keys and displayable string are in
# libsignal's Java NumericFingerprintGeneratorTest and libsignal-protocol-c's test_fingerprint.c.
ALICE_IDENTITY = bytes.fromhex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
BOB_IDENTITY = bytes.fromhex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")
ALICE_STABLE_ID = "+14152222222"
BOB_STABLE_ID = "+14153333333"
DISPLAYABLE_FINGERPRINT = "300354477692869396892869876765458257569162576843440918079131"
ALICE_SCANNABLE_FINGERPRINT_V1 = bytes.fromhex(
    "080112220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
    "1a220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"
)
BOB_SCANNABLE_FINGERPRINT_V1 = bytes.fromhex(
    "080112220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"
    "1a220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
)
ALICE_SCANNABLE_FINGERPRINT_V2 = bytes.fromhex(
    "080212220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
    "1a220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"
)
BOB_SCANNABLE_FINGERPRINT_V2 = bytes.fromhex(
    "080212220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"
    "1a220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
)

# The property tests use fewer rounds: libsignal's own random-key tests use 1024.
FAST = 1024


def _identity(seed: int) -> bytes:
    return IdentityKeyPair.generate(seeded_rng(seed)).public.serialize()


# -- libsignal's known answers -----------------------------------------------------------------


def test_default_iterations_are_signals() -> None:
    assert DEFAULT_ITERATIONS == 5200


def test_safety_number_matches_libsignal() -> None:
    alice = safety_number(ALICE_IDENTITY, ALICE_STABLE_ID, BOB_IDENTITY, BOB_STABLE_ID)
    bob = safety_number(BOB_IDENTITY, BOB_STABLE_ID, ALICE_IDENTITY, ALICE_STABLE_ID, 5200)
    assert alice == bob == DISPLAYABLE_FINGERPRINT


@pytest.mark.parametrize(
    ("version", "alice_expected", "bob_expected"),
    [
        (1, ALICE_SCANNABLE_FINGERPRINT_V1, BOB_SCANNABLE_FINGERPRINT_V1),
        (2, ALICE_SCANNABLE_FINGERPRINT_V2, BOB_SCANNABLE_FINGERPRINT_V2),
    ],
)
def test_scannable_matches_libsignal(
    version: int, alice_expected: bytes, bob_expected: bytes
) -> None:
    alice = scannable_fingerprint(
        ALICE_IDENTITY, ALICE_STABLE_ID, BOB_IDENTITY, BOB_STABLE_ID, version=version
    )
    bob = scannable_fingerprint(
        BOB_IDENTITY, BOB_STABLE_ID, ALICE_IDENTITY, ALICE_STABLE_ID, version=version
    )
    assert alice == alice_expected
    assert bob == bob_expected
    assert compare_scannable(alice, bob)
    assert compare_scannable(bob, alice)
    # libsignal's "Java is missing this test": our own code never matches itself.
    assert not compare_scannable(alice, alice)


def test_default_scannable_version_is_2() -> None:
    alice = scannable_fingerprint(ALICE_IDENTITY, ALICE_STABLE_ID, BOB_IDENTITY, BOB_STABLE_ID)
    assert alice == ALICE_SCANNABLE_FINGERPRINT_V2


def test_scannable_encoding_layout() -> None:
    # libsignal's fingerprint_encodings: version, then each 32-byte LogicalFingerprint.content.
    assert ALICE_SCANNABLE_FINGERPRINT_V2[:6] == bytes.fromhex("080212220a20")
    assert ALICE_SCANNABLE_FINGERPRINT_V2[38:42] == bytes.fromhex("1a220a20")
    assert len(ALICE_SCANNABLE_FINGERPRINT_V2) == 6 + 32 + 4 + 32


def test_versions_mismatch_raises() -> None:
    with pytest.raises(FingerprintVersionMismatchError) as info:
        compare_scannable(ALICE_SCANNABLE_FINGERPRINT_V2, BOB_SCANNABLE_FINGERPRINT_V1)
    assert (info.value.theirs, info.value.ours) == (1, 2)
    assert "version mismatch" in str(info.value)


# -- properties with our own keys --------------------------------------------------------------


def test_our_identity_keys_agree_both_ways() -> None:
    alice, bob = _identity(1), _identity(2)
    a = safety_number(alice, "alice", bob, "bob", FAST)
    b = safety_number(bob, "bob", alice, "alice", FAST)
    assert a == b
    assert len(a) == 60 and a.isdigit()
    assert a[:30] <= a[30:]
    a_scan = scannable_fingerprint(alice, "alice", bob, "bob", FAST)
    b_scan = scannable_fingerprint(bob, "bob", alice, "alice", FAST)
    assert compare_scannable(a_scan, b_scan)
    assert compare_scannable(b_scan, a_scan)


def test_x25519_key_pairs_work_too() -> None:
    alice = KeyPair.generate(seeded_rng(3)).public.serialize()
    bob = KeyPair.generate(seeded_rng(4)).public.serialize()
    assert safety_number(alice, "a", bob, "b", FAST) == safety_number(bob, "b", alice, "a", FAST)


def test_substituted_key_is_detected() -> None:
    alice, bob, mallory = _identity(1), _identity(2), _identity(3)
    # Alice was handed Mallory's key in place of Bob's.
    a = safety_number(alice, "alice", mallory, "bob", FAST)
    b = safety_number(bob, "bob", alice, "alice", FAST)
    assert a != b
    a_scan = scannable_fingerprint(alice, "alice", mallory, "bob", FAST)
    b_scan = scannable_fingerprint(bob, "bob", alice, "alice", FAST)
    assert not compare_scannable(a_scan, b_scan)
    assert not compare_scannable(b_scan, a_scan)


def test_different_identifier_is_detected() -> None:
    alice, bob = _identity(1), _identity(2)
    a = safety_number(alice, "alice2", bob, "bob", FAST)
    b = safety_number(bob, "bob", alice, "alice", FAST)
    assert a != b
    a_scan = scannable_fingerprint(alice, "alice2", bob, "bob", FAST)
    b_scan = scannable_fingerprint(bob, "bob", alice, "alice", FAST)
    assert not compare_scannable(a_scan, b_scan)


def test_identifier_is_utf8() -> None:
    alice, bob = _identity(1), _identity(2)
    a = safety_number(alice, "zoë", bob, "bob", FAST)
    assert a == safety_number(bob, "bob", alice, "zoë", FAST)
    assert a != safety_number(alice, "zoe", bob, "bob", FAST)


def test_iterations_change_the_number() -> None:
    alice, bob = _identity(1), _identity(2)
    assert safety_number(alice, "a", bob, "b", FAST) != safety_number(alice, "a", bob, "b", 1025)


def test_same_party_twice_is_well_defined() -> None:
    alice = _identity(1)
    number = safety_number(alice, "alice", alice, "alice", FAST)
    assert number[:30] == number[30:]


# -- formatting --------------------------------------------------------------------------------


def test_format_safety_number() -> None:
    assert format_safety_number(DISPLAYABLE_FINGERPRINT) == (
        "30035 44776 92869 39689\n28698 76765 45825 75691\n62576 84344 09180 79131"
    )


@pytest.mark.parametrize(
    "bad", ["", DISPLAYABLE_FINGERPRINT[:-1], DISPLAYABLE_FINGERPRINT + "1", "x" * 60, "٣" * 60]
)
def test_format_rejects_non_safety_numbers(bad: str) -> None:
    with pytest.raises(ValueError):
        format_safety_number(bad)


# -- input checking ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", [b"", ALICE_IDENTITY[1:], b"\x06" + ALICE_IDENTITY[1:], ALICE_IDENTITY + b"\x00"]
)
def test_rejects_malformed_keys(key: bytes) -> None:
    with pytest.raises(ValueError):
        safety_number(key, "a", BOB_IDENTITY, "b", FAST)
    with pytest.raises(ValueError):
        scannable_fingerprint(ALICE_IDENTITY, "a", key, "b", FAST)


@pytest.mark.parametrize("iterations", [-1, 0, 1, 1_000_001])
def test_rejects_iterations_outside_libsignals_bounds(iterations: int) -> None:
    with pytest.raises(ValueError):
        safety_number(ALICE_IDENTITY, "a", BOB_IDENTITY, "b", iterations)


@pytest.mark.parametrize("version", [-1, 2**32])
def test_rejects_versions_outside_uint32(version: int) -> None:
    with pytest.raises(ValueError):
        scannable_fingerprint(ALICE_IDENTITY, "a", BOB_IDENTITY, "b", FAST, version=version)


@pytest.mark.parametrize(
    "bad",
    [
        ALICE_SCANNABLE_FINGERPRINT_V2[:-1],  # truncated content
        ALICE_SCANNABLE_FINGERPRINT_V2[:38],  # no remote fingerprint
        bytes.fromhex("0802") + ALICE_SCANNABLE_FINGERPRINT_V2[38:],  # no local fingerprint
        bytes.fromhex("08021200") + ALICE_SCANNABLE_FINGERPRINT_V2[38:],  # local without content
        b"\x08\xff",  # truncated varint
        b"\x08" + b"\xff" * 10 + b"\x01",  # overlong varint
        b"\x0b",  # wire type 3
    ],
)
def test_compare_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(FingerprintParsingError):
        compare_scannable(ALICE_SCANNABLE_FINGERPRINT_V2, bad)
    with pytest.raises(FingerprintParsingError):
        compare_scannable(bad, BOB_SCANNABLE_FINGERPRINT_V2)


def test_missing_version_counts_as_zero() -> None:
    # libsignal: `combined.version.unwrap_or(0)`.
    without_version = BOB_SCANNABLE_FINGERPRINT_V2[2:]
    with pytest.raises(FingerprintVersionMismatchError) as info:
        compare_scannable(ALICE_SCANNABLE_FINGERPRINT_V2, without_version)
    assert info.value.theirs == 0
    ours_v0 = scannable_fingerprint(
        ALICE_IDENTITY, ALICE_STABLE_ID, BOB_IDENTITY, BOB_STABLE_ID, version=0
    )
    assert compare_scannable(ours_v0, without_version)


def test_wrong_length_content_does_not_match() -> None:
    short = bytes.fromhex("0802121f0a1d") + ALICE_SCANNABLE_FINGERPRINT_V2[6:35]
    short += BOB_SCANNABLE_FINGERPRINT_V2[38:]
    assert not compare_scannable(BOB_SCANNABLE_FINGERPRINT_V2, short)


def test_unknown_fields_are_skipped() -> None:
    extra = BOB_SCANNABLE_FINGERPRINT_V2 + bytes.fromhex("2001") + bytes.fromhex("2d00000000")
    assert compare_scannable(ALICE_SCANNABLE_FINGERPRINT_V2, extra)
