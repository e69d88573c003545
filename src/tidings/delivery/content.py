"""The content codec: what one client says to another inside the server's opaque payloads.

The server relays payloads it cannot read (DESIGN §5, G6). Inside them, clients speak this
format. End-to-end encryption (``tidings.e2e``) will wrap these bytes later; this module knows
nothing of it, so either can change without the other.

Layout: one MessagePack array, ``[version, kind, *fields]``::

    MESSAGE        [1, 1, conversation: str, counter: int, sent_at: float, body: bin
                          (, expires_in: int)]   (the last only when the message disappears)
    RECEIPT        [1, 2, receipt_kind: int, [message_id: bin16, ...], at: float]
    RESEND         [1, 3, message_id: bin16, message: bin]   (a MESSAGE's bytes, sent again)
    RETRY_REQUEST  [1, 4, account: str, device_id: int, [message_id: bin16, ...]]
    TIMER          [1, 5, conversation: str, seconds: int, set_at: float]
    DEVICE_INFO    [1, 7, name: str (, link_proof: bin40)]   (to the sender's own account: what
                          its devices call it; a linked device adds its link proof, protocol §6.31)
    HISTORY        [1, 6, for_device, archive_id, part, parts, entries]   (content_history)
    GROUP_CHANGE, SENDER_KEY, GROUP_MESSAGE, GROUP_KEY_REQUEST, GROUP_SYNC   [1, 8..12, ...]
                          (content_groups)
    PROFILE_KEY    [1, 13, profile_key: bin32, generation, created_at, device]   (content_profile:
                          the account's profile key, to a contact or an own device; sealed sender)

A MESSAGE with ``expires_in`` disappears that many seconds after it was displayed (received) or
sent (sent), on every device (issue 13). A TIMER sets a conversation's disappearing-messages
timer for what its members send from then on (``seconds`` 0: off); concurrent settings resolve
deterministically, the latest ``(set_at, sender account, sender device)`` winning everywhere.

RESEND carries a message again under its original id, after the recipient device could not
decrypt it (the relay deduplicates by id, so the resend travels under a new one). A
RETRY_REQUEST asks device ``account.device_id`` to do that for the named messages; it is the one
content sent without end-to-end encryption (the session it would use is the broken one), so it
carries nothing but ids, as Signal's DecryptionErrorMessage.

Invariants:

* An instance is valid or cannot be built: every field is checked in ``__post_init__``.
* :func:`parse_content` returns a valid instance or raises :class:`ContentError`, whatever the
  bytes (a peer is never trusted; G8). Trailing bytes, unknown versions, unknown kinds, wrong
  field counts or types, and values out of range are all refused.
* ``parse_content(c.serialize()) == c`` for every valid ``c``; timestamps travel as float64.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import msgpack

from ..e2e.certificate import LINK_PROOF_LEN
from ..errors import RemoteProtocolError
from ..wire import MAX_PAYLOAD, MESSAGE_ID_LEN, ErrorCode, check_account

__all__ = [
    "CONTENT_VERSION",
    "MAX_BODY",
    "MAX_CONTENT",
    "MAX_CONVERSATION",
    "MAX_RECEIPT_IDS",
    "MAX_TIMER",
    "Content",
    "ContentError",
    "ContentKind",
    "DeviceInfo",
    "Message",
    "Receipt",
    "ReceiptKind",
    "Resend",
    "RetryRequest",
    "Timer",
    "direct_conversation",
    "direct_members",
    "parse_content",
]

#: Version of the content format, first element of every content array.
CONTENT_VERSION = 1

#: Largest serialized content: it must fit in one payload, so nothing larger can ever be sent.
MAX_CONTENT = MAX_PAYLOAD

#: Largest message body. Leaves 4 KiB of the payload for the content header and the end-to-end
#: envelope that will wrap it (ratchet header, sealed-sender certificate, AEAD tags).
MAX_BODY = MAX_PAYLOAD - 4096

#: Longest conversation id, in bytes of UTF-8. A 1:1 id is at most 2 * 32 + 1 = 65 bytes; the
#: rest is room for group ids (a later issue).
MAX_CONVERSATION = 128

#: Most message ids in one receipt: 256 * 18 bytes stays far below a payload, and a client
#: catching up on thousands of messages sends a handful of receipts, not thousands.
MAX_RECEIPT_IDS = 256

#: Longest disappearing-messages timer: four weeks, Signal's longest preset; a longer one is
#: not "disappearing" in any sense a user would rely on.
MAX_TIMER = 28 * 24 * 3600

_U63 = (1 << 63) - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # never let a peer put terminal escapes in an id


class ContentError(RemoteProtocolError):
    """Bytes from a peer that are not valid content (code ``MALFORMED_FRAME``).

    Also raised when building an instance with invalid values: values come from the peer in
    :func:`parse_content`, and local code never builds invalid content on purpose.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(ErrorCode.MALFORMED_FRAME, reason)


