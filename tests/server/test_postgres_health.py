"""A relay on PostgreSQL (``--store postgresql://…``): ``/healthz`` follows the database.

The relay reaches the database through a TCP proxy that the test takes down and brings back
(the database's host or network failing): with no client writing, the store's heartbeat
probe notices within its interval, ``/healthz`` turns 503 with ``"store": "error: …"``, and it
turns 200 again once a probe succeeds. Nothing sleeps: the test waits on log records.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator

import pytest

from tests import pgdb
from tests.harness import TIMEOUT, free_port, http_get
from tidings.noise import generate_keypair
from tidings.server.app import Relay
from tidings.server.config import ServerConfig
from tidings.store import PostgresStore


class LogEvent(logging.Handler):
    """Sets an event when a record containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest.fixture
async def url() -> AsyncIterator[str]:
    name = await pgdb.create_database("tidings_health")
    try:
        yield pgdb.url_of(name)
    finally:
        await pgdb.drop_database(name)


async def test_healthz_follows_the_database(url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "tidings")
    proxy = pgdb.Proxy()
    await proxy.start()
    store_url = proxy.url(url)
    config = ServerConfig(store=store_url, port=0, metrics_port=free_port(), log_level="warning")
    relay = Relay(
        config, PostgresStore(store_url), generate_keypair(os.urandom)[0], store_heartbeat=0.05
    )
    down, up = LogEvent("store unavailable"), LogEvent("store writable again")
    log = logging.getLogger("tidings.server")
    log.addHandler(down)
    log.addHandler(up)
    await relay.start()
    try:
        relay.store_watch.probe_interval = 0.05
        assert relay.metrics_address is not None
        host, port = relay.metrics_address
        status, _, body = await http_get(host, port, "/healthz")
        assert status == 200 and json.loads(body)["store"] == "ok"
        await proxy.stop()
        async with asyncio.timeout(TIMEOUT):
            await down.seen.wait()
        status, _, body = await http_get(host, port, "/healthz")
        assert status == 503 and json.loads(body)["store"].startswith("error: ")
        await proxy.start()
        async with asyncio.timeout(TIMEOUT):
            await up.seen.wait()
        status, _, body = await http_get(host, port, "/healthz")
        assert status == 200 and json.loads(body)["store"] == "ok"
    finally:
        log.removeHandler(down)
        log.removeHandler(up)
        await relay.stop()
        await proxy.stop()
