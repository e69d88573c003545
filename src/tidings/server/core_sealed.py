"""Sealed sender at the relay's connection core (docs/protocol.md §6.32–6.38, §14). A part of
:class:`~tidings.server.core.RelayCore`.

On an authenticated session: SENDER_CERT_REQUEST (a sender certificate for the device, for
the identity key it uploaded) and SET_ACCESS_KEY (the account's unidentified-access key,
replacing the stored one), both answered SENDER_CERT.

On an unidentified session only (§14.1: a sealed send on an authenticated session would tie
it to the device, so there it is UNEXPECTED_FRAME and a close): SEALED_SEND, stored by
``Store.submit_sealed`` without a sender and answered SEALED_SENT only after the commit (G1),
its items routed as SEND's are (live sessions, wake-ups, other nodes' hints: ``SendStored``).
On any session: TAG_QUERY, answered TAG_STATUS from ``Store.tag_states``.

Order of a SEALED_SEND's checks: payload sizes (PAYLOAD_TOO_LARGE), the budgets per (access
key, recipient) and per source address (RATE_LIMITED, :meth:`Limits.sealed_send`), then the
store's rules (ACCESS_DENIED, duplicate, DEVICE_MISMATCH, QUEUE_FULL).

Invariant: no log line of an unidentified session, and none about a sealed item, names a
sender (there is none to name: the session has no device, and the core logs no sealed send
but a store failure, which names nobody); the authenticated frames here log only the device,
as every other request does.
"""

from __future__ import annotations

from ..errors import IntegrityError, Rule, StoreError, StoreUnavailable
from ..store import (
    AccessDenied,
    DeviceMismatch,
    DeviceRef,
    QueueFull,
    SealedSubmission,
    SealedSubmitResult,
    Stored,
    TagState,
)
from ..wire import (
    ErrorCode,
    SealedSend,
    SealedSent,
    SenderCert,
    SenderCertRequest,
    SetAccessKey,
    TagQuery,
    TagStatus,
)
from .core_actions import (
    Failure,
    PutAccessKey,
    ReadIdentityKey,
    ReadTagStates,
    SealedCounted,
    SendRefused,
    SendStored,
    StoreTrouble,
)
from .core_base import INTERNAL_RETRY_AFTER, CoreBase

__all__ = ["SealedRules"]


