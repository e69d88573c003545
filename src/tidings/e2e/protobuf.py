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


def fixed64_field(number: int, value: int) -> bytes:
    """A fixed64 field (8 bytes, little-endian)."""
    return varint(number << 3 | FIXED64) + value.to_bytes(8, "little")


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


def decode(data: bytes, keep_fixed: bool = False) -> Fields:
    """Field number → value (the last occurrence wins, as in protobuf); fixed fields skipped,
    or with ``keep_fixed`` read as unsigned little-endian integers (a certificate's expiry).

    Raises:
        ProtobufError: truncated data or an unsupported wire type.
    """
    # Every message of a catch-up passes here twice: one-byte varints (every key and length
    # below 128) are read inline, the rest by read_varint, with the same rules.
    fields: Fields = {}
    pos, end = 0, len(data)
    while pos < end:
        key = data[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == VARINT:
            if pos < end and data[pos] < 0x80:
                fields[number] = data[pos]
                pos += 1
            else:
                fields[number], pos = read_varint(data, pos)
        elif wire_type == LEN:
            if pos < end and data[pos] < 0x80:
                length = data[pos]
                pos += 1
            else:
                length, pos = read_varint(data, pos)
            if pos + length > end:
                raise ProtobufError("truncated length-delimited field")
            fields[number], pos = data[pos : pos + length], pos + length
        elif wire_type == FIXED32 and pos + 4 <= end:
            if keep_fixed:
                fields[number] = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        elif wire_type == FIXED64 and pos + 8 <= end:
            if keep_fixed:
                fields[number] = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        else:
            raise ProtobufError(f"unsupported or truncated wire type {wire_type}")
    return fields


def field_span(data: bytes, wanted: int, pos: int = 0) -> tuple[int, int, int] | None:
    """Where the first occurrence of length-delimited field ``wanted`` is in the message at
    ``data[pos:]``: ``(tag, start, end)``, its tag's offset and its value's bounds in
    ``data``; ``None`` if it is absent, has another wire type, or the message is not well
    formed up to it."""
    end = len(data)
    try:
        while pos < end:
            tag = pos
            key = data[pos]
            if key < 0x80:  # one-byte varints inline, as in decode()
                pos += 1
            else:
                key, pos = read_varint(data, pos)
            number, wire_type = key >> 3, key & 7
            if wire_type == VARINT:
                _, pos = read_varint(data, pos)
            elif wire_type == LEN:
                if pos < end and data[pos] < 0x80:
                    length = data[pos]
                    pos += 1
                else:
                    length, pos = read_varint(data, pos)
                if pos + length > end:
                    return None
                if number == wanted:
                    return tag, pos, pos + length
                pos += length
            elif wire_type in (FIXED32, FIXED64):
                pos += 4 if wire_type == FIXED32 else 8
            else:
                return None
            if number == wanted:
                return None  # another wire type
    except ProtobufError:
        return None
    return None
