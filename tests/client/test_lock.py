"""The device home's lock (tidings.client.lock): one process per device, released by the kernel
however the holder ends — ``kill -9`` included."""

from __future__ import annotations

import os
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import ClientLab, RelayLab
from tidings.client import Client
from tidings.client.lock import LOCK_NAME, DeviceLock
from tidings.errors import ConfigError, DeviceBusy

WAIT = 20.0

HOLDER = """
import sys
from pathlib import Path
from tidings.client.lock import DeviceLock
lock = DeviceLock.acquire(Path(sys.argv[1]), "tidings listen")
print("held", flush=True)
sys.stdin.read()  # until killed
"""


def test_a_second_holder_is_refused_with_the_first_ones_pid_until_it_releases(
    tmp_path: Path,
) -> None:
    first = DeviceLock.acquire(tmp_path, "tidings listen")
    with pytest.raises(DeviceBusy) as busy:
        DeviceLock.acquire(tmp_path, "tidings send")
    assert (busy.value.pid, busy.value.command) == (os.getpid(), "tidings listen")
    assert str(busy.value) == (
        f"device {tmp_path} is in use by process {os.getpid()} (tidings listen); stop it first"
    )
    first.release()
    first.release()  # idempotent
    assert not first.held
    second = DeviceLock.acquire(tmp_path, "tidings send")
    assert second.held
    second.release()


def test_the_lock_file_is_private(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).touch(mode=0o644)
    os.chmod(tmp_path / LOCK_NAME, 0o644)  # as an older version may have left it
    lock = DeviceLock.acquire(tmp_path, "x")
    assert stat.S_IMODE((tmp_path / LOCK_NAME).stat().st_mode) == 0o600
    lock.release()
    other = tmp_path / "new"
    other.mkdir()
    DeviceLock.acquire(other, "x").release()
    assert stat.S_IMODE((other / LOCK_NAME).stat().st_mode) == 0o600


def test_a_holder_killed_with_sigkill_leaves_no_lock_behind(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        ready, _, _ = select.select([holder.stdout], [], [], WAIT)
        assert ready and holder.stdout.readline() == "held\n"
        with pytest.raises(DeviceBusy) as busy:
            DeviceLock.acquire(tmp_path, "tidings send")
        assert busy.value.pid == holder.pid
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(WAIT) == -signal.SIGKILL
        started = time.monotonic()
        DeviceLock.acquire(tmp_path, "tidings send").release()  # at once: no stale lock
        assert time.monotonic() - started < 1.0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for pipe in (holder.stdin, holder.stdout):
            if pipe is not None:
                pipe.close()


async def test_a_client_holds_its_home_until_it_is_closed(
    relays: RelayLab, clients: ClientLab
) -> None:
    await relays.start()
    home = await clients.register("alice")
    first = clients.open(home, owner="tidings listen")
    with pytest.raises(DeviceBusy, match=r"in use by process \d+ \(tidings listen\)"):
        Client(home)
    await first.close()
    second = clients.open(home)
    await second.start()
    await second.wait_connected(WAIT)


def test_a_client_on_a_missing_home_says_there_is_no_device(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no registered device"):
        Client(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()
