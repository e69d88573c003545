"""Sender-key messages in libsignal's wire format: SenderKeyDistributionMessage and
SenderKeyMessage (message version 3).

Both are the version byte ``0x33`` followed by a protobuf body; a SenderKeyMessage is then
signed: 64 bytes of XEdDSA signature over the version byte and the body, by the sender device's
signing key for that chain. Fields (libsignal's ``wire.proto``)::

    SenderKeyDistributionMessage { bytes distribution_uuid = 1; uint32 chain_id = 2;
                                   uint32 iteration = 3; bytes chain_key = 4;
                                   bytes signing_key = 5; }     # 0x05 || 32-byte key
    SenderKeyMessage             { bytes distribution_uuid = 1; uint32 chain_id = 2;
                                   uint32 iteration = 3; bytes ciphertext = 4; }

Every field is written, ``iteration = 0`` too (libsignal writes proto2 optionals). Peer input
that does not parse raises :class:`~tidings.errors.DecryptionError`, with no detail.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DecryptionError
from . import protobuf
from .keys import PublicKey
from .xeddsa import SIGNATURE_LEN

__all__ = [
    "DISTRIBUTION_ID_LEN",
    "SENDER_KEY_VERSION",
    "SenderKeyDistributionMessage",
    "SenderKeyMessage",
]

#: libsignal's sender-key message version: 3, written as ``(3 << 4) | 3``.
SENDER_KEY_VERSION = 3
_VERSION_BYTE = bytes([(SENDER_KEY_VERSION << 4) | SENDER_KEY_VERSION])
#: A distribution id is a UUID: 16 bytes.
DISTRIBUTION_ID_LEN = 16
_CHAIN_KEY_LEN = 32


def _body(data: bytes, minimum: int) -> protobuf.Fields:
    if len(data) < 1 + minimum or data[0] >> 4 != SENDER_KEY_VERSION:
        raise DecryptionError()  # another version, or too short to be one
    try:
        return protobuf.decode(data[1:] if minimum == 0 else data[1:-minimum])
    except protobuf.ProtobufError:
        raise DecryptionError() from None


def _int(fields: protobuf.Fields, number: int) -> int:
    value = fields.get(number)
    if not isinstance(value, int) or value > protobuf.UINT32_MAX:
        raise DecryptionError()
    return value


def _bytes(fields: protobuf.Fields, number: int, length: int | None = None) -> bytes:
    value = fields.get(number)
    if not isinstance(value, bytes) or (length is not None and len(value) != length):
        raise DecryptionError()
    return value


@dataclass(frozen=True, slots=True)
class SenderKeyDistributionMessage:
    """What a sender device sends each member device over their pairwise session: the chain
    (its id, where it stands, its key) and the public key its messages are signed with."""

    distribution_id: bytes
    chain_id: int
    iteration: int
    chain_key: bytes
    signing_key: PublicKey

    def serialize(self) -> bytes:
        return _VERSION_BYTE + b"".join(
            (
                protobuf.bytes_field(1, self.distribution_id),
                protobuf.uint32_field(2, self.chain_id),
                protobuf.uint32_field(3, self.iteration),
                protobuf.bytes_field(4, self.chain_key),
                protobuf.bytes_field(5, self.signing_key.serialize()),
            )
        )

    @classmethod
    def parse(cls, data: bytes) -> SenderKeyDistributionMessage:
        """Raises :class:`DecryptionError` for anything that is not one."""
        fields = _body(data, 0)
        try:
            signing_key = PublicKey.parse(_bytes(fields, 5))
        except ValueError:
            raise DecryptionError() from None
        return cls(
            _bytes(fields, 1, DISTRIBUTION_ID_LEN),
            _int(fields, 2),
            _int(fields, 3),
            _bytes(fields, 4, _CHAIN_KEY_LEN),
            signing_key,
        )


@dataclass(frozen=True, slots=True)
class SenderKeyMessage:
    """One group message: encrypted once, for every member device that holds the chain.

    ``signed`` is the version byte and body the signature covers (as received, or as built by
    :meth:`unsigned`)."""

    distribution_id: bytes
    chain_id: int
    iteration: int
    ciphertext: bytes
    signature: bytes = b""
    signed: bytes = b""

    @classmethod
    def unsigned(
        cls, distribution_id: bytes, chain_id: int, iteration: int, ciphertext: bytes
    ) -> SenderKeyMessage:
        """The message before its signature (sign :attr:`signed`, then :meth:`with_signature`)."""
        signed = _VERSION_BYTE + b"".join(
            (
                protobuf.bytes_field(1, distribution_id),
                protobuf.uint32_field(2, chain_id),
                protobuf.uint32_field(3, iteration),
                protobuf.bytes_field(4, ciphertext),
            )
        )
        return cls(distribution_id, chain_id, iteration, ciphertext, b"", signed)

    def with_signature(self, signature: bytes) -> SenderKeyMessage:
        if len(signature) != SIGNATURE_LEN:
            raise ValueError("a signature is 64 bytes")
        return SenderKeyMessage(
            self.distribution_id,
            self.chain_id,
            self.iteration,
            self.ciphertext,
            signature,
            self.signed,
        )

    def serialize(self) -> bytes:
        if not self.signature:
            raise ValueError("sign the message first")
        return self.signed + self.signature

    @classmethod
    def parse(cls, data: bytes) -> SenderKeyMessage:
        """Raises :class:`DecryptionError` for anything that is not one (the signature is
        checked later, against the chain's key)."""
        fields = _body(data, SIGNATURE_LEN)
        return cls(
            _bytes(fields, 1, DISTRIBUTION_ID_LEN),
            _int(fields, 2),
            _int(fields, 3),
            _bytes(fields, 4),
            data[-SIGNATURE_LEN:],
            data[:-SIGNATURE_LEN],
        )
