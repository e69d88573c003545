"""Prekeys and prekey bundles of X3DH/PQXDH: the values, their wire form, their signatures.

A device publishes, signed by its identity key (PQXDH §3.2, X3DH §3.2):

* a **signed prekey** (X25519), rotated every :data:`SIGNED_PREKEY_ROTATION`;
* **one-time prekeys** (X25519, unsigned), each handed out once, refilled in batches;
* **KEM prekeys** (ML-KEM-1024, signed): one-time ones, and one *last-resort* key the server
  hands out again when the one-time ones have run out.

A :class:`PreKeyBundle` is what the server gives a sender to start a session: the identity key,
the signed prekey, at most one one-time prekey, and one KEM prekey.

Signed messages (libsignal's conventions, so signatures are checkable by libsignal):

* signed prekey: ``0x05 ‖ public`` (33 bytes): the DJB type byte and the X25519 key;
* KEM prekey: ``0x0A ‖ public`` (1569 bytes): libsignal's KEM key-type byte for ML-KEM-1024.
  libsignal's ``0x08`` is *Kyber1024*, the pre-standard round-3 Kyber, which derives different
  shared secrets from the same key; signing an ML-KEM key under ``0x08`` would tell a libsignal
  peer to run the wrong algorithm. The type byte is inside the signature so a key cannot be
  re-labelled as another algorithm without breaking it.
* ``last_resort`` is *not* signed (as in libsignal, where it is server-side metadata): a server
  can lie about it, so nothing may rely on it for security; it only steers prekey upkeep.

Wire form of a bundle (MessagePack, ``bin`` for bytes)::

    [1, identity_key, [id, public, signature, created_at],
        [id, public] | nil, [id, public, signature, last_resort]]

Invariants:
    * Every value validates on construction: an invalid prekey or bundle cannot exist, so
      :meth:`PreKeyBundle.parse` of any bytes returns a valid bundle or raises ``FrameError``.
    * Nothing here reads the clock or the OS's randomness: ``now`` and ``rng`` are arguments
      (except ML-KEM key generation, which is seeded from ``rng`` too: see :mod:`.kem`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgpack
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tidings.errors import FrameError, LocalProtocolError, RemoteProtocolError
from tidings.wire.limits import ErrorCode

from .kem import KEM_PUBLIC_KEY_LEN, KEM_SEED_LEN, Rng, check_kem_public_key, kem_public_key

__all__ = [
    "BUNDLE_VERSION",
    "KEM_KEY_TYPE_MLKEM1024",
    "MAX_BUNDLE_LEN",
    "MAX_ONE_TIME_PREKEYS_PER_UPLOAD",
    "PREKEY_KEY_TYPE_DJB",
    "PREKEY_LOW_WATERMARK",
    "SIGNATURE_LEN",
    "SIGNED_PREKEY_ROTATION",
    "KemPreKey",
    "OneTimePreKey",
    "PreKeyBundle",
    "PrivatePreKey",
    "Sign",
    "SignedPreKey",
    "Verify",
    "generate_kem_prekey",
    "generate_one_time_prekeys",
    "generate_signed_prekey",
    "one_time_prekeys_to_upload",
    "signed_prekey_due",
    "verify_bundle",
]

#: Version of the bundle wire form (the first element of the array).
BUNDLE_VERSION = 1
#: libsignal's type byte for Curve25519 public keys, the prefix of a signed prekey's message.
PREKEY_KEY_TYPE_DJB = 0x05
#: libsignal's KEM key-type byte for ML-KEM-1024 (``KeyType::MLKEM1024``; ``0x08`` is Kyber1024).
KEM_KEY_TYPE_MLKEM1024 = 0x0A
#: X25519 public keys: the 32-byte u-coordinate (RFC 7748 §5).
_EC_KEY_LEN = 32
#: Ed25519 and XEdDSA signatures are both 64 bytes.
SIGNATURE_LEN = 64
# Key ids are unsigned 32-bit, as libsignal's PreKeyId, SignedPreKeyId and KyberPreKeyId.
_MAX_KEY_ID = 2**32 - 1
_MAX_TIMESTAMP = 2**63 - 1
#: A bundle is about 1.8 KB (a 1568-byte KEM key dominates); refuse more before decoding it.
MAX_BUNDLE_LEN = 4096

# Upkeep, after Signal-Android's PreKeysSyncJob and PreKeyUtil: refill one-time prekeys when the
# server holds fewer than 10 (ONE_TIME_PREKEY_MINIMUM), 100 at a time (PreKeyUtil.BATCH_SIZE,
# also the Signal server's per-request cap).
#: Most one-time prekeys (EC or KEM) generated or uploaded at once.
MAX_ONE_TIME_PREKEYS_PER_UPLOAD = 100
#: Refill one-time prekeys when the server holds fewer than this many.
PREKEY_LOW_WATERMARK = 10
#: Signed (and last-resort KEM) prekey lifetime, in seconds. X3DH §3.2 suggests "once a week, or
#: once a month"; Signal-Android rotates every 2 days and forces it past 14. A week bounds what a
#: stolen signed prekey opens without a key upload every other day.
SIGNED_PREKEY_ROTATION = 7 * 24 * 60 * 60.0

#: ``verify(identity_key, message, signature) -> bool``: the identity key's signature check
#: (``tidings.e2e.keys``); injected so prekeys do not depend on the signature scheme.
Verify = Callable[[bytes, bytes, bytes], bool]
#: ``sign(message) -> 64-byte signature`` by the device's identity key.
Sign = Callable[[bytes], bytes]


def _invalid(reason: str) -> FrameError:
    return FrameError(ErrorCode.INVALID_FIELD, reason)


def _check_key_id(value: object) -> None:
    if type(value) is not int or not 0 <= value <= _MAX_KEY_ID:
        raise _invalid("key_id must be an integer in 0..2^32-1")


def _check_bytes(name: str, value: object, length: int) -> None:
    if type(value) is not bytes or len(value) != length:
        raise _invalid(f"{name} must be {length} bytes")


@dataclass(frozen=True, slots=True)
class SignedPreKey:
    """A signed X25519 prekey (X3DH §2.5 ``SPK``).

    Attributes:
        key_id: its id, 0..2^32-1.
        public: the 32-byte X25519 public key.
        signature: 64 bytes, the identity key's signature of :meth:`signed_message`.
        created_at: when it was generated, whole seconds since the epoch (drives rotation).

    Raises:
        FrameError: (``INVALID_FIELD``) on construction, if a field is out of range.
    """

    key_id: int
    public: bytes
    signature: bytes
    created_at: int

    def __post_init__(self) -> None:
        _check_key_id(self.key_id)
        _check_bytes("signed prekey", self.public, _EC_KEY_LEN)
        _check_bytes("signature", self.signature, SIGNATURE_LEN)
        if type(self.created_at) is not int or not 0 <= self.created_at <= _MAX_TIMESTAMP:
            raise _invalid("created_at must be an integer in 0..2^63-1")

    def signed_message(self) -> bytes:
        """The signed bytes: ``0x05 ‖ public`` (libsignal's serialized public key)."""
        return bytes([PREKEY_KEY_TYPE_DJB]) + self.public


@dataclass(frozen=True, slots=True)
class OneTimePreKey:
    """An unsigned one-time X25519 prekey (X3DH §2.5 ``OPK``).

    Raises:
        FrameError: (``INVALID_FIELD``) on construction, if a field is out of range.
    """

    key_id: int
    public: bytes

    def __post_init__(self) -> None:
        _check_key_id(self.key_id)
        _check_bytes("one-time prekey", self.public, _EC_KEY_LEN)


@dataclass(frozen=True, slots=True)
class KemPreKey:
    """A signed ML-KEM-1024 prekey (PQXDH §2.5 ``PQSPK`` or ``PQOPK``).

    Attributes:
        key_id: its id, 0..2^32-1.
        public: the 1568-byte ML-KEM-1024 public key; must pass the FIPS 203 modulus check.
        signature: 64 bytes, the identity key's signature of :meth:`signed_message`.
        last_resort: whether it is the reusable last-resort key; unsigned, advisory only.

    Raises:
        FrameError: (``INVALID_FIELD``) on construction, if a field is out of range.
        ConfigError: this ``cryptography`` build has no ML-KEM-1024.
    """

    key_id: int
    public: bytes
    signature: bytes
    last_resort: bool

    def __post_init__(self) -> None:
        _check_key_id(self.key_id)
        _check_bytes("kem prekey", self.public, KEM_PUBLIC_KEY_LEN)
        _check_bytes("signature", self.signature, SIGNATURE_LEN)
        if type(self.last_resort) is not bool:
            raise _invalid("last_resort must be a boolean")
        try:
            check_kem_public_key(self.public)
        except ValueError as exc:
            raise _invalid("kem prekey is not a valid ML-KEM-1024 key") from exc

    def signed_message(self) -> bytes:
        """The signed bytes: ``0x0A ‖ public`` (libsignal's serialized ML-KEM-1024 key)."""
        return bytes([KEM_KEY_TYPE_MLKEM1024]) + self.public


@dataclass(frozen=True, slots=True)
class PreKeyBundle:
    """What a sender fetches to start a PQXDH session with one device (PQXDH §3.3).

    Construction checks shapes only; call :func:`verify_bundle` before using the keys.

    Attributes:
        identity_key: the device's 32-byte identity public key (X25519 form, ``e2e.keys``).
        signed_prekey: its current signed prekey.
        one_time_prekey: one of its one-time prekeys, or ``None`` when the server has run out.
        kem_prekey: a one-time KEM prekey, or the last-resort one.

    Raises:
        FrameError: (``INVALID_FIELD``) on construction, if a field has the wrong type or size.
    """

    identity_key: bytes
    signed_prekey: SignedPreKey
    one_time_prekey: OneTimePreKey | None
    kem_prekey: KemPreKey

    def __post_init__(self) -> None:
        _check_bytes("identity_key", self.identity_key, _EC_KEY_LEN)
        if type(self.signed_prekey) is not SignedPreKey:
            raise _invalid("signed_prekey must be a SignedPreKey")
        if self.one_time_prekey is not None and type(self.one_time_prekey) is not OneTimePreKey:
            raise _invalid("one_time_prekey must be a OneTimePreKey or None")
        if type(self.kem_prekey) is not KemPreKey:
            raise _invalid("kem_prekey must be a KemPreKey")

    def serialize(self) -> bytes:
        """The bundle's MessagePack wire form (see the module docstring)."""
        spk, otk, kem = self.signed_prekey, self.one_time_prekey, self.kem_prekey
        return msgpack.packb(
            [
                BUNDLE_VERSION,
                self.identity_key,
                [spk.key_id, spk.public, spk.signature, spk.created_at],
                None if otk is None else [otk.key_id, otk.public],
                [kem.key_id, kem.public, kem.signature, kem.last_resort],
            ],
            use_bin_type=True,
        )

    @classmethod
    def parse(cls, data: bytes) -> PreKeyBundle:
        """Parse a bundle from its wire form. Trailing bytes are refused.

        Raises:
            FrameError: the bytes are not a valid bundle: code ``FRAME_TOO_LARGE`` (over
                :data:`MAX_BUNDLE_LEN`), ``MALFORMED_FRAME`` (undecodable, wrong shape),
                ``UNSUPPORTED_VERSION`` or ``INVALID_FIELD``. Nothing else, whatever the bytes.
            ConfigError: this ``cryptography`` build has no ML-KEM-1024.
        """
        if len(data) > MAX_BUNDLE_LEN:
            raise FrameError(ErrorCode.FRAME_TOO_LARGE, "prekey bundle too large")
        try:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
        except Exception as exc:  # msgpack raises several unrelated types for garbage
            raise FrameError(ErrorCode.MALFORMED_FRAME, "undecodable prekey bundle") from exc
        if type(obj) is not list or not obj or type(obj[0]) is not int:
            raise FrameError(ErrorCode.MALFORMED_FRAME, "a prekey bundle is [version, ...]")
        if obj[0] != BUNDLE_VERSION:
            raise FrameError(ErrorCode.UNSUPPORTED_VERSION, f"prekey bundle version {obj[0]}")
        if len(obj) != 5:
            raise FrameError(ErrorCode.MALFORMED_FRAME, "prekey bundle has wrong field count")
        _, identity_key, spk, otk, kem = obj
        return cls(
            identity_key,
            SignedPreKey(*_fields(spk, 4)),
            None if otk is None else OneTimePreKey(*_fields(otk, 2)),
            KemPreKey(*_fields(kem, 4)),
        )


def _fields(value: object, count: int) -> list[Any]:
    if type(value) is not list or len(value) != count:
        raise FrameError(ErrorCode.MALFORMED_FRAME, f"a prekey is an array of {count}")
    return value


def verify_bundle(bundle: PreKeyBundle, verify: Verify) -> None:
    """Check both signatures of ``bundle`` against its identity key (PQXDH §3.3: "Alice
    verifies the signatures and aborts the protocol if verification fails").

    Whether the identity key itself is the one expected for this device is the caller's
    business (safety numbers, the account's device list).

    Args:
        verify: ``verify(identity_key, message, signature) -> bool``.

    Raises:
        RemoteProtocolError: (``INVALID_FIELD``) a signature does not verify.
    """
    spk, kem = bundle.signed_prekey, bundle.kem_prekey
    if not verify(bundle.identity_key, spk.signed_message(), spk.signature):
        raise RemoteProtocolError(ErrorCode.INVALID_FIELD, "bad signed prekey signature")
    if not verify(bundle.identity_key, kem.signed_message(), kem.signature):
        raise RemoteProtocolError(ErrorCode.INVALID_FIELD, "bad kem prekey signature")


# --- the device's side: generation and upkeep ---------------------------------------------

P = TypeVar("P", SignedPreKey, OneTimePreKey, KemPreKey)


@dataclass(frozen=True, slots=True)
class PrivatePreKey(Generic[P]):
    """A prekey with its private half, as the device that owns it stores it.

    Attributes:
        prekey: the public value (what is uploaded).
        private: the 32-byte X25519 private key, or for a :class:`KemPreKey` the 64-byte
            ML-KEM seed (see :mod:`.kem`).

    Raises:
        LocalProtocolError: (``INVALID_FIELD``) on construction, if ``private`` does not
            belong to ``prekey.public``.
    """

    prekey: P
    private: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if type(self.private) is not bytes or _public_of(self.prekey, self.private) is None:
            raise _local("private key does not match the prekey")


def _public_of(prekey: SignedPreKey | OneTimePreKey | KemPreKey, private: bytes) -> bytes | None:
    if isinstance(prekey, KemPreKey):
        if len(private) != KEM_SEED_LEN:
            return None
        public = kem_public_key(private)
    else:
        if len(private) != _EC_KEY_LEN:
            return None
        public = _x25519_public(private)
    return public if public == prekey.public else None


def _local(reason: str) -> LocalProtocolError:
    return LocalProtocolError(ErrorCode.INVALID_FIELD, reason)


def _draw(rng: Rng, n: int) -> bytes:
    data = rng(n)
    if type(data) is not bytes or len(data) != n:
        raise ValueError(f"rng({n}) must return {n} bytes")
    return data


def _x25519_public(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()


def _sign(sign: Sign, message: bytes) -> bytes:
    signature = sign(message)
    if type(signature) is not bytes or len(signature) != SIGNATURE_LEN:
        raise _local(f"sign() must return a {SIGNATURE_LEN}-byte signature")
    return signature


def generate_signed_prekey(
    key_id: int, sign: Sign, rng: Rng, now: float
) -> PrivatePreKey[SignedPreKey]:
    """A new signed prekey, its key from ``rng``, signed with ``sign``, dated ``now``.

    Args:
        key_id: its id, 0..2^32-1 (the caller keeps the counter).
        sign: the identity key's ``sign(message) -> 64-byte signature``.
        rng: randomness for the 32-byte private key.
        now: the current time in seconds since the epoch; stored rounded down.

    Raises:
        LocalProtocolError: a bad ``key_id`` or ``now``, or ``sign`` broke its contract.
        ValueError: ``rng`` broke its contract.
    """
    _check_local_id(key_id)
    if not (isinstance(now, int | float) and math.isfinite(now) and now >= 0):
        raise _local("now must be a finite, non-negative timestamp")
    private = _draw(rng, _EC_KEY_LEN)
    public = _x25519_public(private)
    signature = _sign(sign, bytes([PREKEY_KEY_TYPE_DJB]) + public)
    return PrivatePreKey(SignedPreKey(key_id, public, signature, int(now)), private)


def generate_one_time_prekeys(
    start_id: int, count: int, rng: Rng
) -> list[PrivatePreKey[OneTimePreKey]]:
    """``count`` new one-time prekeys with ids ``start_id, start_id + 1, …``.

    Raises:
        LocalProtocolError: ``count`` is not in 1..:data:`MAX_ONE_TIME_PREKEYS_PER_UPLOAD`, or
            the ids would pass 2^32-1 (the caller wraps its counter).
        ValueError: ``rng`` broke its contract.
    """
    if type(count) is not int or not 1 <= count <= MAX_ONE_TIME_PREKEYS_PER_UPLOAD:
        raise _local(f"count must be in 1..{MAX_ONE_TIME_PREKEYS_PER_UPLOAD}")
    _check_local_id(start_id)
    _check_local_id(start_id + count - 1)
    keys = []
    for key_id in range(start_id, start_id + count):
        private = _draw(rng, _EC_KEY_LEN)
        keys.append(PrivatePreKey(OneTimePreKey(key_id, _x25519_public(private)), private))
    return keys


def generate_kem_prekey(
    key_id: int, sign: Sign, rng: Rng, last_resort: bool
) -> PrivatePreKey[KemPreKey]:
    """A new signed ML-KEM-1024 prekey, its 64-byte seed from ``rng``.

    Raises:
        LocalProtocolError: a bad ``key_id`` or ``last_resort``, or ``sign`` broke its contract.
        ValueError: ``rng`` broke its contract.
        ConfigError: this ``cryptography`` build has no ML-KEM-1024.
    """
    _check_local_id(key_id)
    if type(last_resort) is not bool:
        raise _local("last_resort must be a boolean")
    seed = _draw(rng, KEM_SEED_LEN)
    public = kem_public_key(seed)
    signature = _sign(sign, bytes([KEM_KEY_TYPE_MLKEM1024]) + public)
    return PrivatePreKey(KemPreKey(key_id, public, signature, last_resort), seed)


def _check_local_id(key_id: object) -> None:
    if type(key_id) is not int or not 0 <= key_id <= _MAX_KEY_ID:
        raise _local("key_id must be an integer in 0..2^32-1")


def signed_prekey_due(prekey: SignedPreKey, now: float) -> bool:
    """Whether ``prekey`` is :data:`SIGNED_PREKEY_ROTATION` old or more at ``now``.

    The same schedule suits the last-resort KEM prekey; its age is the caller's record.
    """
    return now - prekey.created_at >= SIGNED_PREKEY_ROTATION


def one_time_prekeys_to_upload(remaining: int) -> int:
    """How many one-time prekeys (EC or KEM) to generate when the server holds ``remaining``:
    a full batch below :data:`PREKEY_LOW_WATERMARK`, else none."""
    if remaining < PREKEY_LOW_WATERMARK:
        return MAX_ONE_TIME_PREKEYS_PER_UPLOAD
    return 0
