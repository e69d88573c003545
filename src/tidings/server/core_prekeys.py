"""The prekey rules of the relay's connection core: PREKEYS_UPLOAD, PREKEY_FETCH, PREKEYS_LOW
(DESIGN §3, issue 3). The limits and the frame they answer with are in :mod:`.prekeys`.

PREKEYS_UPLOAD stores the device's keys (its identity key never changes); PREKEY_FETCH takes a
bundle of another device's keys and has the target's live session told PREKEYS_LOW when the
fetch left it with few (:class:`~tidings.server.core_actions.NotifyPrekeysLow`). Both answer
REQUEST_FAILED on refusal, and on a store failure (the connection stays open).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import IntegrityError, Rule, StoreError, StoreUnavailable
from ..store import Device, DeviceRef, PreKey, PreKeyBundle, PreKeyCounts
from ..wire import ErrorCode, PrekeyFetch, PrekeysLow, PrekeysStored, PrekeysUpload
from .core_actions import (
    CountPrekeys,
    Failure,
    ListDevices,
    NotifyPrekeysLow,
    PutPrekeys,
    StoreTrouble,
    TakePrekeyBundle,
)
from .core_base import CoreBase, State
from .prekeys import MAX_STORED_PREKEYS, PREKEY_LOW_WATERMARK, bundle_frame

__all__ = ["PrekeyRules"]


class PrekeyRules(CoreBase):
    """The prekey handlers (a part of :class:`~tidings.server.core.RelayCore`)."""

    __slots__ = ("_account_created",)

    def _init_prekeys(self) -> None:
        self._account_created: float | None = None  # read on first need (with_account_age)

    def prekeys_low(self, counts: PreKeyCounts) -> None:
        """Tell this device PREKEYS_LOW if the relay holds fewer than the watermark of its
        one-time prekeys (of either kind)."""
        if self.state is State.OPEN and min(counts.one_time, counts.kem) < PREKEY_LOW_WATERMARK:
            self._send(PrekeysLow(counts.one_time, counts.kem))

    def with_account_age(self, then: Callable[[bool], None]) -> None:
        """``then(new)``: whether this connection's account gets the new-account budgets (it
        was created, its first device registered, less than ``new_account_age`` ago)."""
        assert self.device is not None
        if not self.config.new_account_age:
            then(False)
        elif self._account_created is not None:
            then(self.limits.is_new(self._account_created, self.now))
        else:

            def created(devices: list[Device]) -> None:
                times = [d.created_at for d in devices]
                self._account_created = min(times, default=self.now)
                then(self.limits.is_new(self._account_created, self.now))

            self._ask(ListDevices(self.device.account), created, block=True)

    # ---------------------------------------------------------------- PREKEYS_UPLOAD

    def _handle_prekeys_upload(self, frame: PrekeysUpload) -> None:
        assert self.device is not None
        device, rid = self.device, frame.request_id
        kem = [PreKey(k.key_id, k.public, k.signature, k.last_resort) for k in frame.kem_prekeys]
        one_time = [PreKey(k.key_id, k.public) for k in frame.one_time]

        def held(counts: PreKeyCounts | None) -> None:
            held = counts or PreKeyCounts(0, 0)
            new_kem = sum(not k.last_resort for k in kem)
            if max(held.one_time + len(one_time), held.kem + new_kem) > MAX_STORED_PREKEYS:
                reason = f"at most {MAX_STORED_PREKEYS} one-time prekeys of each kind are kept"
                self.request_failed(rid, ErrorCode.INVALID_FIELD, reason)
                return
            s = frame.signed_prekey
            op = PutPrekeys(
                device,
                frame.identity_key,
                PreKey(s.key_id, s.public, s.signature),
                one_time,
                kem,
                self.now,
            )
            self._ask(op, stored, self._prekey_error(rid, "upload"), block=True)

        def stored(counts: PreKeyCounts) -> None:
            self._log(f"= prekeys of {device}: {counts.one_time} one-time, {counts.kem} kem")
            self._send(PrekeysStored(rid, counts.one_time, counts.kem))

        self._ask(CountPrekeys(device), held, self._prekey_error(rid, "upload"), block=True)

    # ---------------------------------------------------------------- PREKEY_FETCH

    def _handle_prekey_fetch(self, frame: PrekeyFetch) -> None:
        assert self.device is not None
        device, rid = self.device, frame.request_id
        target = DeviceRef(frame.account, frame.device_id)
        on_error = self._prekey_error(rid, "fetch")

        def aged(new: bool) -> None:
            limits = self.limits
            retry_after = limits.prekey_fetch(device, target, self.peer_ip, new, self.mono)
            if retry_after > 0:
                reason = "prekey fetch rate limit"
                self.request_failed(rid, ErrorCode.RATE_LIMITED, reason, retry_after)
                return
            self._ask(ListDevices(frame.account), listed, on_error, block=True)

        def listed(devices: list[Device]) -> None:
            if all(d.ref != target for d in devices):
                self.request_failed(rid, ErrorCode.NO_SUCH_ACCOUNT, f"no device {target}")
                return
            one_time = self.limits.one_time_prekeys(target, self.mono)

            def taken(bundle: PreKeyBundle | None) -> None:
                if bundle is not None or one_time:
                    self._bundle(frame, target, bundle, None)
                    return

                def then(counts: PreKeyCounts | None) -> None:
                    self._bundle(frame, target, None, counts)

                self._ask(CountPrekeys(target), then, on_error, block=True)

            op = TakePrekeyBundle(target, self.now, one_time)
            self._ask(op, taken, on_error, block=True)

        self.with_account_age(aged)

    def _bundle(
        self,
        frame: PrekeyFetch,
        target: DeviceRef,
        bundle: PreKeyBundle | None,
        counts: PreKeyCounts | None,
    ) -> None:
        rid = frame.request_id
        if bundle is None and counts is not None and counts.kem:
            # The device's one-time budget is spent and it has no last-resort KEM prekey to hand
            # out in their place: the fetch waits for the budget instead.
            reason = f"one-time prekeys of {target} rate limited"
            wait = self.limits.one_time_wait(target, self.mono)
            self.request_failed(rid, ErrorCode.RATE_LIMITED, reason, wait)
            return
        if bundle is None:
            self.request_failed(rid, ErrorCode.NO_PREKEYS, f"{target} has no prekeys")
            return
        self._send(bundle_frame(frame, bundle))
        self._actions.append(NotifyPrekeysLow(target, bundle.left))

    # ---------------------------------------------------------------- store failures

    def _prekey_error(self, request_id: int, what: str) -> Callable[[Exception], None]:
        """A prekey request's store failure: REQUEST_FAILED, the connection stays."""

        def failed(exc: Exception) -> None:
            if isinstance(exc, IntegrityError):
                if exc.rule is not Rule.IDENTITY_KEY_CHANGED:
                    raise exc  # a bug: INTERNAL, and close
                reason = "identity key changed: re-register the device"
                self.request_failed(request_id, ErrorCode.INVALID_FIELD, reason)
            elif isinstance(exc, StoreUnavailable):  # logged by the relay, once per interval
                self._actions.append(StoreTrouble(exc))
                reason = "store unavailable; retry later"
                code = ErrorCode.STORE_UNAVAILABLE
                self.request_failed(request_id, code, reason, self.store_retry_after)
            elif isinstance(exc, StoreError):
                self._actions.append(Failure(f"! store failed a prekey {what}", exc))
                self.request_failed(request_id, ErrorCode.INTERNAL, "store failure; retry")
            else:
                raise exc

        return failed