class ContentKind(enum.IntEnum):
    """Content kinds (stable: never renumber)."""

    MESSAGE = 1
    RECEIPT = 2
    RESEND = 3
    RETRY_REQUEST = 4
    TIMER = 5
    HISTORY = 6  #: :mod:`.content_history`
    DEVICE_INFO = 7
    GROUP_CHANGE = 8  #: :mod:`.content_groups`
    SENDER_KEY = 9
    GROUP_MESSAGE = 10
    GROUP_KEY_REQUEST = 11
    GROUP_SYNC = 12
    PROFILE_KEY = 13  #: :mod:`.content_profile`


class ReceiptKind(enum.IntEnum):
    """What a receipt confirms (stable: never renumber)."""

    DELIVERED = 1  #: the device decrypted the message and committed it to its store (✓✓)
    READ = 2  #: the message was displayed to the user


def _check_counter(value: object) -> None:
    if type(value) is not int or not 1 <= value <= _U63:
        raise ContentError("counter must be an integer in 1..2^63-1")


def _check_time(name: str, value: object) -> None:
    if type(value) not in (int, float) or not 0 <= value < 1e12:  # type: ignore[operator]
        raise ContentError(f"{name} must be a timestamp in seconds")


def _check_conversation(value: object) -> None:
    if type(value) is not str or not value or _CONTROL.search(value):
        raise ContentError("conversation must be a non-empty string without control characters")
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise ContentError("conversation must be valid unicode") from None
    if size > MAX_CONVERSATION:
        raise ContentError(f"conversation must be at most {MAX_CONVERSATION} bytes")


@dataclass(frozen=True, slots=True)
class Message:
    """A message from one device to a conversation.

    Attributes:
        conversation: the conversation id; for 1:1 see :func:`direct_conversation`.
        counter: the sending device's counter in this conversation, from 1, without gaps (G4).
        sent_at: when the sender composed it (sender's clock, seconds since the epoch).
        body: the message text or data, opaque to the delivery layer.
        expires_in: seconds after it was displayed (or sent) that every device deletes it;
            0: it does not disappear.
    """

    KIND: ClassVar[ContentKind] = ContentKind.MESSAGE
    conversation: str
    counter: int
    sent_at: float
    body: bytes
    expires_in: int = 0

    def __post_init__(self) -> None:
        _check_conversation(self.conversation)
        _check_counter(self.counter)
        _check_time("sent_at", self.sent_at)
        if type(self.body) is not bytes or len(self.body) > MAX_BODY:
            raise ContentError(f"body must be at most {MAX_BODY} bytes")
        _check_timer("expires_in", self.expires_in)

    def serialize(self) -> bytes:
        """The content bytes to hand to the end-to-end layer."""
        fields: list[Any] = [self.conversation, self.counter, float(self.sent_at), self.body]
        if self.expires_in:
            fields.append(self.expires_in)
        return _pack(self.KIND, fields)


def _check_timer(name: str, value: object) -> None:
    if type(value) is not int or not 0 <= value <= MAX_TIMER:
        raise ContentError(f"{name} must be whole seconds in 0..{MAX_TIMER}")


