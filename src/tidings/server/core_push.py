"""The push rules of the relay's connection core: PUSH_REGISTER, PUSH_UNREGISTER, PUSH_QUERY
(docs/protocol.md §6.22–6.25, §15). A part of :class:`~tidings.server.core.RelayCore`.

The core decides nothing about endpoints itself: it asks the relay's push sender
(:class:`~tidings.server.core_actions.RegisterPush` and the others, run in order with the store
commands), which checks the endpoint against the SSRF rules, stores the subscription and answers
how it stands. The core turns that into PUSH_STATUS, and a refusal or a failure into
REQUEST_FAILED (PUSH_REFUSED, STORE_UNAVAILABLE, INTERNAL): the connection stays open.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import StoreError, StoreUnavailable
from ..push.endpoint import EndpointRefused
from ..wire import ErrorCode, PushQuery, PushRegister, PushStatus, PushUnregister
from .core_actions import (
    Failure,
    PushInfo,
    PushOp,
    QueryPush,
    RegisterPush,
    StoreTrouble,
    UnregisterPush,
)
from .core_base import CoreBase

__all__ = ["PushRules"]


class PushRules(CoreBase):
    """The push handlers (a part of :class:`~tidings.server.core.RelayCore`)."""

    __slots__ = ()

    def _handle_push_register(self, frame: PushRegister) -> None:
        assert self.device is not None
        op = RegisterPush(self.device, frame.endpoint, frame.p256dh, frame.auth, self.now)
        self._ask_push(op, frame.request_id, limited=True)

    def _handle_push_unregister(self, frame: PushUnregister) -> None:
        assert self.device is not None
        self._ask_push(UnregisterPush(self.device), frame.request_id, limited=True)

    def _handle_push_query(self, frame: PushQuery) -> None:
        assert self.device is not None
        self._ask_push(QueryPush(self.device), frame.request_id, limited=False)

    def _ask_push(self, op: PushOp, request_id: int, *, limited: bool) -> None:
        """Ask the push sender; answer PUSH_STATUS or REQUEST_FAILED. A change (register,
        unregister) spends the device's budget: each costs a name lookup and a write."""
        assert self.device is not None
        retry_after = self.limits.push_request(self.device, self.mono) if limited else 0.0
        if retry_after > 0:
            reason = "push registration rate limit"
            self.request_failed(request_id, ErrorCode.RATE_LIMITED, reason, retry_after)
            return
        self._ask(op, self._push_status(request_id), self._push_error(request_id), block=True)

    def _push_status(self, request_id: int) -> Callable[[PushInfo], None]:
        def answer(info: PushInfo) -> None:
            self._send(PushStatus(request_id, info.vapid_key, int(info.state), info.endpoint))

        return answer

    def _push_error(self, request_id: int) -> Callable[[Exception], None]:
        """A push request's failure: REQUEST_FAILED, the connection stays."""

        def failed(exc: Exception) -> None:
            if isinstance(exc, EndpointRefused):
                self.request_failed(request_id, ErrorCode.PUSH_REFUSED, str(exc)[:200])
            elif isinstance(exc, StoreUnavailable):  # logged by the relay, once per interval
                self._actions.append(StoreTrouble(exc))
                reason = "store unavailable; retry later"
                code = ErrorCode.STORE_UNAVAILABLE
                self.request_failed(request_id, code, reason, self.store_retry_after)
            elif isinstance(exc, StoreError):
                self._actions.append(Failure("! store failed a push request", exc))
                self.request_failed(request_id, ErrorCode.INTERNAL, "store failure; retry")
            else:
                raise exc

        return failed
