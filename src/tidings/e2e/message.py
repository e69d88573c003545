"""The libsignal wire format, versions 3 and 4: WhisperMessage and PreKeyWhisperMessage.

Layout (libsignal-protocol-javascript ``WhisperTextProtocol.proto``; version 4 adds fields 7
and 8 as libsignal's ``wire.proto`` ``PreKeySignalMessage`` does)::

    WhisperMessage       = V || protobuf{ephemeralKey=1, counter=2, previousCounter=3,
                                         ciphertext=4} || mac[8]
    PreKeyWhisperMessage = V || protobuf{preKeyId=1, baseKey=2, identityKey=3,
                                         message=4 (a whole WhisperMessage, same V),
                                         registrationId=5, signedPreKeyId=6,
                                         kyberPreKeyId=7, kyberCiphertext=8}   (7, 8: v4 only)
    mac = HMAC-SHA256(macKey, senderIK33 || receiverIK33 || V || protobuf)[:8]

The version byte ``V`` is ``(version << 4) | version``: ``0x33`` for X3DH sessions (v3), ``0x44``
for PQXDH sessions (v4). The MAC covers it, so a message cannot be moved between versions.
In v4, ``kyberPreKeyId`` is the id of the KEM prekey used and ``kyberCiphertext`` is, as in
libsignal (``kem::Ciphertext::serialize``), the KEM key-type byte then the ciphertext:
``0x0A || ML-KEM-1024 ciphertext`` (1 + 1568 bytes), ``0x0A`` being our ML-KEM-1024 type byte
(`tidings.e2e.prekeys.KEM_KEY_TYPE_MLKEM1024`; libsignal's ``0x08`` is Kyber1024, which we do
not speak). A v4 PreKeyWhisperMessage without both fields, a v3 one with either, or a wrapped
message of another version is refused.

Why a hand-written protobuf codec: these are two small messages with fixed fields; the MAC
covers the exact bytes, and our output must be byte-identical to libsignal's (fields in number
order, every set field present), which the small varint/length-delimited codec in
:mod:`tidings.e2e.protobuf` (shared with the safety-number fingerprints) guarantees without
generated code or a protobuf dependency. The decoder accepts fields in any order and
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

from . import protobuf
from .kem import KEM_CIPHERTEXT_LEN
from .keys import PublicKey
from .prekeys import KEM_KEY_TYPE_MLKEM1024

__all__ = [
    "KEM_CIPHERTEXT_FIELD_LEN",
    "KNOWN_PREKEY_PARTS",
    "MAC_LEN",
    "VERSION_BYTE",
    "VERSION_BYTE_PQ",
    "PreKeyParser",
    "PreKeyWhisperMessage",
    "WhisperMessage",
    "compute_mac",
]

#: ``(version << 4) | version`` for libsignal v3 (X3DH sessions).
VERSION_BYTE = 0x33
#: ``(version << 4) | version`` for v4 (PQXDH sessions), as libsignal writes it.
VERSION_BYTE_PQ = 0x44
_VERSION_BYTES = {3: VERSION_BYTE, 4: VERSION_BYTE_PQ}
_VERSIONS = {byte: version for version, byte in _VERSION_BYTES.items()}
#: Length of ``kyberCiphertext``: the KEM type byte and the ML-KEM-1024 ciphertext.
KEM_CIPHERTEXT_FIELD_LEN = 1 + KEM_CIPHERTEXT_LEN
#: Length of the truncated HMAC-SHA256 at the end of a WhisperMessage.
MAC_LEN = 8

_UINT32_MAX = protobuf.UINT32_MAX

#: Prekey parts a :class:`PreKeyParser` remembers: an initiator repeats one in every message
#: until it hears back (a catch-up of 10,000 messages carries the same ~1.7 KiB 10,000 times),
#: and a session rebuilt meanwhile brings a second; a few entries of ~1.7 KiB each.
KNOWN_PREKEY_PARTS = 4


def compute_mac(
    mac_key: bytes, sender_ik: PublicKey, receiver_ik: PublicKey, body: bytes, version: int = 3
) -> bytes:
    """The 8-byte MAC over ``senderIK33 || receiverIK33 || V || body``."""
    version_byte = bytes([_VERSION_BYTES[version]])
    data = sender_ik.serialize() + receiver_ik.serialize() + version_byte + body
    return hmac.new(mac_key, data, sha256).digest()[:MAC_LEN]


def _version_of(data: bytes) -> int:
    """The version (3 or 4) of a serialized message, from its first byte.

    Raises:
        DecryptionError: empty, or an unknown version byte.
    """
    version = _VERSIONS.get(data[0]) if data else None
    if version is None:
        raise DecryptionError()
    return version


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
        version: 3 (X3DH session, ``0x33``) or 4 (PQXDH session, ``0x44``).
    """

    ratchet_key: PublicKey
    counter: int
    previous_counter: int
    ciphertext: bytes
    mac: bytes
    body: bytes = field(repr=False)
    version: int = 3

    def __post_init__(self) -> None:
        if self.version not in _VERSION_BYTES:
            raise ValueError("a message is of version 3 or 4")

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
        version: int = 3,
    ) -> WhisperMessage:
        """Encode the fields and MAC them with ``mac_key`` (sender's view of the identities)."""
        body = (
            _bytes_field(1, ratchet_key.serialize())
            + _varint_field(2, counter)
            + _varint_field(3, previous_counter)
            + _bytes_field(4, ciphertext)
        )
        mac = compute_mac(mac_key, sender_ik, receiver_ik, body, version)
        return cls(ratchet_key, counter, previous_counter, ciphertext, mac, body, version)

    def verify_mac(self, mac_key: bytes, sender_ik: PublicKey, receiver_ik: PublicKey) -> bool:
        """Whether the MAC is right, compared in constant time."""
        expected = compute_mac(mac_key, sender_ik, receiver_ik, self.body, self.version)
        return hmac.compare_digest(expected, self.mac)

    def serialize(self) -> bytes:
        """``V || body || mac``."""
        return bytes([_VERSION_BYTES[self.version]]) + self.body + self.mac

    @classmethod
    def parse(cls, data: bytes) -> WhisperMessage:
        """Parse a serialized WhisperMessage (the MAC is not checked here).

        Raises:
            DecryptionError: the bytes are not a version-3 or version-4 WhisperMessage.
        """
        version = _version_of(data)
        if len(data) < 1 + MAC_LEN:
            raise DecryptionError()
        body, mac = bytes(data[1:-MAC_LEN]), bytes(data[-MAC_LEN:])
        usual = _usual_whisper_fields(body)
        if usual is not None:
            key, counter, previous, ciphertext = usual
            try:
                return cls(PublicKey.parse(key), counter, previous, ciphertext, mac, body, version)
            except ValueError as exc:
                raise DecryptionError() from exc
        fields = _decode(body)
        try:
            return cls(
                ratchet_key=PublicKey.parse(_get_bytes(fields, 1)),
                counter=_get_int(fields, 2),
                previous_counter=_get_int(fields, 3),
                ciphertext=_get_bytes(fields, 4),
                mac=mac,
                body=body,
                version=version,
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
        message: the enclosed WhisperMessage; its version is the message's.
        kem_prekey_id: (v4) id of the KEM prekey encapsulated to, else ``None``.
        kem_ciphertext: (v4) the 1568-byte ML-KEM-1024 ciphertext (without the type byte),
            else ``None``.

    Raises:
        ValueError: on construction, if the KEM fields do not match the message's version.
    """

    registration_id: int
    prekey_id: int | None
    signed_prekey_id: int
    base_key: PublicKey
    identity_key: PublicKey
    message: WhisperMessage
    kem_prekey_id: int | None = None
    kem_ciphertext: bytes | None = None

    def __post_init__(self) -> None:
        has_kem = (self.kem_prekey_id is not None, self.kem_ciphertext is not None)
        if has_kem != (self.version == 4,) * 2:
            raise ValueError("a v4 message has both KEM fields, a v3 message neither")
        if self.kem_ciphertext is not None and len(self.kem_ciphertext) != KEM_CIPHERTEXT_LEN:
            raise ValueError(f"a KEM ciphertext is {KEM_CIPHERTEXT_LEN} bytes")

    @property
    def version(self) -> int:
        """3 (X3DH) or 4 (PQXDH): the enclosed message's version."""
        return self.message.version

    def serialize(self) -> bytes:
        """``V || protobuf`` with the fields in number order, as libsignal writes them."""
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
        if self.kem_prekey_id is not None and self.kem_ciphertext is not None:
            body += _varint_field(7, self.kem_prekey_id) + _bytes_field(
                8, bytes([KEM_KEY_TYPE_MLKEM1024]) + self.kem_ciphertext
            )
        return bytes([_VERSION_BYTES[self.version]]) + body

    @classmethod
    def parse(cls, data: bytes) -> PreKeyWhisperMessage:
        """Parse a serialized PreKeyWhisperMessage (no MAC is checked here).

        Raises:
            DecryptionError: the bytes are not a version-3 or version-4 PreKeyWhisperMessage.
        """
        version = _version_of(data)
        fields = _decode(bytes(data[1:]))
        kem_prekey_id = kem_ciphertext = None
        if version == 4:
            kem_prekey_id = _get_int(fields, 7)
            kem_ciphertext = _get_kem_ciphertext(fields)
        elif 7 in fields or 8 in fields:
            raise DecryptionError()
        try:
            message = cls(
                registration_id=_get_int(fields, 5),
                prekey_id=_get_int(fields, 1) if 1 in fields else None,
                signed_prekey_id=_get_int(fields, 6),
                base_key=PublicKey.parse(_get_bytes(fields, 2)),
                identity_key=PublicKey.parse(_get_bytes(fields, 3)),
                message=WhisperMessage.parse(_get_bytes(fields, 4)),
                kem_prekey_id=kem_prekey_id,
                kem_ciphertext=kem_ciphertext,
            )
        except ValueError as exc:  # a bad key, or an inner message of the other version
            raise DecryptionError() from exc
        return message


class PreKeyParser:
    """`PreKeyWhisperMessage.parse` that recognises a prekey part it parsed before.

    The *prekey part* is everything but the enclosed WhisperMessage (field 4): the version
    byte, the prekey ids, the base and identity keys, the KEM prekey id and its 1,569-byte
    ciphertext. A message whose prekey part is byte for byte one of the last
    :data:`KNOWN_PREKEY_PARTS` parsed reuses their parse (same bytes, same fields: the checks
    made on them hold), and only its WhisperMessage is parsed and checked; anything else is
    parsed in full. Either way the result is the one `PreKeyWhisperMessage.parse` gives.
    """

    def __init__(self) -> None:
        #: ``(before, after, parse)``: the bytes before the inner message's tag and after
        #: its value, and the full parse of a message made of them; newest last.
        self._known: list[tuple[bytes, bytes, PreKeyWhisperMessage]] = []

    def parse(self, data: bytes) -> PreKeyWhisperMessage:
        """Parse a serialized PreKeyWhisperMessage (no MAC is checked here).

        Raises:
            DecryptionError: the bytes are not a version-3 or version-4 PreKeyWhisperMessage.
        """
        span = protobuf.field_span(data, 4, 1)  # after the version byte
        if span is None:
            return PreKeyWhisperMessage.parse(data)
        tag, start, end = span
        after = len(data) - end
        for before_bytes, after_bytes, parsed in reversed(self._known):
            if (
                len(before_bytes) == tag
                and len(after_bytes) == after
                and data.startswith(before_bytes)
                and data.endswith(after_bytes)
            ):
                known = parsed
                break
        else:
            message = PreKeyWhisperMessage.parse(data)
            # Only a part whose fields do not include a second field 4 (which the full parse
            # would take instead) describes every message it is found in.
            if 4 not in _decode(bytes(data[end:])):
                self._known.append((data[:tag], data[end:], message))
                del self._known[:-KNOWN_PREKEY_PARTS]
            return message
        inner = WhisperMessage.parse(data[start:end])
        if inner.version != known.version:
            raise DecryptionError()
        return PreKeyWhisperMessage(
            known.registration_id,
            known.prekey_id,
            known.signed_prekey_id,
            known.base_key,
            known.identity_key,
            inner,
            known.kem_prekey_id,
            known.kem_ciphertext,
        )


def _usual_whisper_fields(body: bytes) -> tuple[bytes, int, int, bytes] | None:
    """``(ratchet key, counter, previous counter, ciphertext)`` of a WhisperMessage body in
    the layout every sender writes (fields 1–4 once each, in number order, a 33-byte key), or
    ``None`` for any other body, which the general decoder then reads (with the same result
    for a body this accepts)."""
    end = len(body)
    if end < 41 or body[0] != 0x0A or body[1] != 0x21 or body[35] != 0x10:
        return None
    try:
        counter, pos = protobuf.read_varint(body, 36)
        if pos >= end or body[pos] != 0x18:
            return None
        previous, pos = protobuf.read_varint(body, pos + 1)
        if pos >= end or body[pos] != 0x22:
            return None
        length, pos = protobuf.read_varint(body, pos + 1)
    except protobuf.ProtobufError:
        return None
    if pos + length != end or counter > _UINT32_MAX or previous > _UINT32_MAX:
        return None
    return body[2:35], counter, previous, body[pos:]


def _get_kem_ciphertext(fields: _Fields) -> bytes:
    """``kyberCiphertext`` without its type byte (which must be ML-KEM-1024's)."""
    value = _get_bytes(fields, 8)
    if len(value) != KEM_CIPHERTEXT_FIELD_LEN or value[0] != KEM_KEY_TYPE_MLKEM1024:
        raise DecryptionError()
    return value[1:]


# -- protobuf (tidings.e2e.protobuf), with every parse failure as the one DecryptionError ------

_Fields = protobuf.Fields
_varint_field = protobuf.uint32_field
_bytes_field = protobuf.bytes_field


def _decode(data: bytes) -> _Fields:
    try:
        return protobuf.decode(data)
    except protobuf.ProtobufError:
        raise DecryptionError() from None


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
