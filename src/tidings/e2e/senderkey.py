"""Sender keys: a group message encrypted once for every member device (libsignal's
GroupCipher, message version 3).

Each sender device keeps, per group (its *distribution id*), a **chain**: a chain id, a chain
key that ratchets forward once per message, and a signing key pair. It gives every member
device the chain's current position in a :class:`~.senderkey_wire.SenderKeyDistributionMessage`
over their pairwise session; then each group message is one
:class:`~.senderkey_wire.SenderKeyMessage`, which the relay fans out unchanged.

Key schedule (as libsignal's ``sender_keys.rs``)::

    message key seed = HMAC-SHA256(chain key, 0x01)
    next chain key   = HMAC-SHA256(chain key, 0x02)
    HKDF-SHA256(salt = none, ikm = seed, info = "WhisperGroup", 48) = iv (16) || key (32)
    ciphertext = AES-256-CBC(key, iv, PKCS#7(plaintext)); signed with XEdDSA by the chain's key

Sans-I/O: randomness is injected (``rng``); states serialize to bytes for the store
(:meth:`SenderKeyRecord.serialize`, our own protobuf layout, after libsignal's
``SenderKeyRecordStructure``). A record holds the :data:`MAX_STATES` newest chains of one
sender device and distribution id (a rotation starts a new chain; messages of the old one still
in flight decrypt). Limits, as libsignal's: :data:`MAX_FORWARD_JUMP` messages skipped at once,
:data:`MAX_CACHED_KEYS` skipped keys kept per chain.

Errors: peer input that fails raises :class:`~tidings.errors.DecryptionError`;
:class:`NoSenderKeyError` (a DecryptionError) when no chain of the message is held — the case
where the receiver must ask the sender for its distribution message; :class:`DuplicateMessage`
when the message key was already used.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import DecryptionError
from . import protobuf
from .keys import IdentityKeyPair, PublicKey
from .senderkey_wire import (
    DISTRIBUTION_ID_LEN,
    SENDER_KEY_VERSION,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
)
from .xeddsa import verify

__all__ = [
    "MAX_CACHED_KEYS",
    "MAX_FORWARD_JUMP",
    "MAX_STATES",
    "DuplicateMessage",
    "NoSenderKeyError",
    "SenderKeyRecord",
    "SenderKeyState",
    "group_decrypt",
    "group_encrypt",
    "new_distribution",
    "process_distribution",
    "rotate",
]

#: Chains kept per sender device and group: a few rotations' messages still in flight decrypt.
MAX_STATES = 5
#: Messages a sender may be ahead of us by: further is an attack on our CPU, not a gap.
MAX_FORWARD_JUMP = 25_000
#: Skipped message keys kept per chain for messages that arrive late.
MAX_CACHED_KEYS = 2_000
_INFO = b"WhisperGroup"

Rng = Callable[[int], bytes]


class NoSenderKeyError(DecryptionError):
    """No chain of this message's sender device and chain id is held: ask for its
    distribution message."""


class DuplicateMessage(DecryptionError):
    """This message's key was used already (a replay or a duplicate delivery)."""


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, hashlib.sha256)


def _message_key(seed: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=48, salt=None, info=_INFO).derive(seed)
    return okm[:16], okm[16:]


@dataclass(frozen=True, slots=True)
class SenderKeyState:
    """One chain of one sender device: where it stands, its signing key (the private half
    only on the sender's own device), and the keys of messages skipped over."""

    chain_id: int
    iteration: int
    chain_key: bytes
    signing_key: PublicKey
    signing_private: IdentityKeyPair | None = None
    skipped: tuple[tuple[int, bytes], ...] = ()  #: (iteration, message key seed), oldest first

    def advanced(self) -> SenderKeyState:
        return replace(self, iteration=self.iteration + 1, chain_key=_hmac(self.chain_key, b"\x02"))

    @property
    def seed(self) -> bytes:
        return _hmac(self.chain_key, b"\x01")

    def distribution(self, distribution_id: bytes) -> SenderKeyDistributionMessage:
        return SenderKeyDistributionMessage(
            distribution_id, self.chain_id, self.iteration, self.chain_key, self.signing_key
        )


