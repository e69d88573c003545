"""The peers' servers: each one's own process, config, data directory and accounts.

Each peer runs a fresh server of its own on a free loopback port with a config written into the
run's temporary directory (never the system's Mosquitto on 1883 or a system Prosody), and the
worker script that drives it. What each persists (see ``bench/README.md``, "Peers"):

* **Mosquitto**: persistence on (``persistence true``): in-memory, with the whole database
  written at ``autosave_interval`` and at exit; no fsync, nothing written per message. A PUBACK
  means "the broker holds it in memory".
* **Prosody**: storage ``internal`` (files); messages to an online recipient are routed in memory
  and held in the stream-management queue until the receiving client acks them, offline ones go
  to mod_offline's files. With ``archive`` on (``--prosody-archive``) mod_mam also stores every
  message in both users' archives: ``internal`` (appended to files, no fsync) or ``sql``
  (SQLite through LuaDBI, one transaction per stored message, SQLite's default fsync).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Every account of the bench has this password (XMPP; MQTT runs anonymous).
PASSWORD = "bench"
#: The XMPP domain of the bench's accounts.
DOMAIN = "localhost"
#: Per-client queue of QoS 1 messages Mosquitto keeps beyond the in-flight ones; high enough
#: that nothing is dropped (a receiver has at most one sender's window queued).
MOSQUITTO_MAX_QUEUED = 100_000


@dataclass(frozen=True)
class Server:
    """How to start one peer's server, and what it persists (for the report)."""

    argv: list[str]
    port: int
    persistence: str


@dataclass(frozen=True)
class Peer:
    """A peer system: how to make its server, and the worker that speaks its protocol."""

    name: str
    title: str
    program: str  # must be on PATH
    worker: Path
    apt_package: str

    def installed(self) -> bool:
        return shutil.which(self.program) is not None


MOSQUITTO = Peer(
    "mosquitto", "Mosquitto (MQTT QoS 1)", "mosquitto", HERE / "_mqtt_worker.py", "mosquitto"
)
PROSODY = Peer(
    "prosody",
    "Prosody (XMPP, XEP-0198 + XEP-0184)",
    "prosody",
    HERE / "_xmpp_worker.py",
    "prosody",
)
PEERS = {p.name: p for p in (MOSQUITTO, PROSODY)}


def mosquitto_server(root: Path, port: int, window: int) -> Server:
    """A Mosquitto 2 config in ``root``: one loopback listener, anonymous, persistence on."""
    conf = root / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                "user root",  # stay as the bench's user: it owns the temporary directory
                "persistence true",
                f"persistence_location {root}/",
                "persistence_file mosquitto.db",
                # QoS 1 messages in flight to one client: the senders' window (default 20).
                f"max_inflight_messages {window}",
                f"max_queued_messages {MOSQUITTO_MAX_QUEUED}",
                f"log_dest file {root}/mosquitto.log",
                "log_type error",
                "log_type warning",
                "",
            ]
        )
    )
    return Server(
        ["mosquitto", "-c", str(conf)],
        port,
        "persistence on: in memory, whole database written at autosave (1800 s) and exit; "
        "no fsync, nothing written per message",
    )


#: Prosody's ``gc`` setting: as shipped (0.12's defaults: a new cycle when the heap reaches 105 %
#: of what survived the last one, so the collector runs almost all the time: its sweep and mark
#: loops were ~57 % of Prosody's CPU samples in a perf profile of this bench), or Lua 5.4's own.
PROSODY_GC = {
    "shipped": None,
    "lua": '{ mode = "incremental"; threshold = 200; speed = 100 }',
}


def prosody_server(
    root: Path, port: int, accounts: list[str], archive: str, gc: str = "shipped"
) -> Server:
    """A Prosody 0.12 config in ``root`` (c2s on loopback only), and its accounts.

    The accounts are written as the files ``prosodyctl register`` writes with
    ``authentication = "internal_plain"`` (``data/<domain>/accounts/<user>.dat``): hundreds of
    ``prosodyctl`` runs would take longer than the benchmark.
    """
    data = root / "data"
    accounts_dir = data / DOMAIN / "accounts"
    accounts_dir.mkdir(parents=True)
    (root / "certs").mkdir()
    for user in accounts:
        (accounts_dir / f"{user}.dat").write_text(
            f'return {{\n\t["password"] = "{PASSWORD}";\n}};\n'
        )
    modules = ["roster", "saslauth", "disco", "smacks"]
    storage = '"internal"'
    if archive != "none":
        modules.append("mam")
        if archive == "sql":
            storage = '{ archive = "sql" }'
    lines = [
        f'pidfile = "{root}/prosody.pid"',
        f'data_path = "{data}"',
        f'certificates = "{root}/certs"',
        "run_as_root = true",  # the bench's user owns the temporary directory
        "admins = {}",
        "modules_enabled = { " + "; ".join(f'"{m}"' for m in modules) + " }",
        'authentication = "internal_plain"',
        f"storage = {storage}",
        f'sql = {{ driver = "SQLite3", database = "{root}/prosody.sqlite" }}',
        'archive_expires_after = "never"',
        "default_archive_policy = true",  # archive every chat (with --prosody-archive)
        f"c2s_ports = {{ {port} }}",
        'c2s_interfaces = { "127.0.0.1" }',
        "s2s_ports = {}",
        "c2s_require_encryption = false",  # loopback: the bench measures XMPP, not TLS
        "allow_unencrypted_plain_auth = true",
        # Into a file: nothing reads the server's stdout.
        'log = { { levels = { min = "warn" }, to = "file", filename = "'
        + f'{root}/prosody.log" }} }}',
        *([f"gc = {PROSODY_GC[gc]}"] if PROSODY_GC[gc] else []),
        f'VirtualHost "{DOMAIN}"',
        "",
    ]
    conf = root / "prosody.cfg.lua"
    conf.write_text("\n".join(lines))
    persistence = {
        "none": "storage internal; messages to online users routed in memory (held in the "
        "stream-management queue until the receiver acks), no archive",
        "internal": "storage internal; mod_mam archives every message for both users, "
        "appended to files (no fsync)",
        "sql": "mod_mam archives every message for both users in SQLite (LuaDBI), "
        "SQLite's default fsync per transaction",
    }[archive]
    return Server(["prosody", "--config", str(conf), "-F"], port, persistence)
