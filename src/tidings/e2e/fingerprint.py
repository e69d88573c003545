"""Safety numbers: libsignal's numeric fingerprints (displayable and scannable), sans-I/O.

Two users compare a 60-digit *safety number* (read aloud or side by side) or scan each other's
QR code (the *scannable* form) to check that neither identity key was substituted in transit.
This is libsignal's ``NumericFingerprintGenerator`` (fingerprint version 0), byte for byte:

* each party's fingerprint hash, with ``K`` its 33-byte identity key (``0x05 || u``) and
  ``ID`` its stable identifier (for tidings: the account name, UTF-8)::

      h = 0x0000 || K || ID                      # 2-byte big-endian version 0; not hashed
      repeat `iterations` times: h = SHA-512(h || K)

  so the first round hashes ``0x0000 || K || ID || K`` and there are exactly ``iterations``
  SHA-512 calls (libsignal: ``rust/protocol/src/fingerprint.rs`` ``get_fingerprint``);
* its 30 digits: ``h[0:30]`` as six 5-byte big-endian integers, each ``mod 100000`` and
  zero-padded to 5 digits;
* the safety number: both parties' 30 digits, the smaller string first — so both ends show
  the same 60 digits;
* the scannable form: protobuf ``CombinedFingerprints{version = 1, local_fingerprint = 2,
  remote_fingerprint = 3}``, each fingerprint a ``LogicalFingerprint{content = 1}`` holding
  ``h[0:32]``. Comparing checks *their* local against *our* remote and vice versa, in
  constant time, after the versions agree.

libsignal's own known answers (ALICE/BOB, ``+14152222222`` / ``+14153333333``, 5200 iterations)
are pinned in ``tests/e2e/test_fingerprint.py``.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from cryptography.hazmat.primitives import hashes

from . import protobuf

__all__ = [
    "DEFAULT_ITERATIONS",
    "FINGERPRINT_VERSION",
    "SAFETY_NUMBER_DIGITS",
    "SCANNABLE_FINGERPRINT_LEN",
    "SCANNABLE_VERSION",
    "FingerprintParsingError",
    "FingerprintVersionMismatchError",
    "compare_scannable",
    "format_safety_number",
    "safety_number",
    "safety_number_for_keys",
    "scannable_fingerprint",
]

#: Hash rounds per party; Signal's clients use 5200 ("> 112 bits" in libsignal's docs).
DEFAULT_ITERATIONS = 5200
#: Version of the hash construction (the 2-byte prefix); libsignal has only version 0.
FINGERPRINT_VERSION = 0
#: Default version of the scannable (QR) form. libsignal's known answers exist for 1 and 2,
#: which differ only in this field; Signal writes 2 for service-ID-based identifiers.
SCANNABLE_VERSION = 2
#: Digits of a safety number: 30 per party.
SAFETY_NUMBER_DIGITS = 60
#: Bytes of each party's hash carried in the scannable form.
SCANNABLE_FINGERPRINT_LEN = 32

_MIN_ITERATIONS = 2  # libsignal rejects iterations <= 1 ...
_MAX_ITERATIONS = 1_000_000  # ... and > 1_000_000
_IDENTITY_KEY_LEN = 33
_KEY_TYPE_DJB = 0x05
_UINT32_MAX = protobuf.UINT32_MAX


class FingerprintParsingError(ValueError):
    """A scannable fingerprint is not a well-formed ``CombinedFingerprints`` protobuf."""


class FingerprintVersionMismatchError(ValueError):
    """The two scannable fingerprints carry different versions, so they cannot be compared.

    Attributes:
        theirs: the version in the scanned fingerprint.
        ours: the version in our own fingerprint.
    """

    def __init__(self, theirs: int, ours: int) -> None:
        super().__init__(
            f"scannable fingerprint version mismatch: theirs is {theirs}, ours is {ours}"
            " (one side must update before the fingerprints can be compared)"
        )
        self.theirs = theirs
        self.ours = ours


# -- the per-party hash ---------------------------------------------------------------------------


def _check_key(key: bytes, who: str) -> bytes:
    if not isinstance(key, bytes | bytearray | memoryview):
        raise TypeError(f"{who} identity key must be bytes")
    key = bytes(key)
    if len(key) != _IDENTITY_KEY_LEN or key[0] != _KEY_TYPE_DJB:
        raise ValueError(f"{who} identity key must be 0x05 followed by 32 bytes")
    return key


def _check_iterations(iterations: int) -> None:
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, int)
        or not _MIN_ITERATIONS <= iterations <= _MAX_ITERATIONS
    ):
        raise ValueError(
            f"iterations must be an integer from {_MIN_ITERATIONS} to {_MAX_ITERATIONS}"
        )


def _party_hash(key: bytes, stable_id: str, iterations: int) -> bytes:
    """The 64-byte hash of one party after ``iterations`` SHA-512 rounds."""
    if not isinstance(stable_id, str):
        raise TypeError("a stable identifier is a str")
    h = FINGERPRINT_VERSION.to_bytes(2, "big") + key + stable_id.encode("utf-8")
    for _ in range(iterations):
        digest = hashes.Hash(hashes.SHA512())
        digest.update(h)
        digest.update(key)
        h = digest.finalize()
    return h


def _digits(h: bytes) -> str:
    """Six 5-byte big-endian chunks of ``h[:30]``, each mod 100000, as 30 digits."""
    return "".join(f"{int.from_bytes(h[i : i + 5], 'big') % 100_000:05d}" for i in range(0, 30, 5))


def _hashes(
    local_key: bytes, local_id: str, remote_key: bytes, remote_id: str, iterations: int
) -> tuple[bytes, bytes]:
    _check_iterations(iterations)
    local = _party_hash(_check_key(local_key, "local"), local_id, iterations)
    remote = _party_hash(_check_key(remote_key, "remote"), remote_id, iterations)
    return local, remote


# -- the displayable form -------------------------------------------------------------------------


def safety_number(
    local_key: bytes,
    local_id: str,
    remote_key: bytes,
    remote_id: str,
    iterations: int = DEFAULT_ITERATIONS,
) -> str:
    """The 60-digit safety number of a conversation; both parties compute the same one.

    Args:
        local_key: our 33-byte identity key (``PublicKey.serialize()``: ``0x05 || u``).
        local_id: our stable identifier (the account name); hashed as UTF-8.
        remote_key: the peer's 33-byte identity key.
        remote_id: the peer's stable identifier.
        iterations: SHA-512 rounds per party; must match on both ends (default 5200).

    Raises:
        ValueError: a key that is not ``0x05`` plus 32 bytes, or ``iterations`` outside
            2..1_000_000 (libsignal's bounds).
        TypeError: a key that is not bytes or an identifier that is not a str.
    """
    local, remote = _hashes(local_key, local_id, remote_key, remote_id, iterations)
    ours, theirs = _digits(local), _digits(remote)
    return ours + theirs if ours < theirs else theirs + ours


def safety_number_for_keys(
    local_keys: Sequence[bytes],
    local_id: str,
    remote_keys: Sequence[bytes],
    remote_id: str,
    iterations: int = DEFAULT_ITERATIONS,
) -> str:
    """The safety number of two parties that each have several identity keys (one per device).

    Each party's keys are sorted and concatenated before hashing, as libsignal-protocol-java's
    list form of ``NumericFingerprintGenerator.createFor`` did (``getLogicalKeyBytes``); with
    one key on each side it equals `safety_number`. Any device added, removed or re-keyed on
    either side changes the number.

    Raises:
        ValueError: no keys on a side, a key that is not ``0x05`` plus 32 bytes, or bad
            ``iterations``.
    """
    _check_iterations(iterations)
    local = _party_hash(_logical(local_keys, "local"), local_id, iterations)
    remote = _party_hash(_logical(remote_keys, "remote"), remote_id, iterations)
    ours, theirs = _digits(local), _digits(remote)
    return ours + theirs if ours < theirs else theirs + ours


def _logical(keys: Sequence[bytes], who: str) -> bytes:
    if not keys:
        raise ValueError(f"the {who} party has no identity key")
    return b"".join(sorted(_check_key(k, who) for k in keys))


def format_safety_number(number: str) -> str:
    """``number`` as 12 groups of 5 digits, 4 groups to a line, 3 lines.

    Raises:
        ValueError: ``number`` is not exactly 60 ASCII digits.
    """
    if len(number) != SAFETY_NUMBER_DIGITS or not (number.isascii() and number.isdigit()):
        raise ValueError(f"a safety number is {SAFETY_NUMBER_DIGITS} digits")
    groups = [number[i : i + 5] for i in range(0, SAFETY_NUMBER_DIGITS, 5)]
    return "\n".join(" ".join(groups[i : i + 4]) for i in range(0, 12, 4))


# -- the scannable form ---------------------------------------------------------------------------


def scannable_fingerprint(
    local_key: bytes,
    local_id: str,
    remote_key: bytes,
    remote_id: str,
    iterations: int = DEFAULT_ITERATIONS,
    *,
    version: int = SCANNABLE_VERSION,
) -> bytes:
    """Our scannable fingerprint (the QR payload): the ``CombinedFingerprints`` protobuf.

    Arguments as for `safety_number`; ``version`` is the scannable form's version field.

    Raises:
        ValueError: as `safety_number`, or ``version`` not a uint32.
    """
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= _UINT32_MAX:
        raise ValueError("a scannable fingerprint version is between 0 and 2**32 - 1")
    local, remote = _hashes(local_key, local_id, remote_key, remote_id, iterations)
    return _encode_combined(
        version, local[:SCANNABLE_FINGERPRINT_LEN], remote[:SCANNABLE_FINGERPRINT_LEN]
    )


def compare_scannable(ours: bytes, theirs: bytes) -> bool:
    """Whether the scanned fingerprint ``theirs`` matches our own ``ours``.

    They match when their local fingerprint is our remote one and their remote is our local;
    both are compared in constant time. Like libsignal, a scanned fingerprint without a version
    field counts as version 0, and fingerprint contents of the wrong length simply don't match.

    Raises:
        FingerprintVersionMismatchError: the two carry different versions.
        FingerprintParsingError: either is not a well-formed scannable fingerprint.
    """
    our_version, our_local, our_remote = _decode_combined(ours)
    their_version, their_local, their_remote = _decode_combined(theirs)
    if their_version != our_version:
        raise FingerprintVersionMismatchError(their_version, our_version)
    same1 = hmac.compare_digest(their_local, our_remote)
    same2 = hmac.compare_digest(their_remote, our_local)
    return same1 & same2


# -- CombinedFingerprints in protobuf (tidings.e2e.protobuf) ------------------------------------


def _encode_combined(version: int, local: bytes, remote: bytes) -> bytes:
    """Fields in number order with the version always present, as libsignal writes them."""
    return (
        protobuf.uint32_field(1, version)
        + protobuf.bytes_field(2, protobuf.bytes_field(1, local))
        + protobuf.bytes_field(3, protobuf.bytes_field(1, remote))
    )


def _fields(data: bytes) -> protobuf.Fields:
    try:
        return protobuf.decode(data)
    except protobuf.ProtobufError as exc:
        raise FingerprintParsingError(str(exc)) from None


def _content(fields: dict[int, int | bytes], number: int) -> bytes:
    logical = fields.get(number)
    if not isinstance(logical, bytes):
        raise FingerprintParsingError(f"missing fingerprint field {number}")
    content = _fields(logical).get(1)
    if not isinstance(content, bytes):
        raise FingerprintParsingError(f"fingerprint field {number} has no content")
    return content


def _decode_combined(data: bytes) -> tuple[int, bytes, bytes]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("a scannable fingerprint is bytes")
    fields = _fields(bytes(data))
    version = fields.get(1, 0)
    if not isinstance(version, int) or version > _UINT32_MAX:
        raise FingerprintParsingError("the version is not a uint32")
    return version, _content(fields, 2), _content(fields, 3)
