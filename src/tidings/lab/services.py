"""The lab's own PostgreSQL cluster and Redis server, in a run directory, on free ports.

``node-crash`` (:mod:`.scenarios_nodes`) runs several relay nodes on a PostgreSQL database and a
Redis, and then kills and restarts both: so they must be the lab's own, never the machine's
(others share those). :class:`LabPostgres` makes a cluster in ``RUN/pg`` with the Debian
binaries (``initdb``; then ``postgres`` itself, not ``pg_ctl``, so that it is a child the lab
can ``kill -9``), listening on ``127.0.0.1`` and a Unix socket in the run directory, with
``fsync=on`` (a ✓ is only as durable as the database's flush). :class:`LabRedis` runs
``redis-server`` with no persistence. Both are :class:`~tidings.lab.proc_base.Proc` children
of the run's registry (reaped on the way out, Ctrl-C too); their readiness is the line each one
prints when it accepts connections (nothing polls).

Invariants:

* As root, PostgreSQL runs as the ``postgres`` user (``initdb`` refuses root) through
  ``setpriv``, on a data directory that user owns; otherwise as the lab's own user.
* As root the cluster's directory is ``/tmp/tdlabpg<pid>_<seq>`` (the run directory may not be
  reachable by that user, e.g. a 0700 temporary directory), linked from ``RUN/pg``;
  :meth:`LabPostgres.remove` deletes it once the process was reaped, and :func:`sweep_services`
  deletes those whose lab pid is dead (a ``kill -9`` of the lab), as :mod:`.mounts` sweeps.
* Every service process is started with a parent-death signal (``setpriv --pdeathsig KILL``):
  a ``kill -9`` of the lab kills them too, so a killed run leaves no database or Redis running
  (its files stay in the run directory, as every run's do).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
from pathlib import Path

from .proc_base import WAIT, LabProcError, Proc, ProcRegistry, wait_until

__all__ = [
    "PG_USER",
    "LabPostgres",
    "LabRedis",
    "free_port",
    "postgres_bin",
    "services_available",
    "sweep_services",
]

#: The user PostgreSQL runs as when the lab is root (the Debian package's).
PG_USER = "postgres"
#: Seconds ``initdb`` may take (a couple of seconds here; fsync of a new cluster).
INITDB_TIMEOUT = 120.0
#: The line PostgreSQL logs once it accepts connections (after a start or crash recovery).
PG_READY = "database system is ready to accept connections"
#: The line ``redis-server`` logs once it accepts connections.
REDIS_READY = "Ready to accept connections"

_PREFIX = "tdlabpg"
_DIR_RE = re.compile(rf"^{_PREFIX}(\d+)_\d+$")
_sequence = itertools.count(1)


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def sweep_services(tmp: Path = Path("/tmp")) -> list[Path]:
    """Delete the PostgreSQL directories of lab runs whose process is dead; return them."""
    removed = []
    for path in sorted(tmp.glob(f"{_PREFIX}*_*")):
        m = _DIR_RE.match(path.name)
        if m and not _pid_alive(int(m.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_bin() -> Path | None:
    """The directory of the newest installed PostgreSQL's ``initdb`` and ``postgres``."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version)
    if found:
        return Path(found[-1]).parent
    which = shutil.which("postgres")
    return Path(which).parent if which else None


def _version(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def services_available() -> str | None:
    """None if the lab can run its own PostgreSQL and Redis here, else why not."""
    if postgres_bin() is None:
        return "PostgreSQL's server binaries (initdb, postgres) are not installed"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root needs the user {PG_USER!r} for PostgreSQL"
    return None


def _prefix() -> list[str]:
    """setpriv: die with the lab; as root, become the PostgreSQL user."""
    argv = ["setpriv", "--pdeathsig", "KILL"]
    if os.geteuid() == 0:
        argv += ["--reuid", PG_USER, "--regid", PG_USER, "--init-groups"]
    return [*argv, "--"]


class _Service(Proc):
    """A service whose log goes to stdout (one ``raw`` line each); ready at ``ready_text``."""

    ready_text = ""

    def start(self, timeout: float = WAIT) -> None:
        self.spawn()
        wait_until(
            lambda: any(self.ready_text in str(line.get("raw", "")) for line in self.lines),
            timeout,
            f"{self.name} to accept connections",
            self,
        )


class LabPostgres(_Service):
    """A PostgreSQL cluster of the lab in ``root`` (created by :meth:`init`)."""

    ready_text = PG_READY

    def __init__(self, root: Path, log_dir: Path, *, registry: ProcRegistry) -> None:
        super().__init__("postgres", log_dir, argv_prefix=_prefix(), registry=registry)
        binary = postgres_bin()
        if binary is None:
            raise LabProcError("PostgreSQL is not installed")
        self.bin = binary
        self.link = root
        if os.geteuid() == 0:
            root = Path("/tmp") / f"{_PREFIX}{os.getpid()}_{next(_sequence)}"
        self.root = root
        self.data = root / "data"
        self.port = free_port()

    @property
    def url(self) -> str:
        """The lab database's URL (trust authentication on 127.0.0.1)."""
        return f"postgresql://{self._user()}@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def _user() -> str:
        return PG_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    def init(self) -> None:
        """``initdb`` the cluster (its directory owned by the user it runs as)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam(PG_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self.link.parent.mkdir(parents=True, exist_ok=True)
            self.link.symlink_to(self.root)
        argv = [str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self._user()]
        done = subprocess.run(
            [*_prefix(), *argv], capture_output=True, text=True, timeout=INITDB_TIMEOUT, check=False
        )
        if done.returncode != 0:
            raise LabProcError(f"initdb failed ({done.returncode}):\n{done.stderr[-2000:]}")

    def argv(self) -> list[str]:
        # sh only joins stderr to stdout (the log is the readiness signal); no user input.
        postgres = [
            str(self.bin / "postgres"),
            *("-D", str(self.data), "-p", str(self.port), "-k", str(self.root)),
            *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"),
            *("-c", "synchronous_commit=on", "-c", "max_connections=50"),
        ]
        return ["sh", "-c", 'exec "$@" 2>&1', "sh", *postgres]

    def remove(self) -> None:
        """Kill the server if it runs and delete a cluster outside the run directory."""
        self.reap()
        if self.root != self.link:
            shutil.rmtree(self.root, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.link.unlink()

    def query(self, sql: str) -> list[tuple[object, ...]]:
        """The rows of one query on the lab database (a connection of its own)."""
        return asyncio.run(_query(self.url, sql))


async def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=10)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


class LabRedis(_Service):
    """The lab's ``redis-server`` on a free port, no persistence."""

    ready_text = REDIS_READY

    def __init__(self, log_dir: Path, *, registry: ProcRegistry) -> None:
        super().__init__(
            "redis", log_dir, argv_prefix=["setpriv", "--pdeathsig", "KILL", "--"],
            registry=registry,
        )  # fmt: skip
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        return [
            "redis-server",
            *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--protected-mode", "no"),
        ]
