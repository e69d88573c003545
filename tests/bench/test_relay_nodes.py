"""``bench/relay_bench.py --store postgresql://… --nodes 2 --redis …`` (issue 14): two relay
nodes on one PostgreSQL database of the test's own, joined by a Redis of the test's own; every
sender on one node and its receiver on the other, so every message crosses nodes. The run must
deliver everything and report each node's CPU and the database's."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from asyncio.subprocess import PIPE, STDOUT
from pathlib import Path

import pytest

from tests.pgdb import create_database, drop_database, url_of
from tests.redisd import RedisServer

pytestmark = [pytest.mark.proc, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "relay_bench.py"
PAIRS, MESSAGES = 4, 20
#: Seconds the whole bench run may take (it prints its own progress and deadlines).
RUN_TIMEOUT = 240


async def test_two_nodes_relay_every_message_across_and_report_their_cpu(tmp_path: Path) -> None:
    database = await create_database("tidings_bench")
    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis")
    await redis.start()
    try:
        out = tmp_path / "nodes.json"
        argv = ["--pairs", str(PAIRS), "--messages", str(MESSAGES), "--idle", "0"]
        argv += ["--pairs-per-process", "2", "--timeout", "120", "--out", str(out)]
        argv += ["--store", url_of(database), "--nodes", "2", "--redis", redis.url]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(BENCH), *argv, stdout=PIPE, stderr=STDOUT
        )
        try:
            async with asyncio.timeout(RUN_TIMEOUT):
                printed, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        stdout = printed.decode(errors="replace")
        assert proc.returncode == 0, stdout
    finally:
        await redis.kill()
        await drop_database(database)
    report = json.loads(out.read_text())
    assert report["complete"] is True
    assert report["counts"]["relayed_messages"] == PAIRS * MESSAGES
    nodes = report["nodes"]
    assert nodes["count"] == 2 and len(nodes["cpu_us_per_message_per_node"]) == 2
    assert all(x > 0 for x in nodes["cpu_us_per_message_per_node"])  # both nodes worked
    assert nodes["database_cpu_us_per_message"] > 0
    assert "2 node(s):" in stdout


def test_several_nodes_need_postgresql_and_redis() -> None:
    for extra in (["--nodes", "2"], ["--nodes", "2", "--redis", "redis://x"], ["--nodes", "9"]):
        done = subprocess.run([sys.executable, str(BENCH), *extra], capture_output=True,
                              text=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 2 and "--nodes" in done.stderr, done.stderr
