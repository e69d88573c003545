"""ruff's banned-API rule (TID251) reaches the relay's sans-I/O core, and only it.

``tests/server/test_core.py`` checks the imports the core modules have (an allow-list, by AST);
this probes that the lint rule configured in pyproject.toml would refuse a new one in a
``server/core*.py`` module while the adapters next to it stay free to do I/O.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = "import asyncio\nimport socket\nimport sqlite3\nimport time\nfrom time import monotonic\n"
BANNED = ("`asyncio`", "`socket`", "`sqlite3`", "`time`", "`time.monotonic`")


def ruff(filename: str, source: str) -> str:
    """ruff's report of ``source`` as if it were the project's file ``filename``."""
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.skip("ruff is not installed")
    done = subprocess.run(
        [exe, "check", "--select", "TID251", "--no-cache", "--stdin-filename", filename, "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    return done.stdout + done.stderr


@pytest.mark.parametrize(
    "name", ["core.py", "core_base.py", "core_delivery.py", "core_new_module.py"]
)
def test_a_core_module_may_not_import_io(name: str) -> None:
    report = ruff(f"src/tidings/server/{name}", PROBE)
    for banned in BANNED:
        assert f"TID251 {banned} is banned" in report, report


@pytest.mark.parametrize(
    "name", ["session.py", "listener.py", "app.py", "config.py", "counters.py", "stepper.py"]
)
def test_the_relays_adapters_may(name: str) -> None:
    report = ruff(f"src/tidings/server/{name}", PROBE)
    assert "TID251" not in report, report
