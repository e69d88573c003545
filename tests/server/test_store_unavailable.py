"""The relay on a full disk (a real tmpfs, so SQLite's own SQLITE_FULL): sends are REFUSED
STORE_UNAVAILABLE with a retry_after, an ACK that cannot be written closes with ERROR
STORE_UNAVAILABLE, ``/healthz`` is 503 ``{"store": "full"}``, the condition is logged once (no
traceback per request); once space is freed the probe turns ``/healthz`` green and the retried
send goes through. Nothing sleeps: the tests wait on client events and log records.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

import tidings.server.session as session_module
from tests.harness import (
    TIMEOUT,
    ClientLab,
    RelayLab,
    free_port,
    http_get,
    is_received,
    is_status,
)
from tests.mounts import fill, tmpfs
from tidings.client.events import Disconnected
from tidings.delivery import Status
from tidings.wire import ErrorCode


class LogEvent(logging.Handler):
    """Sets an event when a record containing ``text`` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


async def test_a_full_disk_is_store_unavailable_until_space_is_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(session_module, "STORE_RETRY_AFTER", 0.05)
    caplog.set_level(logging.INFO, "tidings")
    writable_again = LogEvent("store writable again")
    logging.getLogger("tidings.server").addHandler(writable_again)
    with tmpfs(tmp_path / "disk", 8192) as disk:
        relays = RelayLab(disk)
        clients = ClientLab(tmp_path, relays)
        try:
            relay = await relays.start(metrics_port=free_port())
            relay.store_watch.probe_interval = 0.05
            assert relay.metrics_address is not None
            host, port = relay.metrics_address
            alice, bob = await clients.new("alice"), await clients.new("bob")
            await bob.client.close()
            # Stored while bob is away: bob's ACK of it will be a write.
            waiting = await alice.client.send("bob", "stored before the disk filled")
            await alice.until(is_status(waiting, Status.SENT))

            filler = fill(disk)
            mid = await alice.client.send("bob", "sent while the disk is full")
            await relay.wait_refused(ErrorCode.STORE_UNAVAILABLE)
            assert alice.client.status(mid) is Status.PENDING  # kept, to be retried
            status, _, body = await http_get(host, port, "/healthz")
            assert status == 503 and json.loads(body)["store"] == "full"

            bob = await clients.start(bob.home, connect=False)
            closed = await bob.until(lambda e: isinstance(e, Disconnected))
            assert isinstance(closed, Disconnected)
            assert closed.code == ErrorCode.STORE_UNAVAILABLE and not closed.fatal

            filler.unlink()
            async with asyncio.timeout(TIMEOUT):
                await writable_again.seen.wait()
            status, _, body = await http_get(host, port, "/healthz")
            assert status == 200 and json.loads(body)["store"] == "ok"
            bob.client.reconnect_now()
            await bob.until(is_received(mid), timeout=TIMEOUT * 2)
        finally:
            logging.getLogger("tidings.server").removeHandler(writable_again)
            await clients.close()
            await relays.close()
    records = [r for r in caplog.records if r.name.startswith("tidings")]
    unavailable = [r for r in records if r.getMessage().startswith("! store unavailable")]
    assert len(unavailable) == 1, [r.getMessage() for r in unavailable]
    assert not [r for r in records if r.exc_info], "a traceback was logged"
    samples = relay.metrics.registry.get_sample_value("tidings_store_unavailable_total")
    assert samples is not None and samples >= 2  # the send and the ACK at least
