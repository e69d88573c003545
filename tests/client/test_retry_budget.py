"""The device-wide budget of retry requests (``tidings.client.crypto``): garbage from many
senders cannot make a device spend its account's send budget on retry requests (found by the
lab's ``hostile-load``: fresh accounts sending random bytes got the victim's own messages
refused RATE_LIMITED)."""

from __future__ import annotations

from pathlib import Path

from tidings.client.crypto import (
    RETRY_REQUEST_BURST,
    RETRY_REQUESTS_ALL_BURST,
    RETRY_REQUESTS_ALL_INTERVAL,
    DeviceCrypto,
)
from tidings.client.prekeys import DeviceKeys
from tidings.client.store import ClientStore
from tidings.store.base import DeviceRef

NOW = 1_800_000_000.0


def _crypto(tmp_path: Path, mono: list[float]) -> DeviceCrypto:
    store = ClientStore(tmp_path / "bob.db")
    DeviceKeys.create(store, NOW)
    return DeviceCrypto(store, DeviceRef("bob", 1), lambda _: None, lambda: NOW,
                        monotonic=lambda: mono[0])  # fmt: skip


def test_retry_requests_to_many_senders_share_one_budget(tmp_path: Path) -> None:
    mono = [100.0]
    crypto = _crypto(tmp_path, mono)
    flooders = [DeviceRef(f"flood{i}", 1) for i in range(RETRY_REQUESTS_ALL_BURST)]
    allowed = [crypto.retry_request_allowed(f) for f in flooders for _ in range(2)]
    assert sum(allowed) == RETRY_REQUESTS_ALL_BURST  # not 2 per sender: 20 in all
    late = DeviceRef("carol", 1)  # a real contact's broken session, within the flood
    assert not crypto.retry_request_allowed(late)
    mono[0] += RETRY_REQUESTS_ALL_INTERVAL
    assert crypto.retry_request_allowed(late)  # the budget refills: nobody is shut out
    assert not crypto.retry_request_allowed(late)


def test_one_sender_still_gets_its_own_burst(tmp_path: Path) -> None:
    crypto = _crypto(tmp_path, [100.0])
    alice = DeviceRef("alice", 1)
    allowed = [crypto.retry_request_allowed(alice) for _ in range(RETRY_REQUEST_BURST + 5)]
    assert sum(allowed) == RETRY_REQUEST_BURST
    assert crypto.retry_request_allowed(DeviceRef("carol", 1))  # a refusal took no shared token
