"""The multi-recipient send of the relay's connection core: MULTI_SEND and its answer
MULTI_SENT (docs/protocol.md §6.27–6.28). A part of :class:`~tidings.server.core.RelayCore`.

Decided as SEND is (:mod:`.core_delivery`): the payload limit and the account's send rate
before the store; the device sets, queues and idempotency inside the store's one transaction
(:class:`~tidings.store.MultiSubmission`). Invariants:

* MULTI_SENT with code 0 is only ever the continuation of a commit's result
  (:class:`~tidings.store.Stored`), as SENT is (G1).
* A refusal stores nothing and names, in the order of the send, every recipient account whose
  device set is off or that does not exist (or the first device whose queue is full).
* A committed multi-send hands its items to the recipients' live sessions
  (:class:`~tidings.server.core_actions.SendStored`), as a SEND does: a device gets its part
  followed by the shared ciphertext (``InboxItem.body``).
"""

from __future__ import annotations

from ..errors import StoreUnavailable
from ..store import DeviceRef, MultiRefused, MultiSubmission, MultiSubmitResult, Stored
from ..wire import AccountRefusal, ErrorCode, MultiSend, MultiSent
from .core_actions import Failure, SendRefused, SendStored, StoreTrouble
from .core_prekeys import PrekeyRules

__all__ = ["MultiSendRules"]


class MultiSendRules(PrekeyRules):
    """The MULTI_SEND handler (a part of :class:`~tidings.server.core.RelayCore`)."""

    __slots__ = ()

    def _handle_multi_send(self, frame: MultiSend) -> None:
        assert self.device is not None
        limit = self.config.max_payload
        longest = max(len(d.part) for entry in frame.recipients for d in entry.devices)
        if len(frame.shared) + longest > limit:
            reason = f"part and shared ciphertext over {limit} bytes"
            self._refuse_multi(frame, ErrorCode.PAYLOAD_TOO_LARGE, reason)
            return
        self.with_account_age(lambda new: self._submit_multi(frame, new))

    def _submit_multi(self, frame: MultiSend, new: bool) -> None:
        assert self.device is not None
        retry_after = self.limits.send(self.device.account, new, self.mono)
        if retry_after > 0:
            code = ErrorCode.RATE_LIMITED
            self._refuse_multi(frame, code, "send rate limit", retry_after=retry_after)
            return
        cfg, now = self.config, self.now
        sub = MultiSubmission(
            sender=self.device,
            message_id=frame.message_id,
            shared=frame.shared,
            recipients=tuple(
                (e.account, tuple((DeviceRef(e.account, d.device_id), d.part) for d in e.devices))
                for e in frame.recipients
            ),
            now=now,
            expires_at=now + cfg.retention_seconds,
            max_queue=cfg.max_queue,
            max_stranger_queue=cfg.max_stranger_queue,
        )
        # Not blocking, as SEND: the frames after it are decided while it commits.
        self._ask(
            sub,
            lambda result: self._multi_submitted(frame, result),
            lambda exc: self._multi_failed(frame, exc),
            block=False,
        )

    def _multi_submitted(self, frame: MultiSend, result: MultiSubmitResult) -> None:
        if isinstance(result, Stored):  # committed: only now the ✓ (G1)
            self._send(
                MultiSent(
                    frame.request_id,
                    frame.message_id,
                    0,
                    result.stored_at,
                    result.duplicate,
                    "",
                    0.0,
                    (),
                )
            )
            self._actions.append(SendStored(result))
            return
        refusals = _refusals(frame, result)
        reason, retry_after = f"{len(refusals)} recipient accounts refused", 0.0
        if result.full is not None:
            retry_after = self.queue_full_retry_after
            reason = self._queue_full_reason(result.full, result.full.device)
        code = ErrorCode.RECIPIENTS_REFUSED
        self._refuse_multi(frame, code, reason, refusals=refusals, retry_after=retry_after)

    def _multi_failed(self, frame: MultiSend, exc: Exception) -> None:
        if isinstance(exc, StoreUnavailable):  # logged by the relay, once per interval
            self._actions.append(StoreTrouble(exc))
            code, reason = ErrorCode.STORE_UNAVAILABLE, "store unavailable; retry later"
            self._refuse_multi(frame, code, reason, retry_after=self.store_retry_after)
            return
        self._actions.append(Failure("! store failed a multi-send", exc))
        self._refuse_multi(frame, ErrorCode.INTERNAL, "store failure; retry", retry_after=1.0)

    def _refuse_multi(
        self,
        frame: MultiSend,
        code: ErrorCode,
        reason: str,
        *,
        refusals: tuple[AccountRefusal, ...] = (),
        retry_after: float = 0.0,
    ) -> None:
        self._actions.append(SendRefused(int(code)))
        answer = MultiSent(
            frame.request_id, frame.message_id, int(code), 0.0, False, reason, retry_after, refusals
        )
        self._send(answer)


def _refusals(frame: MultiSend, result: MultiRefused) -> tuple[AccountRefusal, ...]:
    """The account refusals of ``result``, in the order of the send."""
    by_account: dict[str, AccountRefusal] = {
        account: AccountRefusal(account, int(ErrorCode.NO_SUCH_ACCOUNT))
        for account in result.unknown
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
