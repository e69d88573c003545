"""The relay's side of one connection as a synchronous state machine (sans-I/O, pure time).

One :class:`RelayCore` per connection. It decides everything the relay's connection protocol
decides — which frames are legal when, REGISTER and its rate limit, HELLO and its cursor, the
delivery window, cumulative ACKs, SEND and MULTI_SEND and their answers, device lists, link
codes, prekeys, push subscriptions — and does none of it: no sockets, no asyncio, no store, no
clock. Three sources of input:

* the channel's reports: :meth:`handshake_done`, :meth:`receive_frame`, :meth:`connection_closed`;
* the store's answers to the commands the core gave: :meth:`stored`, :meth:`store_failed`;
* the relay's routing: :meth:`offer` (an item stored for this device), :meth:`prekeys_low`,
  :meth:`send_frame` (an unsolicited DEVICES).

Every input takes ``now`` (the relay's wall clock: times people see, retention) and ``mono`` (its
monotonic clock: rate limits) or runs at the time of the last one. After each input the adapter
drains :meth:`frames_to_send` (write them, in order), :meth:`store_commands` (run them on the
store, in order, and report each result) and :meth:`actions` (routing, logs, metrics, and last
the close). :meth:`next_deadline` is always ``None``: keepalive and the HELLO deadline are the
channel's.

States (the legal frames of each are the table :data:`ALLOWED`)::

    HANDSHAKE --Noise done--> EXPECT_HELLO --REGISTER--> REGISTERING --ok--> EXPECT_HELLO
                                          --HELLO-----> AUTHENTICATING --known key--> OPEN
    HANDSHAKE --NK done-----> UNIDENTIFIED (sealed frames only, never a device)
    any state --ERROR / violation / disconnect--> CLOSED

Delivery (DESIGN §5): after HELLO(cursor) the core streams DELIVER frames with seq above the
cursor, at most ``delivery_window`` unacknowledged at a time. ACK(seq) is cumulative; the items up
to it are deleted from the store. Items stored while the device is connected are pushed straight
from memory (:meth:`offer`) when they are next in line; otherwise the core reads them from the
store in pages. A send is answered SENT only after the store committed it (G1): SENT is the
continuation of the commit's result, there is no other path to it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any, ClassVar

from ..errors import IntegrityError, Rule
from ..store import (
    Device,
    DeviceRef,
    PreKeyCounts,
)
from ..wire import (
    PROTOCOL_VERSION,
    Devices,
    ErrorCode,
    Frame,
    FrameType,
    GetDevices,
    Hello,
    LinkCode,
    LinkCodeRequest,
    Ping,
    Pong,
    Register,
    Registered,
    Welcome,
)
from .config import ServerConfig
from .core_actions import (
    AckItems,
    AddDevice,
    AnnounceDevices,
    Attach,
    CountPrekeys,
    CreateAccount,
    ExpectAuth,
    GetDeviceByKey,
    ListDevices,
    PutLinkCode,
    ReadLastSeq,
    ReadQueueDepth,
)
from .core_base import ALLOWED, State
from .core_certs import CertRules
from .core_delivery import DeliveryRules, item_frame
from .core_devices import DeviceRules
from .core_multi import MultiSendRules
from .core_prekeys import PrekeyRules
from .core_push import PushRules
from .core_sealed import SealedRules
from .core_sealed_multi import SealedMultiRules
from .limits import Limits
from .sealed_certs import CertIssuer

__all__ = ["ALLOWED", "QUEUE_FULL_RETRY_AFTER", "RelayCore", "State", "item_frame"]

#: Seconds a sender is asked to wait when a recipient's queue is full.
QUEUE_FULL_RETRY_AFTER = 5.0


class RelayCore(
    DeliveryRules,
    MultiSendRules,
    PushRules,
    DeviceRules,
    CertRules,
    SealedRules,
    SealedMultiRules,
):
    """The connection protocol of one client connection (see the module docstring)."""

    __slots__ = ()

    def __init__(
        self,
        config: ServerConfig,
        limits: Limits,
        random_bytes: Callable[[int], bytes],
        *,
        store_retry_after: float,
        queue_full_retry_after: float = QUEUE_FULL_RETRY_AFTER,
        issuer: CertIssuer | None = None,
    ) -> None:
        super().__init__(
            config,
            limits,
            random_bytes,
            store_retry_after=store_retry_after,
            queue_full_retry_after=queue_full_retry_after,
            issuer=issuer,
        )
        self._init_stream()
        self._init_prekeys()

    # ---------------------------------------------------------------- inputs

    def handshake_done(
        self, noise_key: bytes, peer_ip: str | None, now: float, *, unidentified: bool = False
    ) -> None:
        """The Noise handshake authenticated the client's static key ``noise_key``; with
        ``unidentified`` it was an NK handshake (no client key): the session stays
        ``UNIDENTIFIED`` and may send only sealed frames (protocol §14)."""
        self.now = now
        self.noise_key = None if unidentified else noise_key
        self.peer_ip = peer_ip
        if self.state is State.HANDSHAKE:
            self.state = State.UNIDENTIFIED if unidentified else State.EXPECT_HELLO

    def receive_frame(self, frame: Frame, now: float, mono: float) -> None:
        """A frame from the client. Decided now, or after the decisions before it (in order)."""
        self.now, self.mono = now, mono
        self._receive(frame)

    def connection_closed(self) -> None:
        """The channel closed (either side, or the connection was lost): nothing more is sent."""
        self.state = State.CLOSED
        self._queue.clear()

    def send_frame(self, frame: Frame) -> None:
        """Send ``frame`` (unsolicited, e.g. DEVICES after a link) if the connection is open."""
        self._send(frame)

    # ---------------------------------------------------------------- registration

    def _handle_register(self, frame: Register) -> None:
        assert self.noise_key is not None
        if frame.version != PROTOCOL_VERSION:
            reason = f"server speaks v{PROTOCOL_VERSION}"
            self._violation(ErrorCode.UNSUPPORTED_VERSION, reason, FrameType.REGISTER)
            return
        retry_after = self.limits.register(self.peer_ip, self.mono)
        if retry_after > 0:
            # ERROR has no retry_after field: the wait goes in the reason, for the person.
            reason = (
                f"too many registrations from this address; retry in {math.ceil(retry_after)} s"
            )
            self._violation(ErrorCode.RATE_LIMITED, reason, FrameType.REGISTER)
            return
        self.state = State.REGISTERING
        if frame.link_code is None:
            op: CreateAccount | AddDevice = CreateAccount(
                frame.account, self.noise_key, frame.device_name, self.now
            )
        else:
            code_hash = hashlib.sha256(frame.link_code).digest()
            op = AddDevice(
                frame.account,
                self.noise_key,
                frame.device_name,
                code_hash,
                self.now,
                self.config.max_devices,
            )

        def registered(device: Device) -> None:
            self._log(f"= registered {device.ref}")
            self.state = State.EXPECT_HELLO
            if frame.link_code is None:
                self._registered(device.ref)
                return

            def announce(devices: list[Device]) -> None:  # before REGISTERED: the others first
                self._actions.append(
                    AnnounceDevices(frame.account, tuple(d.ref.device_id for d in devices))
                )
                self._registered(device.ref)

            self._ask(ListDevices(frame.account), announce, block=True)

        def refused(exc: Exception) -> None:
            if not isinstance(exc, IntegrityError):
                self._failed(exc)
                return
            code = {
                Rule.ACCOUNT_EXISTS: ErrorCode.ACCOUNT_EXISTS,
                Rule.KEY_ALREADY_REGISTERED: ErrorCode.KEY_ALREADY_REGISTERED,
                Rule.TOO_MANY_DEVICES: ErrorCode.TOO_MANY_DEVICES,
            }.get(exc.rule, ErrorCode.INVALID_LINK_CODE)
            self._violation(code, str(exc), FrameType.REGISTER)

        self._ask(op, registered, refused, block=True)

    def _registered(self, ref: DeviceRef) -> None:
        self._send(Registered(ref.account, ref.device_id))
        self._actions.append(ExpectAuth())  # HELLO is due within auth_timeout of REGISTERED

    def _handle_hello(self, frame: Hello) -> None:
        assert self.noise_key is not None
        if frame.version != PROTOCOL_VERSION:
            reason = f"server speaks v{PROTOCOL_VERSION}"
            self._violation(ErrorCode.UNSUPPORTED_VERSION, reason, FrameType.HELLO)
            return
        self.state = State.AUTHENTICATING
        cursor = frame.cursor

        def found(device: Device | None) -> None:
            if device is None:
                reason = "no device has this key; register first"
                self._violation(ErrorCode.UNKNOWN_DEVICE, reason, FrameType.HELLO)
                return
            ref = device.ref
            self._ask(ReadLastSeq(ref), lambda last: last_seq(ref, last), block=True)

        def last_seq(ref: DeviceRef, last: int) -> None:
            if cursor > last:
                # The device claims items that were never queued: trusting it would delete (or
                # skip) items it never stored. Refuse, and change nothing (G8).
                reason = f"cursor above the last seq ({last})"
                self._violation(ErrorCode.INVALID_ACK, reason, FrameType.HELLO)
                return
            self.device = ref
            self._acked = self._sent_upto = cursor
            if cursor:  # the store runs it before the depth is read
                self._ask(AckItems(ref, cursor), _ignore, block=True)
            self._ask(ReadQueueDepth(ref), lambda backlog: opened(ref, last, backlog), block=True)

        def opened(ref: DeviceRef, last: int, backlog: int) -> None:  # all of it past the cursor
            self.state = State.OPEN
            self._actions.append(Attach())
            cfg = self.config
            self._log(f"= open {ref} cursor={cursor}")
            self._send(
                Welcome(
                    ref.account,
                    ref.device_id,
                    self.now,
                    float(cfg.retention_seconds),
                    cfg.max_payload,
                    backlog,
                    last,
                )
            )
            self._backlog = True
            self._pump()
            self._ask(CountPrekeys(ref), counted, block=True)

        def counted(counts: PreKeyCounts | None) -> None:
            # Last seen is written when the connection ends (Session), not here: a connected
            # device shows as "connected now", and a write per connect would cost every
            # reconnect a commit (and every idle connection its pending write's memory).
            if counts is not None:  # a device that never uploaded prekeys is not nagged
                self.prekeys_low(counts)

        self._ask(GetDeviceByKey(self.noise_key), found, block=True)

    # ---------------------------------------------------------------- requests

    def _handle_ping(self, frame: Ping) -> None:
        self._send(Pong(frame.nonce))

    def _handle_link_code_request(self, frame: LinkCodeRequest) -> None:
        assert self.device is not None
        retry_after = self.limits.link_code(self.device.account, self.mono)
        if retry_after > 0:
            reason = "link code rate limit"
            self.request_failed(frame.request_id, ErrorCode.RATE_LIMITED, reason, retry_after)
            return
        code = self.random_bytes(16)
        expires_at = self.now + self.config.link_code_ttl
        op = PutLinkCode(self.device, hashlib.sha256(code).digest(), expires_at, self.now)
        answer = LinkCode(frame.request_id, code, expires_at)
        self._ask(op, lambda _: self._send(answer), block=True)

    def _handle_get_devices(self, frame: GetDevices) -> None:
        assert self.device is not None
        # A device asks for its own account's devices on every connect: that is no enumeration.
        if frame.account != self.device.account:
            retry_after = self.limits.lookup(self.device.account, self.peer_ip, self.mono)
            if retry_after > 0:
                reason = "device lookup rate limit"
                self.request_failed(frame.request_id, ErrorCode.RATE_LIMITED, reason, retry_after)
                return

        def listed(devices: list[Device]) -> None:
            ids = tuple(d.ref.device_id for d in devices)
            self._send(Devices(frame.request_id, frame.account, ids))

        self._ask(ListDevices(frame.account), listed, block=True)

    # ---------------------------------------------------------------- dispatch

    _HANDLERS: ClassVar[dict[FrameType, Callable[[RelayCore, Any], None]]] = {
        FrameType.REGISTER: _handle_register,
        FrameType.HELLO: _handle_hello,
        FrameType.PING: _handle_ping,
        FrameType.LINK_CODE_REQUEST: _handle_link_code_request,
        FrameType.GET_DEVICES: _handle_get_devices,
        FrameType.SEND: DeliveryRules._handle_send,
        FrameType.ACK: DeliveryRules._handle_ack,
        FrameType.PREKEYS_UPLOAD: PrekeyRules._handle_prekeys_upload,
        FrameType.PREKEY_FETCH: PrekeyRules._handle_prekey_fetch,
        FrameType.PUSH_REGISTER: PushRules._handle_push_register,
        FrameType.PUSH_UNREGISTER: PushRules._handle_push_unregister,
        FrameType.PUSH_QUERY: PushRules._handle_push_query,
        FrameType.UNLINK: DeviceRules._handle_unlink,
        FrameType.MULTI_SEND: MultiSendRules._handle_multi_send,
        FrameType.DEVICE_QUERY: CertRules._handle_device_query,
        FrameType.SENDER_CERT_REQUEST: SealedRules._handle_sender_cert_request,
        FrameType.SET_ACCESS_KEY: SealedRules._handle_set_access_key,
        FrameType.SEALED_SEND: SealedRules._handle_sealed_send,
        FrameType.TAG_QUERY: SealedRules._handle_tag_query,
        FrameType.SEALED_MULTI_SEND: SealedMultiRules._handle_sealed_multi_send,
    }

    def _decide(self, frame: Frame) -> None:
        self._HANDLERS[frame.TYPE](self, frame)


def _ignore(_: object) -> None:
    pass
