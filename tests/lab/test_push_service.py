"""The lab's push service (tidings.lab.push_service): real HTTP on loopback, real RFC 8291
bodies; it drops, accepts and records as the push-failure scenario needs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import aiohttp
import pytest

from tidings.lab.push_service import LabPushService
from tidings.push import webpush


@pytest.fixture
def service() -> Iterator[LabPushService]:
    s = LabPushService()
    yield s
    s.close()


async def post(url: str, body: bytes) -> int:
    headers = {"TTL": "60", "Urgency": "high", "Topic": "wake", "Content-Encoding": "aes128gcm"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as answer,
    ):
        return answer.status


async def test_it_drops_then_accepts_and_keeps_what_each_wake_carried(
    service: LabPushService,
) -> None:
    body = webpush.encrypt(os.urandom(16), service.keys.public, service.keys.auth, os.urandom, 64)
    service.mode = "fail"
    assert await post(service.endpoint, body) == 503
    assert service.counts() == (1, 1, 0)
    service.mode = "accept"
    assert await post(service.endpoint, body) == 201
    assert service.counts() == (2, 1, 1)
    (wake,) = service.wakes
    assert (wake.plaintext_len, wake.ttl, wake.urgency, wake.topic) == (16, "60", "high", "wake")


async def test_it_refuses_what_is_not_its_subscription(service: LabPushService) -> None:
    assert await post(service.endpoint.rsplit("/", 1)[0] + "/other", b"x") == 404
    assert await post(service.endpoint, b"not a push body") == 400
    assert service.undecryptable == 1 and service.counts()[2] == 0
    with pytest.raises(ValueError):
        service.mode = "slow"
    service.close()
    service.close()  # idempotent