#: Longest device name, in bytes of UTF-8 (as REGISTER's ``device_name``).
MAX_DEVICE_NAME = 64


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device tells the other devices of its account its name ("Alice's laptop"): the
    relay keeps no names (G6), so the account's devices learn them end to end."""

    KIND: ClassVar[ContentKind] = ContentKind.DEVICE_INFO
    name: str
    #: a linked device's proof that it holds its link code's secret (``tidings.e2e.certificate``)
    link_proof: bytes | None = None

    def __post_init__(self) -> None:
        proof = self.link_proof
        if proof is not None and (type(proof) is not bytes or len(proof) != LINK_PROOF_LEN):
            raise ContentError(f"a link proof is {LINK_PROOF_LEN} bytes")
        if type(self.name) is not str or _CONTROL.search(self.name):
            raise ContentError("a device name is a string without control characters")
        try:
            size = len(self.name.encode())
        except UnicodeEncodeError:
            raise ContentError("a device name must be valid unicode") from None
        if size > MAX_DEVICE_NAME:
            raise ContentError(f"a device name is at most {MAX_DEVICE_NAME} bytes")

    def serialize(self) -> bytes:
        """The content bytes to hand to the end-to-end layer."""
        if self.link_proof is None:  # one encoding each: no proof is no field
            return _pack(self.KIND, [self.name])
        return _pack(self.KIND, [self.name, self.link_proof])


@dataclass(frozen=True, slots=True)
class Timer:
    """A member set the conversation's disappearing-messages timer (see the module docstring).

    Attributes:
        conversation: the conversation.
        seconds: how long what is sent from now on stays after it was displayed; 0: off.
        set_at: when it was set (the setter's clock): the later setting wins.
    """

    KIND: ClassVar[ContentKind] = ContentKind.TIMER
    conversation: str
    seconds: int
    set_at: float

    def __post_init__(self) -> None:
        _check_conversation(self.conversation)
        _check_timer("seconds", self.seconds)
        _check_time("set_at", self.set_at)

    def serialize(self) -> bytes:
        """The content bytes to hand to the end-to-end layer."""
        return _pack(self.KIND, [self.conversation, self.seconds, float(self.set_at)])


@dataclass(frozen=True, slots=True)
class Receipt:
    """A device's confirmation that it delivered (or displayed) messages it received.

    Attributes:
        kind: delivered or read.
        message_ids: the confirmed message ids: 1 to :data:`MAX_RECEIPT_IDS`, distinct.
        at: when it happened (the receiving device's clock).
    """

    KIND: ClassVar[ContentKind] = ContentKind.RECEIPT
    kind: ReceiptKind
    message_ids: tuple[bytes, ...]
    at: float

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ReceiptKind):
            raise ContentError("receipt kind must be a ReceiptKind")
        ids = self.message_ids
        if type(ids) is not tuple or not 1 <= len(ids) <= MAX_RECEIPT_IDS:
            raise ContentError(f"a receipt names 1..{MAX_RECEIPT_IDS} message ids")
        for message_id in ids:
            if type(message_id) is not bytes or len(message_id) != MESSAGE_ID_LEN:
                raise ContentError(f"message ids are {MESSAGE_ID_LEN} bytes")
        if len(set(ids)) != len(ids):
            raise ContentError("a receipt names a message id twice")
        _check_time("at", self.at)

    def serialize(self) -> bytes:
        """The content bytes to hand to the end-to-end layer."""
        return _pack(self.KIND, [int(self.kind), list(self.message_ids), float(self.at)])


@dataclass(frozen=True, slots=True)
class Resend:
    """A message sent again under its original id (see the module docstring).

    Attributes:
        message_id: the original message id (the one receipts name).
        message: the original message.
    """

    KIND: ClassVar[ContentKind] = ContentKind.RESEND
    message_id: bytes
    message: Message

    def __post_init__(self) -> None:
        if type(self.message_id) is not bytes or len(self.message_id) != MESSAGE_ID_LEN:
            raise ContentError(f"message ids are {MESSAGE_ID_LEN} bytes")
        if type(self.message) is not Message:
            raise ContentError("a resend carries a message")

    def serialize(self) -> bytes:
        """The content bytes to hand to the end-to-end layer."""
        return _pack(self.KIND, [self.message_id, self.message.serialize()])


