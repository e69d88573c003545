"""Fixtures shared by the integration tests: a relay factory and a client factory.

``relays.start(**config)`` starts a real relay (loopback, SQLite under ``tmp_path``, the fake
clock ``relays.clock``); ``clients.new("alice")`` registers an account and starts its client.
Everything is closed at teardown, clients first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import ClientLab, FakeClock, RelayLab


@pytest.fixture
async def relays(tmp_path: Path) -> AsyncIterator[RelayLab]:
    lab = RelayLab(tmp_path)
    yield lab
    await lab.close()


@pytest.fixture
def clock(relays: RelayLab) -> FakeClock:
    return relays.clock


@pytest.fixture
async def clients(tmp_path: Path, relays: RelayLab) -> AsyncIterator[ClientLab]:
    lab = ClientLab(tmp_path, relays)
    yield lab
    await lab.close()