@dataclass(frozen=True, slots=True)
class SenderKeyRecord:
    """The chains of one (sender device, distribution id), newest first."""

    states: tuple[SenderKeyState, ...] = ()

    def state(self, chain_id: int) -> SenderKeyState | None:
        return next((s for s in self.states if s.chain_id == chain_id), None)

    def with_state(self, state: SenderKeyState) -> SenderKeyRecord:
        """``state`` as the newest chain (replacing one with its id), at most MAX_STATES."""
        others = tuple(s for s in self.states if s.chain_id != state.chain_id)
        return SenderKeyRecord(((state, *others))[:MAX_STATES])

    def replaced(self, state: SenderKeyState) -> SenderKeyRecord:
        """``state`` in place of the chain with its id (its position kept)."""
        return SenderKeyRecord(
            tuple(state if s.chain_id == state.chain_id else s for s in self.states)
        )

    def serialize(self) -> bytes:
        out = []
        for s in self.states:
            skipped = b"".join(
                protobuf.bytes_field(4, protobuf.uint32_field(1, i) + protobuf.bytes_field(2, seed))
                for i, seed in s.skipped
            )
            signing = protobuf.bytes_field(1, s.signing_key.serialize())
            if s.signing_private is not None:
                signing += protobuf.bytes_field(2, s.signing_private.seed)
            body = (
                protobuf.uint32_field(1, s.chain_id)
                + protobuf.bytes_field(
                    2, protobuf.uint32_field(1, s.iteration) + protobuf.bytes_field(2, s.chain_key)
                )
                + protobuf.bytes_field(3, signing)
                + skipped
                + protobuf.uint32_field(5, SENDER_KEY_VERSION)
            )
            out.append(protobuf.bytes_field(1, body))
        return b"".join(out)

    @classmethod
    def parse(cls, data: bytes) -> SenderKeyRecord:
        """Raises ``ValueError`` for bytes :meth:`serialize` did not write."""
        try:
            return cls(tuple(_parse_state(body) for body in _repeated(data, 1)))
        except (protobuf.ProtobufError, ValueError) as exc:
            raise ValueError(f"not a sender key record: {exc}") from None


def _repeated(data: bytes, number: int) -> list[bytes]:
    """Every length-delimited field ``number`` of a message, in order."""
    out, pos = [], 0
    while (span := protobuf.field_span(data, number, pos)) is not None:
        _, start, end = span
        out.append(data[start:end])
        pos = end
    return out


def _get(fields: protobuf.Fields, number: int, kind: type[int] | type[bytes]) -> Any:
    value = fields.get(number)
    if not isinstance(value, kind):
        raise ValueError(f"field {number} missing or of another type")
    return value


def _parse_state(body: bytes) -> SenderKeyState:
    fields = protobuf.decode(body)
    chain = protobuf.decode(_get(fields, 2, bytes))
    signing = protobuf.decode(_get(fields, 3, bytes))
    private = signing.get(2)
    skipped = []
    for entry in _repeated(body, 4):
        f = protobuf.decode(entry)
        skipped.append((_get(f, 1, int), _get(f, 2, bytes)))
    return SenderKeyState(
        _get(fields, 1, int),
        int(chain.get(1, 0)),
        _get(chain, 2, bytes),
        PublicKey.parse(_get(signing, 1, bytes)),
        IdentityKeyPair(private) if isinstance(private, bytes) else None,
        tuple(skipped),
    )


# ----------------------------------------------------------------------------- the cipher