@dataclass(frozen=True, slots=True)
class RetryRequest:
    """Device ``account.device_id`` is asked to send these messages again (unencrypted).

    Attributes:
        account: the account of the device asked (the sender of the messages).
        device_id: that device.
        message_ids: 1 to :data:`MAX_RECEIPT_IDS` distinct ids that did not decrypt.
    """

    KIND: ClassVar[ContentKind] = ContentKind.RETRY_REQUEST
    account: str
    device_id: int
    message_ids: tuple[bytes, ...]

    def __post_init__(self) -> None:
        try:
            check_account(self.account)
        except RemoteProtocolError:
            raise ContentError("a retry request names a valid account") from None
        if type(self.device_id) is not int or not 1 <= self.device_id <= _U63:
            raise ContentError("device_id must be an integer in 1..2^63-1")
        _check_ids(self.message_ids)

    def serialize(self) -> bytes:
        """The content bytes (sent as they are: see the module docstring)."""
        return _pack(self.KIND, [self.account, self.device_id, list(self.message_ids)])


def _check_ids(ids: object) -> None:
    if type(ids) is not tuple or not 1 <= len(ids) <= MAX_RECEIPT_IDS:
        raise ContentError(f"1..{MAX_RECEIPT_IDS} message ids")
    for message_id in ids:
        if type(message_id) is not bytes or len(message_id) != MESSAGE_ID_LEN:
            raise ContentError(f"message ids are {MESSAGE_ID_LEN} bytes")
    if len(set(ids)) != len(ids):
        raise ContentError("a message id is named twice")


def _pack(kind: ContentKind, fields: list[Any]) -> bytes:
    return msgpack.packb([CONTENT_VERSION, int(kind), *fields], use_bin_type=True)


# HISTORY lives in its own module, which builds on this one's checks: imported here, after
# everything it uses is defined (a circular import that resolves by order).
from .content_groups import GroupContent  # noqa: E402
from .content_history import History  # noqa: E402
from .content_profile import ProfileKey  # noqa: E402

Content = (
    Message
    | Receipt
    | Resend
    | RetryRequest
    | Timer
    | History
    | DeviceInfo
    | GroupContent
    | ProfileKey
)


def _message(fields: list[Any]) -> Message:
    if len(fields) == 5:
        conversation, counter, sent_at, body, expires_in = fields
        if expires_in == 0:  # the sender leaves it out: one encoding per message
            raise ContentError("a message that does not disappear has no expires_in")
        return Message(conversation, counter, sent_at, body, expires_in)
    conversation, counter, sent_at, body = fields
    return Message(conversation, counter, sent_at, body)


def _history(fields: list[Any]) -> Content:
    from .content_history import parse_history  # it builds on this module

    return parse_history(fields)


def _group(kind: ContentKind) -> Callable[[list[Any]], Content]:
    from .content_groups import parse_group_content  # it builds on this module

    return lambda fields: parse_group_content(kind, fields)


def _profile_key(fields: list[Any]) -> Content:
    from .content_profile import parse_profile_key  # it builds on this module

    return parse_profile_key(fields)


def _device_info(fields: list[Any]) -> DeviceInfo:
    if len(fields) == 2:
        name, proof = fields
        if proof is None:
            raise ContentError("a device info without a link proof has no link_proof field")
        return DeviceInfo(name, proof)
    (name,) = fields
    return DeviceInfo(name)


def _timer(fields: list[Any]) -> Timer:
    conversation, seconds, set_at = fields
    return Timer(conversation, seconds, set_at)


def _receipt(fields: list[Any]) -> Receipt:
    kind, ids, at = fields
    if type(kind) is not int or kind not in _RECEIPT_KINDS:
        raise ContentError(f"unknown receipt kind {kind!r}")
    if type(ids) is not list:
        raise ContentError("receipt message ids must be an array")
    return Receipt(ReceiptKind(kind), tuple(ids), at)


