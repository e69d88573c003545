"""The few protocol-buffer rules libsignal's messages and fingerprints need, hand-written.

libsignal's WhisperMessage, PreKeyWhisperMessage and CombinedFingerprints are small fixed
messages whose bytes must match exactly; generated code and a protobuf dependency would buy
nothing. Only varint and length-delimited fields are written; reading also skips fixed32 and
fixed64 fields, as a protobuf parser ignores fields it does not know.
"""

from __future__ import annotations

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
UINT32_MAX = 2**32 - 1
#: A varint of a 64-bit value takes at most 10 bytes; a longer one is malformed.
MAX_VARINT_BYTES = 10

Fields = dict[int, int | bytes]


class ProtobufError(ValueError):
    """Bytes that are not a well-formed message. Callers translate it to their own error."""


#: The one-byte varints (0..127): field keys, small counters and ids, short lengths.
_ONE_BYTE = tuple(bytes((i,)) for i in range(0x80))


def varint(value: int) -> bytes:
    """``value`` as a base-128 varint."""
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]  # most varints of a message: no loop, no bytearray
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def uint32_field(number: int, value: int) -> bytes:
    """A uint32 field (varint wire type)."""
    if not 0 <= value <= UINT32_MAX:
        raise ValueError("a uint32 field is between 0 and 2**32 - 1")
    return varint(number << 3 | VARINT) + varint(value)


def bytes_field(number: int, value: bytes) -> bytes:
    """A length-delimited field."""
    return varint(number << 3 | LEN) + varint(len(value)) + value


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it.

    Raises:
        ProtobufError: truncated or longer than :data:`MAX_VARINT_BYTES`.
    """
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise ProtobufError("overlong varint")


def decode(data: bytes) -> Fields:
    """Field number → value (the last occurrence wins, as in protobuf); fixed fields skipped.

    Raises:
        ProtobufError: truncated data or an unsupported wire type.
    """
    fields: Fields = {}
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            fields[number], pos = read_varint(data, pos)
        elif wire_type == LEN:
            length, pos = read_varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError("truncated length-delimited field")
            fields[number], pos = data[pos : pos + length], pos + length
        elif wire_type == FIXED32 and pos + 4 <= len(data):
            pos += 4
        elif wire_type == FIXED64 and pos + 8 <= len(data):
            pos += 8
        else:
            raise ProtobufError(f"unsupported or truncated wire type {wire_type}")
    return fields
