"""KeySync's wait after NO_PREKEYS (a device linked a moment ago has not uploaded its prekeys
yet): it backs off from NO_PREKEYS_RETRY, doubling, up to SESSION_RETRY; a bundle resets it."""

from __future__ import annotations

from typing import Any

from tidings.client.clocks import Clocks
from tidings.client.keysync import NO_PREKEYS_RETRY, SESSION_RETRY, KeySync
from tidings.errors import RefusedError
from tidings.refs import DeviceRef
from tidings.wire import ErrorCode

NEW = DeviceRef("bob", 2)


class Outbox:
    def __init__(self) -> None:
        self.devices = {"bob": (1, 2)}
        self.ready: list[tuple[str, float]] = []

    def sessions_ready(self, lane: str, not_before: float) -> None:
        self.ready.append((lane, not_before))


class Crypto:
    store = None


async def test_no_prekeys_backs_off_from_one_second_to_the_session_retry() -> None:
    outbox = Outbox()

    async def refuse(build: Any) -> object:
        raise RefusedError(int(ErrorCode.NO_PREKEYS), "bob.2 has no prekeys")

    async def devices(account: str) -> tuple[int, ...]:
        return (1, 2)

    sync = KeySync(Crypto(), outbox, refuse, devices, Clocks(lambda: 0.0, lambda: 100.0))  # type: ignore[arg-type]
    for _ in range(7):
        await sync.fetch_bundles("bob", [NEW])
    waits = [round(t - 100.0, 3) for _, t in outbox.ready]
    assert waits[0] == NO_PREKEYS_RETRY
    assert waits == [min(SESSION_RETRY, NO_PREKEYS_RETRY * 2**n) for n in range(7)]
    assert waits[-1] == SESSION_RETRY  # capped
