"""Sealed sender at the relay's connection core (docs/protocol.md §6.32–6.38, §14). A part of
:class:`~tidings.server.core.RelayCore`.

On an authenticated session: SENDER_CERT_REQUEST (a sender certificate for the device, for
the identity key it uploaded) and SET_ACCESS_KEY (the account's unidentified-access key,
replacing the stored one), both answered SENDER_CERT.

Invariant: nothing here names a sender in a log line of an *unidentified* session; the
authenticated frames here log only the device, as every other request does.
"""

from __future__ import annotations

from ..errors import IntegrityError, Rule, StoreError, StoreUnavailable
from ..wire import ErrorCode, SenderCert, SenderCertRequest, SetAccessKey
from .core_actions import Failure, PutAccessKey, ReadIdentityKey, StoreTrouble
from .core_base import CoreBase

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
