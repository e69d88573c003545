"""The sealed multi-recipient send at the relay's connection core: SEALED_MULTI_SEND and its
answer SEALED_MULTI_SENT (docs/protocol.md §6.39–6.40, §14.3). A part of
:class:`~tidings.server.core.RelayCore`.

Legal on an unidentified session only (the state table of :mod:`.core_base`): it is a sealed
send (:mod:`.core_sealed`) to several accounts at once, stored as a multi-send is
(:mod:`.core_multi`): the shared body once, a kind-3 item per device with no sender and the tag
as message id, delivered as ``part || shared``.

Order of the checks: ``part || shared`` within the payload limit (PAYLOAD_TOO_LARGE); the
budgets (RATE_LIMITED, :meth:`Limits.sealed_multi_send`: a token per (access key, recipient)
named and one from the source address, all or none); then the store's rules, in one
transaction (:class:`~tidings.store.SealedMultiSubmission`: every account's access key,
duplicate, device sets, queues). Each account refused ACCESS_DENIED costs the address one more
token afterwards (:meth:`Limits.sealed_denied`), so that a multi-send probes keys no faster
than SEALED_SENDs would.

Invariants: SEALED_MULTI_SENT code 0 is only ever the continuation of a commit's result (G1);
a refusal stores nothing; no log line names a sender (there is none) or the address.
"""

from __future__ import annotations

from ..errors import StoreUnavailable
from ..store import (
    DeviceRef,
    SealedMultiRefused,
    SealedMultiSubmission,
    SealedMultiSubmitResult,
    Stored,
)
from ..wire import AccountRefusal, ErrorCode, SealedMultiSend, SealedMultiSent
from .core_actions import Failure, SealedCounted, SendRefused, SendStored, StoreTrouble
from .core_base import INTERNAL_RETRY_AFTER, CoreBase

__all__ = ["SealedMultiRules"]


class SealedMultiRules(CoreBase):
    """The SEALED_MULTI_SEND handler (a part of :class:`~tidings.server.core.RelayCore`)."""

    __slots__ = ()

    def _handle_sealed_multi_send(self, frame: SealedMultiSend) -> None:
        limit = self.config.max_payload
        longest = max(len(d.part) for entry in frame.recipients for d in entry.devices)
        if len(frame.shared) + longest > limit:
            reason = f"part and shared ciphertext over {limit} bytes"
            self._refuse_sealed_multi(frame, ErrorCode.PAYLOAD_TOO_LARGE, reason)
            return
        pairs = [(e.access_key, e.account) for e in frame.recipients]
        retry_after = self.limits.sealed_multi_send(pairs, self.peer_ip, self.mono)
        if retry_after > 0:
            reason = "sealed send rate limit"
            code = ErrorCode.RATE_LIMITED
            self._refuse_sealed_multi(frame, code, reason, retry_after=retry_after)
            return
        cfg, now = self.config, self.now
        sub = SealedMultiSubmission(
            tag=frame.tag,
            shared=frame.shared,
            recipients=tuple(
                (
                    e.account,
                    e.access_key,
                    tuple((DeviceRef(e.account, d.device_id), d.part) for d in e.devices),
                )
                for e in frame.recipients
            ),
            now=now,
            expires_at=now + cfg.retention_seconds,
            max_queue=cfg.max_queue,
            max_stranger_queue=cfg.max_stranger_queue,
        )
        # Not blocking, as SEND's commit: the sends of one read share it.
        self._ask(
            sub,
            lambda result: self._sealed_multi_submitted(frame, result),
            lambda exc: self._sealed_multi_failed(frame, exc),
            block=False,
        )

    def _sealed_multi_submitted(
        self, frame: SealedMultiSend, result: SealedMultiSubmitResult
    ) -> None:
        if isinstance(result, Stored):  # committed: only now the ✓ (G1)
            answer = SealedMultiSent(frame.tag, 0, result.stored_at, result.duplicate, "", 0.0, ())
            self._send(answer)
            self._actions.append(SendStored(result))
            self._actions.append(SealedCounted(0, result.duplicate))
            return
        if result.denied:
            self.limits.sealed_denied(self.peer_ip, len(result.denied), self.mono)
        refusals = _refusals(frame, result)
        reason, retry_after = f"{len(refusals)} recipient accounts refused", 0.0
        if result.full is not None:
            retry_after = self.queue_full_retry_after
            reason = self._queue_full_reason(result.full, result.full.device)
        code = ErrorCode.RECIPIENTS_REFUSED
        self._refuse_sealed_multi(frame, code, reason, refusals=refusals, retry_after=retry_after)

    def _sealed_multi_failed(self, frame: SealedMultiSend, exc: Exception) -> None:
        if isinstance(exc, StoreUnavailable):  # logged by the relay, once per interval
            self._actions.append(StoreTrouble(exc))
            code, reason = ErrorCode.STORE_UNAVAILABLE, "store unavailable; retry later"
            self._refuse_sealed_multi(frame, code, reason, retry_after=self.store_retry_after)
            return
        self._actions.append(Failure("! store failed a sealed multi-send", exc))
        code, reason = ErrorCode.INTERNAL, "store failure; retry"
        self._refuse_sealed_multi(frame, code, reason, retry_after=INTERNAL_RETRY_AFTER)

    def _refuse_sealed_multi(
        self,
        frame: SealedMultiSend,
        code: ErrorCode,
        reason: str,
        *,
        refusals: tuple[AccountRefusal, ...] = (),
        retry_after: float = 0.0,
    ) -> None:
        self._actions.append(SendRefused(int(code)))
        self._actions.append(SealedCounted(int(code), False))
        self._send(SealedMultiSent(frame.tag, int(code), 0.0, False, reason, retry_after, refusals))


def _refusals(frame: SealedMultiSend, result: SealedMultiRefused) -> tuple[AccountRefusal, ...]:
    """The account refusals of ``result``, in the order of the send."""
    by_account = {
        account: AccountRefusal(account, int(ErrorCode.ACCESS_DENIED)) for account in result.denied
    }
    for account, mismatch in result.mismatches:
        by_account[account] = AccountRefusal(
            account,
            int(ErrorCode.DEVICE_MISMATCH),
            tuple(ref.device_id for ref in mismatch.missing),
            tuple(ref.device_id for ref in mismatch.stale),
        )
    if result.full is not None:
        account = result.full.device.account
        by_account[account] = AccountRefusal(account, int(ErrorCode.QUEUE_FULL))
    return tuple(by_account[e.account] for e in frame.recipients if e.account in by_account)
