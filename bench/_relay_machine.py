"""What the relay bench records about the machine and the code it measured."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
from pathlib import Path

from _relay_probe import CLK_TCK


def package_versions() -> dict[str, str]:
    """Versions of what the relay's hot path runs on."""
    import sqlite3
    from importlib import metadata

    out = {"sqlite": sqlite3.sqlite_version}
    for name in ("tidings", "uvloop", "picows", "cryptography", "msgpack", "py-spy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def source_digest() -> str:
    """A digest of the tidings sources being measured (the tree may change between runs)."""
    import hashlib

    import tidings

    root = Path(tidings.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".sql") and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def machine_info(load_at_start: float, digest: str) -> dict[str, object]:
    """CPU model, cores, memory, kernel, Python, load, versions and the date."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        # Other work on the machine competes for the cores: throughput and latency depend on it.
        "loadavg_1m_at_start": round(load_at_start, 2),
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        "versions": package_versions(),
        "tidings_source_sha256": digest,  # of the tree when the bench started
        "clock_ticks_per_s": CLK_TCK,
    }
