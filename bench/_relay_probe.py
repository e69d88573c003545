"""Readings of the server under test: its ``/proc`` counters (CPU, threads, RSS, context
switches, I/O), the machine's CPU, and the server's own ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_ticks(pid: int) -> tuple[int, int]:
    """(utime, stime) of a process (all its threads), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)


def proc_thread_ticks(pid: int) -> dict[int, int]:
    """utime + stime of each thread of a process, in clock ticks."""
    out: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        out[int(task.name)] = int(fields[11]) + int(fields[12])
    return out


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (KiB) and context switch counters of ``/proc/<pid>/status``."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
            out[key] = int(value.split()[0])
    return out


def proc_io(pid: int) -> dict[str, int]:
    """``/proc/<pid>/io`` (bytes written to storage, syscalls), or {} where unreadable."""
    try:
        text = Path(f"/proc/{pid}/io").read_text()
    except OSError:
        return {}
    return {k: int(v) for k, _, v in (line.partition(": ") for line in text.splitlines())}


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from ``/proc/stat``."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


@dataclass
class Snapshot:
    """What is read from ``/proc`` at one instant."""

    at: float
    user: int
    system: int
    threads: dict[int, int]
    status: dict[str, int]
    io: dict[str, int]
    machine: tuple[int, int]

    @property
    def ticks(self) -> int:
        """utime + stime."""
        return self.user + self.system

    @staticmethod
    def take(pid: int) -> Snapshot:
        return Snapshot(
            time.monotonic(),
            *proc_cpu_ticks(pid),
            proc_thread_ticks(pid),
            proc_status(pid),
            proc_io(pid),
            machine_busy(),
        )


def postgres_ticks() -> int:
    """utime + stime of every ``postgres`` process on the machine (the database server's CPU:
    its backends, WAL writer, checkpointer …), in clock ticks."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, _, rest = (entry / "stat").read_text().rpartition(")")
        except OSError:
            continue  # it ended
        if head.partition("(")[2] == "postgres":
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])
    return total


def ticks_us(ticks: int) -> float:
    return ticks * 1e6 / CLK_TCK


async def scrape_metrics(url: str | None) -> dict[str, float]:
    """The server's ``tidings_*`` samples (``name{labels}`` → value); {} if unavailable."""
    if not url:
        return {}
    m = re.match(r"http://([^:/]+):(\d+)(/.*)", url)
    if m is None:
        return {}
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(m.group(1), int(m.group(2))), 5
        )
        writer.write(f"GET {m.group(3)} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
        async with asyncio.timeout(10):
            data = await reader.read()
        writer.close()
        async with asyncio.timeout(5):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        return {}
    body = data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("tidings_"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out
