"""The libsignal v3 wire format: WhisperMessage and PreKeyWhisperMessage.

Layout (libsignal-protocol-javascript ``WhisperTextProtocol.proto``)::

    WhisperMessage       = 0x33 || protobuf{ephemeralKey=1, counter=2, previousCounter=3,
                                            ciphertext=4} || mac[8]
    PreKeyWhisperMessage = 0x33 || protobuf{preKeyId=1, baseKey=2, identityKey=3,
                                            message=4 (a whole WhisperMessage),
                                            registrationId=5, signedPreKeyId=6}
    mac = HMAC-SHA256(macKey, senderIK33 || receiverIK33 || 0x33 || protobuf)[:8]

The version byte is ``(3 << 4) | 3``: current and minimum version 3. Only version 3 is
accepted.

Why a hand-written protobuf codec: these are two small messages with fixed fields; the MAC
covers the exact bytes, and our output must be byte-identical to libsignal's (fields in number
order, every set field present), which a ~60-line varint/length-delimited codec guarantees
without generated code or a protobuf dependency. The decoder accepts fields in any order and
skips unknown ones, as protobuf requires, and keeps the received bytes for the MAC check.

Errors: `parse` raises only `tidings.errors.DecryptionError` for bytes that are not a valid
message (truncated, bad varint, wrong version, missing field, bad key encoding); the one error
keeps "unparseable" and "forged" indistinguishable to the caller's peers.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from hashlib import sha256

from tidings.errors import DecryptionError

from .keys import PublicKey

__all__ = ["MAC_LEN", "VERSION_BYTE", "PreKeyWhisperMessage", "WhisperMessage", "compute_mac"]

#: ``(current version << 4) | minimum version`` for libsignal v3.
VERSION_BYTE = 0x33
#: Length of the truncated HMAC-SHA256 at the end of a WhisperMessage.
MAC_LEN = 8

_VARINT, _LEN = 0, 2
_UINT32_MAX = 2**32 - 1
_MAX_VARINT_BYTES = 10


def compute_mac(mac_key: bytes, sender_ik: PublicKey, receiver_ik: PublicKey, body: bytes) -> bytes:
    """The 8-byte MAC over ``senderIK33 || receiverIK33 || 0x33 || body``."""
    data = sender_ik.serialize() + receiver_ik.serialize() + bytes([VERSION_BYTE]) + body
    return hmac.new(mac_key, data, sha256).digest()[:MAC_LEN]


@dataclass(frozen=True, slots=True)
class WhisperMessage:
    """A Double Ratchet message.

    Build one with `create` (which computes the MAC) or `parse`.

    Attributes:
        ratchet_key: the sender's current ratchet public key.
        counter: index of this message in the sender's sending chain.
        previous_counter: index of the last message of the sender's previous sending chain.
        ciphertext: AES-256-CBC ciphertext of the padded plaintext.
        mac: the 8-byte MAC.
        body: the protobuf bytes the MAC covers (as received, or as we encoded them).
    """

    ratchet_key: PublicKey
    counter: int
    previous_counter: int
    ciphertext: bytes
    mac: bytes
    body: bytes = field(repr=False)

    @classmethod
    def create(
        cls,
        *,
        ratchet_key: PublicKey,
        counter: int,
        previous_counter: int,
        ciphertext: bytes,
        mac_key: bytes,
        sender_ik: PublicKey,
        receiver_ik: PublicKey,
    ) -> WhisperMessage:
        """Encode the fields and MAC them with ``mac_key`` (sender's view of the identities)."""
        body = (
            _bytes_field(1, ratchet_key.serialize())
            + _varint_field(2, counter)
            + _varint_field(3, previous_counter)
            + _bytes_field(4, ciphertext)
        )
        mac = compute_mac(mac_key, sender_ik, receiver_ik, body)
        return cls(ratchet_key, counter, previous_counter, ciphertext, mac, body)

    def verify_mac(self, mac_key: bytes, sender_ik: PublicKey, receiver_ik: PublicKey) -> bool:
        """Whether the MAC is right, compared in constant time."""
        expected = compute_mac(mac_key, sender_ik, receiver_ik, self.body)
        return hmac.compare_digest(expected, self.mac)

    def serialize(self) -> bytes:
        """``0x33 || body || mac``."""
        return bytes([VERSION_BYTE]) + self.body + self.mac

    @classmethod
    def parse(cls, data: bytes) -> WhisperMessage:
        """Parse a serialized WhisperMessage (the MAC is not checked here).

        Raises:
            DecryptionError: the bytes are not a version-3 WhisperMessage.
        """
        if len(data) < 1 + MAC_LEN or data[0] != VERSION_BYTE:
            raise DecryptionError()
        body, mac = bytes(data[1:-MAC_LEN]), bytes(data[-MAC_LEN:])
        fields = _decode(body)
        try:
            return cls(
                ratchet_key=PublicKey.parse(_get_bytes(fields, 1)),
                counter=_get_int(fields, 2),
                previous_counter=_get_int(fields, 3),
                ciphertext=_get_bytes(fields, 4),
                mac=mac,
                body=body,
            )
        except ValueError as exc:
            raise DecryptionError() from exc


@dataclass(frozen=True, slots=True)
class PreKeyWhisperMessage:
    """The initiator's messages until it hears back: X3DH parameters around a WhisperMessage.

    Attributes:
        registration_id: the sender device's registration id.
        prekey_id: id of the one-time prekey used, or ``None``.
        signed_prekey_id: id of the signed prekey used.
        base_key: the initiator's base key ``EK_A``.
        identity_key: the initiator's identity key ``IK_A``.
        message: the enclosed WhisperMessage.
    """

    registration_id: int
    prekey_id: int | None
    signed_prekey_id: int
    base_key: PublicKey
    identity_key: PublicKey
    message: WhisperMessage

    def serialize(self) -> bytes:
        """``0x33 || protobuf`` with the fields in number order, as libsignal writes them."""
        body = b""
        if self.prekey_id is not None:
            body += _varint_field(1, self.prekey_id)
        body += (
            _bytes_field(2, self.base_key.serialize())
            + _bytes_field(3, self.identity_key.serialize())
            + _bytes_field(4, self.message.serialize())
            + _varint_field(5, self.registration_id)
            + _varint_field(6, self.signed_prekey_id)
        )
        return bytes([VERSION_BYTE]) + body

    @classmethod
    def parse(cls, data: bytes) -> PreKeyWhisperMessage:
        """Parse a serialized PreKeyWhisperMessage (no MAC is checked here).

        Raises:
            DecryptionError: the bytes are not a version-3 PreKeyWhisperMessage.
        """
        if len(data) < 1 or data[0] != VERSION_BYTE:
            raise DecryptionError()
        fields = _decode(bytes(data[1:]))
        try:
            return cls(
                registration_id=_get_int(fields, 5),
                prekey_id=_get_int(fields, 1) if 1 in fields else None,
                signed_prekey_id=_get_int(fields, 6),
                base_key=PublicKey.parse(_get_bytes(fields, 2)),
                identity_key=PublicKey.parse(_get_bytes(fields, 3)),
                message=WhisperMessage.parse(_get_bytes(fields, 4)),
            )
        except ValueError as exc:
            raise DecryptionError() from exc


# -- a minimal protobuf codec (varint and length-delimited fields only) -------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varint_field(number: int, value: int) -> bytes:
    if not 0 <= value <= _UINT32_MAX:
        raise ValueError("a uint32 field is between 0 and 2**32 - 1")
    return _varint(number << 3 | _VARINT) + _varint(value)


def _bytes_field(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | _LEN) + _varint(len(value)) + value


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise DecryptionError()
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise DecryptionError()


_Fields = dict[int, int | bytes]


def _decode(data: bytes) -> _Fields:
    """Field number -> value (the last occurrence wins, as in protobuf); unknown types rejected."""
    fields: _Fields = {}
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            fields[number], pos = _read_varint(data, pos)
        elif wire_type == _LEN:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise DecryptionError()
            fields[number], pos = data[pos : pos + length], pos + length
        elif wire_type == 5 and pos + 4 <= len(data):  # fixed32: skip
            pos += 4
        elif wire_type == 1 and pos + 8 <= len(data):  # fixed64: skip
            pos += 8
        else:
            raise DecryptionError()
    return fields


def _get_int(fields: _Fields, number: int) -> int:
    value = fields.get(number)
    if not isinstance(value, int) or value > _UINT32_MAX:
        raise DecryptionError()
    return value


def _get_bytes(fields: _Fields, number: int) -> bytes:
    value = fields.get(number)
    if not isinstance(value, bytes):
        raise DecryptionError()
    return value
