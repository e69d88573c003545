"""The lab resolver's answers: a tiny authoritative DNS server's logic, sans-I/O (RFC 1035).

:class:`Zone` knows a few names and their IPv4 addresses and answers one query datagram at a
time (:meth:`Zone.answer`: bytes in, bytes or nothing out), as the mode it is in says:

=============  =================================================================================
``answer``     the truth: an A record with the name's address (AAAA and other types: no data)
``servfail``   RCODE 2, SERVFAIL (a resolver whose upstream is broken)
``timeout``    no answer at all (a resolver that is down, or its packets lost)
``wrong``      an A record with :attr:`Zone.wrong` instead (a stale answer: the relay moved)
=============  =================================================================================

A name it does not know gets NXDOMAIN in every mode but ``timeout`` (the lab's namespaces have
no other resolver). Invariants: a datagram that is not a query it understands never raises: a
header too short to answer is dropped, anything else malformed gets FORMERR. Answers copy the
query's id, question and RD bit, set AA, and carry no additional records (an EDNS OPT in the
query is ignored: plain RFC 1035 answers are valid for every client).
"""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

__all__ = [
    "ANSWER_TTL",
    "MAX_DATAGRAM",
    "DnsFormatError",
    "Mode",
    "Query",
    "Zone",
    "build_query",
    "parse_query",
]

#: Seconds a client may cache an answer: one, so no cache outlives a fault window.
ANSWER_TTL = 1
#: The largest DNS message over UDP without EDNS (RFC 1035 §4.2.1); longer queries are refused.
MAX_DATAGRAM = 512
#: The longest name on the wire, in bytes (RFC 1035 §2.3.4).
MAX_NAME = 255

_HEADER = struct.Struct("!HHHHHH")
_QR, _AA, _RD = 0x8000, 0x0400, 0x0100
_NOERROR, _FORMERR, _SERVFAIL, _NXDOMAIN = 0, 1, 2, 3
_TYPE_A, _CLASS_IN = 1, 1


class Mode(Enum):
    """How the zone answers (see the module docstring)."""

    ANSWER = "answer"
    SERVFAIL = "servfail"
    TIMEOUT = "timeout"
    WRONG = "wrong"


class DnsFormatError(ValueError):
    """A datagram that is not a DNS query this server understands."""


@dataclass(frozen=True, slots=True)
class Query:
    """One parsed question (a query has exactly one)."""

    id: int
    flags: int
    name: str  #: lower-case, no trailing dot
    qtype: int
    qclass: int
    question: bytes  #: the question section as sent (copied into the answer)


def parse_query(data: bytes) -> Query:
    """Parse a query datagram. Raises :class:`DnsFormatError`."""
    if len(data) < _HEADER.size:
        raise DnsFormatError("shorter than a header")
    if len(data) > MAX_DATAGRAM:
        raise DnsFormatError(f"longer than {MAX_DATAGRAM} bytes")
    qid, flags, qdcount, ancount, nscount, _ = _HEADER.unpack_from(data)
    if flags & _QR or (flags >> 11) & 0xF != 0:
        raise DnsFormatError("not a standard query")
    if qdcount != 1 or ancount or nscount:
        raise DnsFormatError("a query has one question and no answers")
    labels, at = [], _HEADER.size
    while True:
        if at >= len(data):
            raise DnsFormatError("the name runs past the end")
        length = data[at]
        if length & 0xC0:
            raise DnsFormatError("a compressed or extended label in a question")
        at += 1
        if length == 0:
            break
        label = data[at : at + length]
        if len(label) != length:
            raise DnsFormatError("a label runs past the end")
        labels.append(label.decode("ascii", errors="replace").lower())
        at += length
    if at - _HEADER.size > MAX_NAME:
        raise DnsFormatError(f"a name longer than {MAX_NAME} bytes")
    if at + 4 > len(data):
        raise DnsFormatError("no type and class")
    qtype, qclass = struct.unpack_from("!HH", data, at)
    question = data[_HEADER.size : at + 4]
    return Query(qid, flags, ".".join(labels), qtype, qclass, question)


def build_query(name: str, qtype: int = _TYPE_A, qid: int = 1) -> bytes:
    """A recursive query for ``name`` (for tests and probes)."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    return _HEADER.pack(qid, _RD, 1, 0, 0, 0) + labels + b"\x00" + struct.pack("!HH", qtype, 1)


class Zone:
    """The names the lab resolver knows and the mode it answers in.

    Args:
        names: name → IPv4 address (names case-insensitive, without a trailing dot).
        wrong: the address a ``wrong`` answer gives for every known name.
    """

    def __init__(self, names: Mapping[str, str], wrong: str) -> None:
        self.names = {
            k.lower().rstrip("."): str(ipaddress.IPv4Address(v)) for k, v in names.items()
        }
        self.wrong = str(ipaddress.IPv4Address(wrong))
        self.mode = Mode.ANSWER
        #: queries seen, by the mode they met (``formerr`` for malformed ones)
        self.queries: Counter[str] = Counter()

    def answer(self, data: bytes) -> bytes | None:
        """The answer to one datagram, or None to stay silent (``timeout``, or no header)."""
        try:
            query = parse_query(data)
        except DnsFormatError:
            if len(data) < _HEADER.size:
                return None
            self.queries["formerr"] += 1
            qid, flags = struct.unpack_from("!HH", data)
            return _HEADER.pack(qid, _QR | (flags & _RD) | _FORMERR, 0, 0, 0, 0)
        self.queries[self.mode.value] += 1
        if self.mode is Mode.TIMEOUT:
            return None
        address = self.names.get(query.name)
        if address is None:
            return _reply(query, _NXDOMAIN)
        if self.mode is Mode.SERVFAIL:
            return _reply(query, _SERVFAIL)
        if query.qtype != _TYPE_A or query.qclass != _CLASS_IN:
            return _reply(query, _NOERROR)  # the name exists, with no data of that type
        if self.mode is Mode.WRONG:
            address = self.wrong
        return _reply(query, _NOERROR, address)


def _reply(query: Query, rcode: int, address: str | None = None) -> bytes:
    flags = _QR | _AA | (query.flags & _RD) | rcode
    head = _HEADER.pack(query.id, flags, 1, 1 if address else 0, 0, 0)
    if address is None:
        return head + query.question
    rdata = ipaddress.IPv4Address(address).packed
    # the answer's name is a pointer to the question's (offset 12, RFC 1035 §4.1.4)
    record = struct.pack("!HHHIH", 0xC00C, _TYPE_A, _CLASS_IN, ANSWER_TTL, len(rdata)) + rdata
    return head + query.question + record