def new_distribution(
    record: SenderKeyRecord, distribution_id: bytes, rng: Rng
) -> tuple[SenderKeyRecord, SenderKeyDistributionMessage]:
    """Our own chain for a group: the current one's distribution message, or (none yet, or
    :func:`rotate`) a new chain: random chain id (31 bits, as libsignal), chain key and
    signing key."""
    if len(distribution_id) != DISTRIBUTION_ID_LEN:
        raise ValueError("a distribution id is 16 bytes (a UUID)")
    own = next((s for s in record.states if s.signing_private is not None), None)
    if own is not None:
        return record, own.distribution(distribution_id)
    chain_id = int.from_bytes(rng(4), "big") >> 1
    chain_key = rng(32)
    signing = IdentityKeyPair.generate(rng)
    state = SenderKeyState(chain_id, 0, chain_key, signing.public, signing)
    return SenderKeyRecord((state,)), state.distribution(distribution_id)


def rotate(record: SenderKeyRecord) -> SenderKeyRecord:
    """Retire our own chain (a member left or was removed): the next :func:`new_distribution`
    starts a new one, which only the members it is given can read."""
    return SenderKeyRecord(tuple(s for s in record.states if s.signing_private is None))


def process_distribution(
    record: SenderKeyRecord, message: SenderKeyDistributionMessage
) -> SenderKeyRecord:
    """Take a member's distribution message. The same chain again (same id and signing key)
    keeps what we hold of it — a replayed distribution cannot rewind the chain to reuse keys;
    a new one becomes the newest chain."""
    held = record.state(message.chain_id)
    if held is not None and held.signing_key == message.signing_key:
        return record.with_state(held)
    state = SenderKeyState(
        message.chain_id, message.iteration, message.chain_key, message.signing_key
    )
    return record.with_state(state)


def group_encrypt(
    record: SenderKeyRecord, distribution_id: bytes, plaintext: bytes
) -> tuple[SenderKeyRecord, bytes]:
    """Encrypt with our newest own chain; the record moves one message on.

    Raises:
        ValueError: we have no chain of our own here (call :func:`new_distribution`).
    """
    state = next((s for s in record.states if s.signing_private is not None), None)
    if state is None or state.signing_private is None:
        raise ValueError("no sender key of ours for this group: make a distribution first")
    iv, key = _message_key(state.seed)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    unsigned = SenderKeyMessage.unsigned(
        distribution_id, state.chain_id, state.iteration, ciphertext
    )
    message = unsigned.with_signature(state.signing_private.sign(unsigned.signed))
    return record.replaced(state.advanced()), message.serialize()


def group_decrypt(record: SenderKeyRecord, data: bytes) -> tuple[SenderKeyRecord, bytes]:
    """Decrypt one group message of this record's sender device.

    Raises:
        NoSenderKeyError: no chain with the message's chain id (ask for a distribution).
        DuplicateMessage: its key was used already.
        DecryptionError: anything else wrong (bad signature, too far ahead, bad padding).
    """
    message = SenderKeyMessage.parse(data)
    state = record.state(message.chain_id)
    if state is None:
        raise NoSenderKeyError()
    if not verify(state.signing_key, message.signed, message.signature):
        raise DecryptionError()
    state, seed = _seed_for(state, message.iteration)
    iv, key = _message_key(seed)
    try:
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(message.ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        plaintext = unpadder.update(padded) + unpadder.finalize()
    except ValueError:  # not a whole number of blocks, or bad padding
        raise DecryptionError() from None
    return record.replaced(state), plaintext


def _seed_for(state: SenderKeyState, iteration: int) -> tuple[SenderKeyState, bytes]:
    """The message key seed of ``iteration``, and the state after using it."""
    if iteration < state.iteration:
        for position, (i, seed) in enumerate(state.skipped):
            if i == iteration:
                rest = state.skipped[:position] + state.skipped[position + 1 :]
                return replace(state, skipped=rest), seed
        raise DuplicateMessage()
    if iteration - state.iteration > MAX_FORWARD_JUMP:
        raise DecryptionError()
    skipped = list(state.skipped)
    while state.iteration < iteration:
        skipped.append((state.iteration, state.seed))
        state = state.advanced()
    seed = state.seed
    state = state.advanced()
    return replace(state, skipped=tuple(skipped[-MAX_CACHED_KEYS:])), seed
