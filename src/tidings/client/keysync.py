"""This device's end-to-end key traffic with the relay: prekey uploads and session bundles.

:class:`KeySync` runs two flows for the :class:`~tidings.client.Client`, over its request
channel (a request id answered by one frame, or ``RefusedError`` for REQUEST_FAILED):

* ``sync`` — after each connect and on PREKEYS_LOW: rotate the signed and last-resort prekeys
  when due, refill one-time prekeys the relay runs low on, upload whatever is not uploaded yet
  (:class:`~tidings.client.prekeys.DeviceKeys`); keys are marked uploaded on PREKEYS_STORED.
* ``fetch_bundles`` — when the outbox holds a lane back for devices without a session: learn
  the devices of accounts never written to (GET_DEVICES; none means no such account, and the
  lane fails), fetch each device's bundle (PREKEY_FETCH), build and save the session, then let
  the lane go — not before a refused fetch's retry time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from ..e2e import BundleError
from ..errors import ConnectionBroken, RefusedError, StoreError, StoreUnavailable
from ..refs import DeviceRef
from ..wire import ErrorCode, Frame, PrekeyBundle, PrekeyFetch, PrekeysStored, PrekeysUpload
from .clocks import Clocks
from .crypto import DeviceCrypto
from .outbox import Outbox

__all__ = ["MAX_UPLOAD_ROUNDS", "NO_PREKEYS_RETRY", "SESSION_RETRY", "KeySync"]

log = logging.getLogger("tidings.client")

#: Seconds before a device whose prekeys the relay does not have (or whose bundle did not
#: verify) is tried again; its messages wait in the outbox meanwhile.
SESSION_RETRY = 30.0

#: First wait after NO_PREKEYS, doubled per refusal up to :data:`SESSION_RETRY`: a device just
#: linked uploads its prekeys the moment it first connects, seconds after it registered, and
#: the messages waiting for it should not wait a whole :data:`SESSION_RETRY` more.
NO_PREKEYS_RETRY = 1.0

#: Most PREKEYS_UPLOAD rounds per connection (each carries up to 100 keys of each kind).
MAX_UPLOAD_ROUNDS = 4


class KeySync:
    """Prekey uploads and bundle fetches (see the module docstring).

    Args:
        crypto: this device's sessions and keys.
        outbox: the outbox whose lanes wait for sessions.
        request: ``await request(build)`` sends ``build(request_id)`` and returns the answer.
        devices: ``await devices(account)``: the account's device ids (and the outbox learns
            them).
        clocks: the wall clock (key timestamps) and the monotonic one (retry times: the
            outbox's clock).
    """

    def __init__(
        self,
        crypto: DeviceCrypto,
        outbox: Outbox,
        request: Callable[[Callable[[int], Frame]], Awaitable[object]],
        devices: Callable[[str], Awaitable[tuple[int, ...]]],
        clocks: Clocks,
    ) -> None:
        self.crypto = crypto
        self.store = crypto.store
        self._outbox = outbox
        self._request = request
        self._devices = devices
        self._clock = clocks.wall
        self._mono = clocks.mono
        self._syncing = False
        #: NO_PREKEYS refusals in a row per device (its retry backs off from NO_PREKEYS_RETRY)
        self._no_prekeys: dict[DeviceRef, int] = {}

    async def sync(self, low: tuple[int, int] | None = None) -> None:
        """Rotate the signed prekey when due, refill one-time prekeys the relay runs low
        on, and upload whatever is not uploaded yet."""
        if self._syncing:
            if low is not None:  # the running sync may have missed it: refill now
                self.crypto.keys.refill(*low, self._clock())
            return
        self._syncing = True
        try:
            keys = self.crypto.keys
            keys.rotate_if_due(self._clock())
            if low is not None:
                keys.refill(*low, self._clock())
            sent: list[tuple[int, int]] = []

            def build(rid: int) -> PrekeysUpload:
                frame, keys_sent = keys.upload(rid)
                sent[:] = keys_sent
                return frame

            for _ in range(MAX_UPLOAD_ROUNDS):
                if not keys.needs_upload():
                    break
                answer = await self._request(build)
                assert isinstance(answer, PrekeysStored)
                self.store.mark_uploaded(sent)
                keys.refill(answer.one_time_count, answer.kem_count, self._clock())
        except RefusedError as exc:
            log.warning("! prekey upload refused: %s", exc.reason)
        except (ConnectionBroken, StoreError) as exc:
            log.info("! prekey upload interrupted: %s", exc)
        finally:
            self._syncing = False

    async def fetch_bundles(self, lane: str, devices: list[DeviceRef]) -> None:
        """Build sessions with ``devices`` from fresh prekey bundles, then let ``lane`` go."""
        not_before = 0.0
        try:
            for account in sorted({d.account for d in devices}):
                if account in self._outbox.devices:
                    continue
                # The devices were a guess: learn them first; the pump asks again for the
                # sessions it then still lacks.
                devices = [d for d in devices if d.account != account]
                try:
                    known = await self._devices(account)
                except RefusedError as exc:
                    # A lookup budget is spent (RATE_LIMITED): hold the lane until it refills.
                    log.warning("! device lookup of %s refused: %s", account, exc.reason)
                    wait = exc.retry_after if exc.retry_after > 0 else SESSION_RETRY
                    not_before = max(not_before, self._mono() + wait)
                    continue
                if not known:
                    self._outbox.fail_lane(
                        account, int(ErrorCode.NO_SUCH_ACCOUNT), f"no account {account}"
                    )
            for dev in devices:
                try:
                    frame = await self._request(
                        lambda rid, d=dev: PrekeyFetch(rid, d.account, d.device_id)  # type: ignore[misc]
                    )
                except RefusedError as exc:
                    now = self._mono()
                    if exc.code == ErrorCode.NO_SUCH_ACCOUNT:  # the device is gone
                        await self._devices(dev.account)
                    elif exc.code == ErrorCode.RATE_LIMITED:
                        not_before = max(not_before, now + exc.retry_after)
                    elif exc.code == ErrorCode.NO_PREKEYS:  # not started yet, as a new device
                        n = self._no_prekeys.get(dev, 0)
                        if len(self._no_prekeys) < 1024 or dev in self._no_prekeys:
                            self._no_prekeys[dev] = n + 1
                        wait = min(SESSION_RETRY, NO_PREKEYS_RETRY * 2**n)
                        log.info("! %s has no prekeys yet; trying again in %g s", dev, wait)
                        not_before = max(not_before, now + wait)
                    else:
                        log.warning("! no session with %s: %s", dev, exc.reason)
                        not_before = max(not_before, now + SESSION_RETRY)
                    continue
                assert isinstance(frame, PrekeyBundle)
                self._no_prekeys.pop(dev, None)
                try:
                    self.store.save_crypto(self.crypto.install_bundle(frame))
                except BundleError as exc:
                    log.warning("! bad prekey bundle for %s: %s", dev, exc.reason)
                    self.crypto.reload()
                    not_before = max(not_before, self._mono() + SESSION_RETRY)
                except StoreError as exc:
                    if not isinstance(exc, StoreUnavailable):  # that one stops the client
                        log.exception("! could not save a new session")
                    self.crypto.reload()
                    not_before = max(not_before, self._mono() + SESSION_RETRY)
        except ConnectionBroken:
            return  # the outbox starts over on the next connection
        self._outbox.sessions_ready(lane, not_before)