def _resend(fields: list[Any]) -> Resend:
    message_id, data = fields
    if type(data) is not bytes:
        raise ContentError("a resend carries a message's bytes")
    inner = parse_content(data)
    if not isinstance(inner, Message):
        raise ContentError("a resend carries a message")
    return Resend(message_id, inner)


def _retry_request(fields: list[Any]) -> RetryRequest:
    account, device_id, ids = fields
    if type(ids) is not list:
        raise ContentError("retry request message ids must be an array")
    return RetryRequest(account, device_id, tuple(ids))


_CONTENT_KINDS = frozenset(int(k) for k in ContentKind)
_RECEIPT_KINDS = frozenset(int(k) for k in ReceiptKind)
_PARSERS: dict[ContentKind, tuple[Callable[[list[Any]], Content], frozenset[int]]] = {
    ContentKind.MESSAGE: (_message, frozenset({4, 5})),
    ContentKind.RECEIPT: (_receipt, frozenset({3})),
    ContentKind.RESEND: (_resend, frozenset({2})),
    ContentKind.RETRY_REQUEST: (_retry_request, frozenset({3})),
    ContentKind.TIMER: (_timer, frozenset({3})),
    ContentKind.HISTORY: (_history, frozenset({5})),
    ContentKind.DEVICE_INFO: (_device_info, frozenset({1, 2})),
    ContentKind.GROUP_CHANGE: (_group(ContentKind.GROUP_CHANGE), frozenset({2})),
    ContentKind.SENDER_KEY: (_group(ContentKind.SENDER_KEY), frozenset({2})),
    ContentKind.GROUP_MESSAGE: (_group(ContentKind.GROUP_MESSAGE), frozenset({3})),
    ContentKind.GROUP_KEY_REQUEST: (_group(ContentKind.GROUP_KEY_REQUEST), frozenset({3})),
    ContentKind.GROUP_SYNC: (_group(ContentKind.GROUP_SYNC), frozenset({4})),
    ContentKind.PROFILE_KEY: (_profile_key, frozenset({4})),
}


def parse_content(data: bytes) -> Content:
    """Parse content bytes (the plaintext the end-to-end layer hands over).

    Raises:
        ContentError: the bytes are not valid content. Nothing else, whatever the bytes.
    """
    if len(data) > MAX_CONTENT:
        raise ContentError("content over the payload limit")
    try:
        obj = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise ContentError("undecodable content") from exc
    if type(obj) is not list or len(obj) < 2 or type(obj[0]) is not int:
        raise ContentError("content is an array [version, kind, ...]")
    if obj[0] != CONTENT_VERSION:
        raise ContentError(f"unsupported content version {obj[0]}")
    kind = obj[1]
    if type(kind) is not int or kind not in _CONTENT_KINDS:
        raise ContentError(f"unknown content kind {kind!r}")
    build, arities = _PARSERS[ContentKind(kind)]
    if len(obj) - 2 not in arities:
        raise ContentError(f"{ContentKind(kind).name} content has the wrong field count")
    return build(obj[2:])


def direct_conversation(a: str, b: str) -> str:
    """The conversation id of the 1:1 conversation between accounts ``a`` and ``b``.

    The two names sorted and joined with ``":"``, so both sides compute the same id. Account
    names cannot contain ``":"``, so the id is unambiguous. ``a == b`` is a note-to-self.

    Raises:
        FrameError: ``a`` or ``b`` is not a valid account name.
    """
    check_account(a)
    check_account(b)
    return ":".join(sorted((a, b)))


def direct_members(conversation: str) -> tuple[str, str]:
    """The two accounts of a 1:1 conversation id, sorted.

    Use it to check that the sender of a received message is a member of the conversation it
    names: the content is the sender's claim, not the server's.

    Raises:
        ContentError: ``conversation`` is not a 1:1 conversation id.
    """
    a, sep, b = conversation.partition(":")
    try:
        if sep and direct_conversation(a, b) == conversation:
            return a, b
    except RemoteProtocolError:
        pass
    raise ContentError("not a 1:1 conversation id")
