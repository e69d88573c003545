"""No ``asyncio.wait_for`` in the long-running code: it can lose a cancellation on Python 3.11.

CPython 3.11's ``wait_for`` returns the inner result when the awaited future completes in the same
loop turn as an outer ``cancel()`` (python/cpython#86296, fixed in 3.12 by rebuilding it on
``asyncio.timeout``). A task in a loop around it then goes on as if never cancelled: the crash
tests' driver hung in ``close()`` forever that way (its reconnect watchdog swallowed the cancel
when the session opened at the same instant), and the client's reconnect loop, the outbox drain
and the lab's devices have the same shape. ``asyncio.timeout`` has no such window.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The program, and the drivers the process tests run as long-lived processes.
CHECKED = [*sorted((ROOT / "src").rglob("*.py")), ROOT / "tests" / "proc" / "driver.py"]


def uses_wait_for(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "wait_for"
        and isinstance(node.value, ast.Name)
        and node.value.id == "asyncio"
    ]


def test_the_checker_sees_a_use(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import asyncio\nasync def f(e):\n    await asyncio.wait_for(e.wait(), 1)\n")
    assert uses_wait_for(probe) == [3]


def test_no_asyncio_wait_for_in_the_program() -> None:
    found = {str(p.relative_to(ROOT)): lines for p in CHECKED if (lines := uses_wait_for(p))}
    assert found == {}, f"use `async with asyncio.timeout(t):` instead: {found}"
