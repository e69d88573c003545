"""Fixtures shared by the CLI tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .test_cli import Proc


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Long-running children of one test: killed at teardown whatever happened."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.kill()