class SealedRules(CoreBase):
    """The sealed-sender handlers (a part of :class:`~tidings.server.core.RelayCore`)."""

    __slots__ = ()

    def _handle_sender_cert_request(self, frame: SenderCertRequest) -> None:
        self._issue_certificate(frame.request_id)

    def _handle_set_access_key(self, frame: SetAccessKey) -> None:
        assert self.device is not None
        request_id = frame.request_id

        def refused(exc: Exception) -> None:
            if isinstance(exc, IntegrityError) and exc.rule is Rule.UNKNOWN_DEVICE:
                self.request_failed(request_id, ErrorCode.UNKNOWN_DEVICE, "no such device")
            else:
                self._request_store_failure(request_id, exc)

        op = PutAccessKey(self.device, frame.access_key)
        self._ask(op, lambda _: self._issue_certificate(request_id), refused, block=True)

    def _issue_certificate(self, request_id: int) -> None:
        device = self.device
        assert device is not None
        issuer = self.issuer
        if issuer is None:
            self.request_failed(request_id, ErrorCode.INTERNAL, "no sender certificates here")
            return

        def found(identity_key: bytes | None) -> None:
            if identity_key is None:
                reason = "upload your identity key (PREKEYS_UPLOAD) first"
                self.request_failed(request_id, ErrorCode.NO_PREKEYS, reason)
                return
            certificate, expires_at = issuer.issue(device, identity_key, self.now)
            self._log(f"= sender certificate for {device}")
            self._send(SenderCert(request_id, certificate, expires_at))

        def failed(exc: Exception) -> None:
            self._request_store_failure(request_id, exc)

        self._ask(ReadIdentityKey(device), found, failed, block=True)

    def _request_store_failure(self, request_id: int, exc: Exception) -> None:
        """REQUEST_FAILED for a store failure (STORE_UNAVAILABLE or INTERNAL)."""
        if isinstance(exc, StoreUnavailable):
            self._actions.append(StoreTrouble(exc))
            code = ErrorCode.STORE_UNAVAILABLE
            self.request_failed(request_id, code, "store unavailable", self.store_retry_after)
        elif isinstance(exc, StoreError):
            self._actions.append(Failure("! store failed a sealed-sender request", exc))
            self.request_failed(request_id, ErrorCode.INTERNAL, "store failure; retry")
        else:
            raise exc

    # ---------------------------------------------------------------- sealed sends

    def _handle_sealed_send(self, frame: SealedSend) -> None:
        limit = self.config.max_payload
        if any(len(device.payload) > limit for device in frame.devices):
            self._sealed_refused(frame, ErrorCode.PAYLOAD_TOO_LARGE, f"payload over {limit} bytes")
            return
        retry_after = self.limits.sealed_send(
            frame.access_key, frame.recipient, self.peer_ip, self.mono
        )
        if retry_after > 0:
            reason = "sealed send rate limit"
            self._sealed_refused(frame, ErrorCode.RATE_LIMITED, reason, retry_after=retry_after)
            return
        cfg, now, recipient = self.config, self.now, frame.recipient
        sub = SealedSubmission(
            tag=frame.tag,
            recipient=recipient,
            access_key=frame.access_key,
            payloads=tuple((DeviceRef(recipient, d.device_id), d.payload) for d in frame.devices),
            now=now,
            expires_at=now + cfg.retention_seconds,
            max_queue=cfg.max_queue,
            max_stranger_queue=cfg.max_stranger_queue,
        )
        # Not blocking, as SEND's commit: the sends of one read share it.
        self._ask(
            sub,
            lambda result: self._sealed_submitted(frame, result),
            lambda exc: self._sealed_failed(frame, exc),
            block=False,
        )

    def _sealed_submitted(self, frame: SealedSend, result: SealedSubmitResult) -> None:
        if isinstance(result, Stored):  # committed: only now the ✓ (G1)
            self._send(
                SealedSent(
                    frame.tag, frame.recipient, 0, result.stored_at, result.duplicate, "", 0.0
                )
            )
            self._actions.append(SendStored(result))
            self._actions.append(SealedCounted(0, result.duplicate))
        elif isinstance(result, AccessDenied):
            self._sealed_refused(frame, ErrorCode.ACCESS_DENIED, "no access")
        elif isinstance(result, DeviceMismatch):
            self._sealed_refused(
                frame,
                ErrorCode.DEVICE_MISMATCH,
                "device set is not current",
                missing=tuple(ref.device_id for ref in result.missing),
                stale=tuple(ref.device_id for ref in result.stale),
            )
        elif isinstance(result, QueueFull):
            self._sealed_refused(
                frame,
                ErrorCode.QUEUE_FULL,
                self._queue_full_reason(result, f"device {result.device.device_id}"),
                retry_after=self.queue_full_retry_after,
            )

    def _sealed_failed(self, frame: SealedSend, exc: Exception) -> None:
        if isinstance(exc, StoreUnavailable):  # logged by the relay, once per interval
            self._actions.append(StoreTrouble(exc))
            reason = "store unavailable; retry later"
            code = ErrorCode.STORE_UNAVAILABLE
            self._sealed_refused(frame, code, reason, retry_after=self.store_retry_after)
            return
        self._actions.append(Failure("! store failed a sealed send", exc))
        retry_after = INTERNAL_RETRY_AFTER
        self._sealed_refused(
            frame, ErrorCode.INTERNAL, "store failure; retry", retry_after=retry_after
        )

    def _sealed_refused(
        self,
        frame: SealedSend,
        code: ErrorCode,
        reason: str,
        *,
        missing: tuple[int, ...] = (),
        stale: tuple[int, ...] = (),
        retry_after: float = 0.0,
    ) -> None:
        self._actions.append(SendRefused(int(code)))
        self._actions.append(SealedCounted(int(code), False))
        self._send(
            SealedSent(
                frame.tag,
                frame.recipient,
                int(code),
                0.0,
                False,
                reason,
                retry_after,
                missing,
                stale,
            )
        )

    def _handle_tag_query(self, frame: TagQuery) -> None:
        request_id, tags = frame.request_id, frame.tags

        def found(states: list[TagState]) -> None:
            pairs = tuple((tag, int(state)) for tag, state in zip(tags, states, strict=True))
            self._send(TagStatus(request_id, pairs))

        def failed(exc: Exception) -> None:
            self._request_store_failure(request_id, exc)

        self._ask(ReadTagStates(tags), found, failed, block=True)
