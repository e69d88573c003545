"""Server configuration: one frozen, validated :class:`ServerConfig` and the loader that builds it.

Invariants:

- A :class:`ServerConfig` that exists is valid: every field is checked in ``__post_init__``
  (types, ranges, ``idle_timeout > ping_interval``, ``max_payload <= wire.MAX_PAYLOAD``), so
  ``dataclasses.replace`` cannot produce an invalid one either.
- :func:`load_config` layers four sources, later ones winning: the defaults below, the
  ``[server]`` table of a TOML file, ``TIDINGS_<FIELD>`` environment variables, and overrides
  (command-line flags; ``None`` means "flag not given"). Every :class:`~tidings.errors.ConfigError`
  it raises names the key and the source it came from (file path, variable name or override).
- Durations are seconds (``float``). In the file, the environment and string overrides they may
  also be written with a unit: ``"30d"``, ``"2h"``, ``"10m"``, ``"5s"``, ``"1h30m"``
  (:func:`parse_duration`).

Example file::

    [server]
    port = 7400
    retention_seconds = "30d"
    log_format = "json"
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..configfile import CLIENT_ENV_PREFIX, parse_duration, read_table
from ..errors import ConfigError
from ..store.pg_errors import redact
from ..wire.limits import MAX_PAYLOAD

__all__ = [
    "ENV_PREFIX",
    "NON_SERVER_ENV",
    "ServerConfig",
    "load_config",
]

# --- Defaults, each with its reason -------------------------------------------------------------

#: Relative to the working directory, so a first ``tidings server`` run needs no setup.
DEFAULT_DATA_DIR = Path("./tidings-data")
#: The embedded SQLite database in ``data_dir``: one node needs no database server.
DEFAULT_STORE = "sqlite"
#: What ``store`` may name besides ``sqlite``: a PostgreSQL database (libpq's URL schemes).
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
#: No Redis: one node alone, or several that find each other's items by polling the database
#: only when Redis is configured (``redis_url``; docs/nodes.md).
DEFAULT_REDIS_URL = ""
#: What ``redis_url`` may start with (redis-py's URL schemes: TCP, TLS, a Unix socket).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
#: Empty: derived at start as ``<hostname>:<port>`` (:func:`default_node_id`), unique per
#: node as long as no two nodes on one host share a port, and readable in logs and metrics.
DEFAULT_NODE_ID = ""
#: A node id names a node in every log line and in ``/metrics``: short and without spaces.
MAX_NODE_ID = 64
#: Loopback only: exposing a relay to the network must be a deliberate choice.
DEFAULT_HOST = "127.0.0.1"
#: The WebSocket port; unassigned by IANA and easy to remember ("74" ≈ "TI").
DEFAULT_PORT = 7400
#: Metrics and health stay on loopback: they reveal traffic volumes.
DEFAULT_METRICS_HOST = "127.0.0.1"
#: Next to the WebSocket port; 0 disables the metrics/health endpoint.
DEFAULT_METRICS_PORT = 7401
#: 30 days: a device offline for a month still catches up (DESIGN §5 "Expiry").
DEFAULT_RETENTION_SECONDS = 30 * 24 * 3600.0
#: The wire's own limit: a server may lower it, never raise it (peers size buffers by it).
DEFAULT_MAX_PAYLOAD = MAX_PAYLOAD
#: 10 000 items × 64 KiB worst case = 640 MiB per device on disk; a month of heavy chat is less.
DEFAULT_MAX_QUEUE = 10_000
#: Half of a device's queue for senders its account never wrote to: 101 free accounts filled a
#: victim's whole queue in 7 s, and its real senders then got QUEUE_FULL for the retention.
DEFAULT_STRANGER_QUEUE_SHARE = 0.5
#: 20 sends/s sustained per account: far above human typing, far below a flood.
DEFAULT_RATE_PER_SECOND = 20.0
#: 100 sends at once: a client draining a full outbox after reconnecting is not refused.
DEFAULT_RATE_BURST = 100
#: 256 DELIVER frames in flight (≤ 16 MiB at 64 KiB): enough to fill a fast link's pipe.
DEFAULT_DELIVERY_WINDOW = 256
#: PING every 10 s keeps NAT and proxy mappings alive (most drop idle flows after 30-60 s).
DEFAULT_PING_INTERVAL = 10.0
#: Three missed ping intervals: a dead peer is noticed within 30 s without false alarms.
DEFAULT_IDLE_TIMEOUT = 30.0
#: REGISTER/HELLO is a client's first frame, sent as soon as the handshake ends: 10 s is many
#: slow round trips, and a peer that never says who it is cannot hold a connection by pinging.
DEFAULT_AUTH_TIMEOUT = 10.0
#: Sweeping once a minute keeps expiry within a minute of the deadline at negligible cost.
DEFAULT_EXPIRY_INTERVAL = 60.0
#: 10 minutes to type a link code into a new device, short enough that a leaked one goes stale.
DEFAULT_LINK_CODE_TTL = 600.0
#: A phone, a tablet and a few computers (Signal allows 5 linked devices, WhatsApp 4); each
#: device costs every send to the account one more copy.
DEFAULT_MAX_DEVICES = 8
#: The most ``max_devices`` may be: a SEND names the recipient's devices and the sender's other
#: ones, at most MAX_TARGETS (32) in all, so two accounts at 16 still fit one SEND.
MAX_DEVICES_LIMIT = 16
#: Connection open/close and registrations (see ``tidings.server.logs``); frames are debug.
DEFAULT_LOG_LEVEL = "info"
#: A person running ``tidings server`` in a terminal reads it; log shippers set ``json``.
DEFAULT_LOG_FORMAT = "text"
#: No skew: the lab injects an offset to test expiry and clock drift without waiting.
DEFAULT_CLOCK_OFFSET = 0.0
# Connection caps (issue 8).
#: 0 = derived from the limit of open files, which the relay raises to its hard limit at start:
#: that limit minus 164 descriptors (the store, logs, listeners, 64 refusals in progress), at most
#: 10,000 (tidings.server.admission). Past the limit, accept() fails and no one can connect.
DEFAULT_MAX_CONNECTIONS = 0
#: One address (a NAT'd office, a carrier-grade NAT) may carry hundreds of devices; a tenth of
#: the 10,000 ceiling, so one address cannot take the relay. IPv6 counts per /64. 0 = no cap.
DEFAULT_MAX_CONNECTIONS_PER_IP = 1000

# Limits against hostile peers (issue 8; ``tidings.server.limits``). Each "per hour" limit is a
# token bucket holding that many, refilled evenly over the hour; 0 switches it off.
#: Trust no header by default: a client could write any address into one.
DEFAULT_PROXY_HEADER = "none"
#: A household signs up together; a script from one address makes 10 accounts an hour, not
#: 10,000 in 37 s. Every REGISTER counts, refused ones too (they probe names and link codes).
DEFAULT_ADDRESS_REGISTRATIONS_PER_HOUR = 10
#: A new group of 100 is looked up at once; enumerating names takes hours per hundred.
DEFAULT_ACCOUNT_LOOKUPS_PER_HOUR = 100
#: Ten accounts' worth (what one address may register per hour) behind one address or NAT.
DEFAULT_ADDRESS_LOOKUPS_PER_HOUR = 1000
#: A NAT of a few busy users starting sessions; bounds the store writes one address causes.
DEFAULT_ADDRESS_PREKEY_FETCHES_PER_HOUR = 600
#: A group of 50 welcoming a new member all get one-time prekeys; past it the device's pool
#: lasts (bundles come without one-time prekeys, so sessions still start) until it refills.
DEFAULT_DEVICE_ONE_TIME_PREKEYS_PER_HOUR = 50
#: Signal-style: an account's first day gets a smaller budget (a throwaway account is new).
DEFAULT_NEW_ACCOUNT_AGE = 24 * 3600.0
#: A tenth of the normal rate: a person chatting (and their receipts) never notices.
DEFAULT_NEW_ACCOUNT_RATE_PER_SECOND = 2.0
#: Half the normal burst: enough for an outbox's backlog after the first reconnect.
DEFAULT_NEW_ACCOUNT_RATE_BURST = 50
#: First conversations and a group or two in the first hour, not a sweep of every device.
DEFAULT_NEW_ACCOUNT_PREKEY_FETCHES_PER_HOUR = 50

#: TCP segments of at most 1,220 bytes on non-loopback listeners: IPv6's minimum MTU (1,280)
#: minus its 40-byte header and TCP's 20, so every segment crosses any path, even a path-MTU
#: black hole that filters ICMP (RFC 2923 §2.1), where a 2 KB prekey message never arrived.
#: Costs ~0.7 % of throughput against 1,460 on IPv4 (52 header bytes in 1,260, not 1,500).
DEFAULT_TCP_MSS = 1220
#: The smallest ``tcp_mss`` accepted: IPv4's 576-byte minimum datagram minus 40 header bytes.
MIN_TCP_MSS = 536
#: The largest ``tcp_mss`` Linux accepts for TCP_MAXSEG (``MAX_TCP_WINDOW``).
MAX_TCP_MSS = 32767

# Push wake-ups (issue 13; ``tidings.server.wakeups``).
#: Push services are on the public internet: a relay that POSTs where a device says must not be
#: turned against its own loopback or LAN (SSRF). A lab or a LAN's UnifiedPush distributor sets it.
DEFAULT_PUSH_ALLOW_PRIVATE = False
#: RFC 8292 §2.1: the ``sub`` a push service may use to reach the operator about the relay's
#: traffic. A placeholder that says so; an operator of a public relay sets a real address.
DEFAULT_PUSH_CONTACT = "mailto:postmaster@localhost"

#: Prefix of the environment variables read by :func:`load_config` (``TIDINGS_PORT``…).
ENV_PREFIX = "TIDINGS_"
#: ``TIDINGS_*`` variables that are not server fields but are legitimately set (read by the CLI);
#: any other unknown ``TIDINGS_*`` variable is an error, because it is most likely a typo.
NON_SERVER_ENV = frozenset(
    {"TIDINGS_CONFIG", "TIDINGS_HOME", "TIDINGS_SERVER", "TIDINGS_CLOCK_FILE"}
)

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "text")
#: Where a reverse proxy puts the client's address; ``none`` uses the connection's own peer.
PROXY_HEADERS = ("none", "x-forwarded-for", "x-real-ip")


class _Invalid(Exception):
    """A value failed a check; the message is the reason, without key or source."""


# --- The value ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Every tunable of the relay server, validated on construction.

    Attributes:
        data_dir: directory of the embedded store and the server's key.
        store: ``sqlite`` (the embedded database in ``data_dir``) or the URL of a PostgreSQL
            database shared by several relay nodes (``postgresql://user@host:5432/tidings``).
        host: interface the WebSocket listener binds to.
        port: WebSocket port (0 lets the OS pick one: tests and the lab).
        metrics_host: interface of the HTTP ``/metrics`` and ``/healthz`` endpoint.
        metrics_port: port of that endpoint; 0 disables it.
        retention_seconds: how long an unfetched item is kept before it expires.
        max_payload: largest payload per device accepted in a SEND (≤ ``wire.MAX_PAYLOAD``).
        max_queue: most items queued for one device; beyond it SENDs get QUEUE_FULL.
        stranger_queue_share: the share of ``max_queue`` that items from senders the device's
            account never sent to may fill, together; beyond it their SENDs get QUEUE_FULL.
        rate_per_second: sustained sends per second allowed per account.
        rate_burst: sends an idle account may make at once.
        delivery_window: DELIVER frames in flight (unacked) per connection.
        ping_interval: seconds between server PINGs on an idle connection.
        idle_timeout: seconds without any frame from a client before the server closes it.
        auth_timeout: seconds a client has, after the Noise handshake (and after REGISTERED), to
            send REGISTER or HELLO; PINGs do not extend it (ERROR AUTH_TIMEOUT).
        expiry_interval: seconds between runs of the expiry sweep.
        link_code_ttl: seconds a link code stays valid.
        max_devices: devices one account may have; a link beyond it is refused.
        log_level: one of ``debug``, ``info``, ``warning``, ``error``.
        log_format: ``json`` (one object per line) or ``text``.
        clock_offset: seconds added to the wall clock (the lab's injectable clock).
        node_id: this node's name in logs, ``/metrics`` and ``/healthz``; empty: derived as
            ``<hostname>:<port>`` (see :attr:`node`).
        redis_url: the Redis of several nodes on one PostgreSQL store
            (``redis://host:6379/0``): cross-node wake-ups, unlinks and presence; empty: none.
        proxy_header: ``none``, or the header a reverse proxy writes the client's address in
            (``x-forwarded-for``: its last entry; ``x-real-ip``); only set it when every
            connection comes through that proxy.
        address_registrations_per_hour: REGISTER frames per source address per hour.
        account_lookups_per_hour: GET_DEVICES of other accounts per account per hour.
        address_lookups_per_hour: GET_DEVICES of other accounts per source address per hour.
        address_prekey_fetches_per_hour: PREKEY_FETCH frames per source address per hour.
        device_one_time_prekeys_per_hour: one-time prekeys handed out per target device per
            hour; fetches beyond it get a bundle without one-time prekeys.
        new_account_age: an account younger than this gets the ``new_account_*`` budgets
            (0: none does).
        new_account_rate_per_second: sustained sends per second of a new account.
        new_account_rate_burst: sends a new account may make at once.
        new_account_prekey_fetches_per_hour: PREKEY_FETCH frames per new account per hour.
        max_connections: connections served at once; 0 derives it from the limit of open files.
        max_connections_per_ip: connections served at once from one address (IPv6: one /64);
            0 for no such cap.
        tcp_mss: the largest TCP segment (TCP_MAXSEG) of connections to a non-loopback
            listener, both directions; 0 leaves it to the kernel (path-MTU discovery).
        push_allow_private: let devices register push endpoints on ``http://`` and on
            loopback or private addresses (a lab, tests, a LAN's UnifiedPush distributor).
        push_contact: the operator's ``mailto:`` or ``https:`` contact in VAPID tokens.

    Raises:
        ConfigError: on construction, naming the first invalid field.
    """

    data_dir: Path = DEFAULT_DATA_DIR
    store: str = DEFAULT_STORE
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    metrics_host: str = DEFAULT_METRICS_HOST
    metrics_port: int = DEFAULT_METRICS_PORT
    retention_seconds: float = DEFAULT_RETENTION_SECONDS
    max_payload: int = DEFAULT_MAX_PAYLOAD
    max_queue: int = DEFAULT_MAX_QUEUE
    stranger_queue_share: float = DEFAULT_STRANGER_QUEUE_SHARE
    rate_per_second: float = DEFAULT_RATE_PER_SECOND
    rate_burst: int = DEFAULT_RATE_BURST
    delivery_window: int = DEFAULT_DELIVERY_WINDOW
    ping_interval: float = DEFAULT_PING_INTERVAL
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    auth_timeout: float = DEFAULT_AUTH_TIMEOUT
    expiry_interval: float = DEFAULT_EXPIRY_INTERVAL
    link_code_ttl: float = DEFAULT_LINK_CODE_TTL
    max_devices: int = DEFAULT_MAX_DEVICES
    log_level: str = DEFAULT_LOG_LEVEL
    log_format: str = DEFAULT_LOG_FORMAT
    clock_offset: float = DEFAULT_CLOCK_OFFSET
    # several nodes (issue 14)
    node_id: str = DEFAULT_NODE_ID
    redis_url: str = DEFAULT_REDIS_URL
    # limits against hostile peers (issue 8)
    proxy_header: str = DEFAULT_PROXY_HEADER
    address_registrations_per_hour: int = DEFAULT_ADDRESS_REGISTRATIONS_PER_HOUR
    account_lookups_per_hour: int = DEFAULT_ACCOUNT_LOOKUPS_PER_HOUR
    address_lookups_per_hour: int = DEFAULT_ADDRESS_LOOKUPS_PER_HOUR
    address_prekey_fetches_per_hour: int = DEFAULT_ADDRESS_PREKEY_FETCHES_PER_HOUR
    device_one_time_prekeys_per_hour: int = DEFAULT_DEVICE_ONE_TIME_PREKEYS_PER_HOUR
    new_account_age: float = DEFAULT_NEW_ACCOUNT_AGE
    new_account_rate_per_second: float = DEFAULT_NEW_ACCOUNT_RATE_PER_SECOND
    new_account_rate_burst: int = DEFAULT_NEW_ACCOUNT_RATE_BURST
    new_account_prekey_fetches_per_hour: int = DEFAULT_NEW_ACCOUNT_PREKEY_FETCHES_PER_HOUR
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_connections_per_ip: int = DEFAULT_MAX_CONNECTIONS_PER_IP
    tcp_mss: int = DEFAULT_TCP_MSS
    # push wake-ups (issue 13)
    push_allow_private: bool = DEFAULT_PUSH_ALLOW_PRIVATE
    push_contact: str = DEFAULT_PUSH_CONTACT

    def __post_init__(self) -> None:
        for name in _RULES:
            try:
                value = _check(name, getattr(self, name))
            except _Invalid as exc:
                raise ConfigError(f"{name}: {exc}") from None
            # Normalise int → float for float fields; frozen, so go through object.
            object.__setattr__(self, name, value)
        reason = _relation_error(self.ping_interval, self.idle_timeout)
        if 0 < self.tcp_mss < MIN_TCP_MSS:
            reason = f"tcp_mss: expected 0 or at least {MIN_TCP_MSS}, got {self.tcp_mss}"
        if self.redis_url and not self.uses_postgres:
            reason = (
                f"redis_url ({redact(self.redis_url)}) needs the PostgreSQL store: nodes share "
                "one database and Redis only hints at it (set store to postgresql://…)"
            )
        if reason:
            raise ConfigError(reason)

    @property
    def uses_postgres(self) -> bool:
        """Whether ``store`` names a PostgreSQL database (else the embedded SQLite one)."""
        return self.store.startswith(POSTGRES_SCHEMES)

    @property
    def node(self) -> str:
        """The node id: :attr:`node_id`, or ``<hostname>:<port>`` when it is empty."""
        return self.node_id or default_node_id(self.port)

    @property
    def max_stranger_queue(self) -> int:
        """How many items of one device's queue strangers may fill: ``stranger_queue_share``
        of ``max_queue``, rounded down, at least 1 (a stranger's first message always fits)."""
        return max(1, math.floor(self.stranger_queue_share * self.max_queue))

    @property
    def metrics_enabled(self) -> bool:
        """Whether the HTTP metrics/health endpoint should be started."""
        return self.metrics_port != 0


# --- Field rules --------------------------------------------------------------------------------

_Kind = Literal[
    "path", "str", "int", "float", "duration", "choice", "bool", "store", "node", "redis"
]


@dataclass(frozen=True, slots=True)
class _Rule:
    """How one field is typed and bounded. ``low`` is exclusive when ``strict``."""

    kind: _Kind
    low: float | None = None
    high: float | None = None
    strict: bool = False
    choices: tuple[str, ...] = ()


_RULES: dict[str, _Rule] = {
    "data_dir": _Rule("path"),
    "store": _Rule("store"),
    "host": _Rule("str"),
    "port": _Rule("int", 0, 65535),
    "metrics_host": _Rule("str"),
    "metrics_port": _Rule("int", 0, 65535),
    "retention_seconds": _Rule("duration", 0, strict=True),
    "max_payload": _Rule("int", 1, MAX_PAYLOAD),
    "max_queue": _Rule("int", 1),
    "stranger_queue_share": _Rule("float", 0, 1, strict=True),
    "rate_per_second": _Rule("float", 0, strict=True),
    "rate_burst": _Rule("int", 1),
    "delivery_window": _Rule("int", 1),
    "ping_interval": _Rule("duration", 0, strict=True),
    "idle_timeout": _Rule("duration", 0, strict=True),
    "auth_timeout": _Rule("duration", 0, strict=True),
    "expiry_interval": _Rule("duration", 0, strict=True),
    "link_code_ttl": _Rule("duration", 0, strict=True),
    "max_devices": _Rule("int", 1, MAX_DEVICES_LIMIT),
    "log_level": _Rule("choice", choices=LOG_LEVELS),
    "log_format": _Rule("choice", choices=LOG_FORMATS),
    "clock_offset": _Rule("float"),
    "node_id": _Rule("node"),
    "redis_url": _Rule("redis"),
    # limits against hostile peers (issue 8)
    "proxy_header": _Rule("choice", choices=PROXY_HEADERS),
    "address_registrations_per_hour": _Rule("int", 0),
    "account_lookups_per_hour": _Rule("int", 0),
    "address_lookups_per_hour": _Rule("int", 0),
    "address_prekey_fetches_per_hour": _Rule("int", 0),
    "device_one_time_prekeys_per_hour": _Rule("int", 0),
    "new_account_age": _Rule("duration", 0),
    "new_account_rate_per_second": _Rule("float", 0, strict=True),
    "new_account_rate_burst": _Rule("int", 1),
    "new_account_prekey_fetches_per_hour": _Rule("int", 0),
    "max_connections": _Rule("int", 0),
    "max_connections_per_ip": _Rule("int", 0),
    "tcp_mss": _Rule("int", 0, MAX_TCP_MSS),
    "push_allow_private": _Rule("bool"),
    "push_contact": _Rule("str"),
}
assert set(_RULES) == {f.name for f in dataclasses.fields(ServerConfig)}


def _check(name: str, value: object) -> object:
    """Return ``value`` normalised for field ``name``, or raise :class:`_Invalid`."""
    rule = _RULES[name]
    if rule.kind == "path":
        if not isinstance(value, Path):
            raise _Invalid(f"expected a path, got {type(value).__name__}")
        return value
    if rule.kind == "store":
        if not isinstance(value, str) or not (
            value == DEFAULT_STORE or value.startswith(POSTGRES_SCHEMES)
        ):
            shown = redact(value) if isinstance(value, str) else value
            raise _Invalid(
                f"expected sqlite or a URL postgresql://user@host:port/database, got {shown!r}"
            )
        return value
    if rule.kind == "node":
        if not isinstance(value, str) or len(value) > MAX_NODE_ID or not value.isprintable():
            raise _Invalid(f"expected at most {MAX_NODE_ID} printable characters, got {value!r}")
        if any(c.isspace() for c in value):
            raise _Invalid(f"expected no spaces, got {value!r}")
        return value
    if rule.kind == "redis":
        if not isinstance(value, str) or (value and not value.startswith(REDIS_SCHEMES)):
            shown = redact(value) if isinstance(value, str) else value
            raise _Invalid(f"expected a URL redis://host:6379/0 (or empty), got {shown!r}")
        return value
    if rule.kind == "bool":
        if not isinstance(value, bool):
            raise _Invalid(f"expected true or false, got {value!r}")
        return value
    if name == "push_contact" and not (
        isinstance(value, str) and value.startswith(("mailto:", "https:"))
    ):
        raise _Invalid(f"expected a mailto: or https: URL, got {value!r}")
    if rule.kind in ("str", "choice"):
        if not isinstance(value, str) or not value:
            raise _Invalid(f"expected a non-empty string, got {value!r}")
        if rule.choices and value not in rule.choices:
            raise _Invalid(f"expected one of {', '.join(rule.choices)}, got {value!r}")
        return value
    if rule.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected an integer, got {value!r}")
        number: float = value
    else:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(f"expected a number, got {value!r}")
        if not math.isfinite(value):
            raise _Invalid(f"expected a finite number, got {value!r}")
        number = value = float(value)
    _check_range(rule, number)
    return value


def _check_range(rule: _Rule, number: float) -> None:
    if rule.low is not None and (number <= rule.low if rule.strict else number < rule.low):
        op = ">" if rule.strict else ">="
        raise _Invalid(f"must be {op} {_num(rule.low)}, got {_num(number)}")
    if rule.high is not None and number > rule.high:
        raise _Invalid(f"must be <= {_num(rule.high)}, got {_num(number)}")


def default_node_id(port: int) -> str:
    """``<hostname>:<port>``, the node id when none is configured (``port`` 0, a test's or the
    lab's "any free port", gets the process id instead: two such nodes on one host differ)."""
    return f"{socket.gethostname()}:{port or f'pid{os.getpid()}'}"


def _num(x: float) -> str:
    """``x`` for a message: ``30`` rather than ``30.0`` or ``3e+01``."""
    return str(int(x)) if float(x).is_integer() else repr(x)


def _relation_error(ping_interval: float, idle_timeout: float) -> str | None:
    """The cross-field rule: a client must get a chance to answer a PING before it is dropped."""
    if idle_timeout <= ping_interval:
        return (
            f"idle_timeout ({_num(idle_timeout)}) must be greater than "
            f"ping_interval ({_num(ping_interval)})"
        )
    return None


_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}

# --- Parsing ------------------------------------------------------------------------------------


def _from_text(name: str, raw: object) -> object:
    """Convert an environment (or string override) value to field ``name``'s type."""
    text, kind = str(raw), _RULES[name].kind
    if kind == "path":
        return Path(text).expanduser()
    if kind == "int":
        try:
            return int(text.strip())
        except ValueError:
            raise _Invalid(f"expected an integer, got {text!r}") from None
    if kind == "float":
        try:
            return float(text.strip())
        except ValueError:
            raise _Invalid(f"expected a number, got {text!r}") from None
    if kind == "duration":
        return _duration(text)
    if kind == "bool":
        word = text.strip().lower()
        if word not in _BOOL_WORDS:
            raise _Invalid(f"expected true or false, got {text!r}")
        return _BOOL_WORDS[word]
    return text.strip().lower() if kind == "choice" else text


def _from_native(name: str, value: object) -> object:
    """Convert a TOML (or typed override) value to field ``name``'s type."""
    kind = _RULES[name].kind
    if kind == "path" and isinstance(value, str):
        return Path(value).expanduser()
    if kind == "duration" and isinstance(value, str):
        return _duration(value)
    if kind == "choice" and isinstance(value, str):
        return value.lower()
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise _Invalid(str(exc)) from None


# --- Loading ------------------------------------------------------------------------------------


def load_config(
    path: Path | None, env: Mapping[str, str], overrides: Mapping[str, object]
) -> ServerConfig:
    """Build the server configuration from defaults, a file, the environment and overrides.

    Precedence, per field: ``overrides`` > ``env`` > file > defaults.

    Args:
        path: a TOML file whose ``[server]`` table holds field names, or ``None`` for no file.
        env: the environment (usually ``os.environ``); ``TIDINGS_<FIELD>`` variables are read,
            other ``TIDINGS_*`` variables (except :data:`NON_SERVER_ENV` and the client's
            ``TIDINGS_CLIENT_*``) are refused as typos.
        overrides: field name → value from command-line flags; ``None`` values are ignored.
            Strings are parsed as in the environment, other values must have the field's type.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: for an unreadable file, bad TOML, an unknown key or variable, a value of
            the wrong type or out of range; the message names the key and its source.
    """
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for name, raw, source, convert in [
        *_file_layer(path),
        *_env_layer(env),
        *_override_layer(overrides),
    ]:
        try:
            values[name] = _check(name, convert(name, raw))
        except _Invalid as exc:
            raise ConfigError(f"{source}: {exc}") from None
        sources[name] = source
    try:
        return ServerConfig(**values)  # type: ignore[arg-type]  # each value passed _check
    except ConfigError as exc:
        # Only a cross-field rule can fail here: say where its values came from.
        text = str(exc)
        names = ("ping_interval", "idle_timeout", "tcp_mss", "redis_url", "store")
        where = "; ".join(
            f"{name} from {sources.get(name, 'the default')}" for name in names if name in text
        )
        raise ConfigError(f"{text} ({where})" if where else text) from None


_Converter = Callable[[str, object], object]
_Entry = tuple[str, object, str, _Converter]


def _file_layer(path: Path | None) -> list[_Entry]:
    """The ``[server]`` table of the TOML file at ``path``, as (name, raw, source, converter)."""
    if path is None:
        return []
    table = read_table(path, "server")
    layer: list[_Entry] = []
    for key, raw in table.items():
        source = f"{path}: [server] {key}"
        _require_known(key, key, source, spell=str)
        layer.append((key, raw, source, _from_native))
    return layer


def _env_layer(env: Mapping[str, str]) -> list[_Entry]:
    """The ``TIDINGS_*`` variables of ``env``, as (name, raw, source, converter)."""
    layer: list[_Entry] = []
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var in NON_SERVER_ENV:
            continue
        if var.startswith(CLIENT_ENV_PREFIX):
            continue  # a device's setting, in a shell a relay shares (the lab, the demo)
        name = var[len(ENV_PREFIX) :].lower()
        source = f"environment variable {var}"
        _require_known(name, var, source, spell=lambda n: ENV_PREFIX + n.upper())
        layer.append((name, env[var], source, _from_text))
    return layer


def _override_layer(overrides: Mapping[str, object]) -> list[_Entry]:
    """The non-``None`` overrides, as (name, raw, source, converter)."""
    layer: list[_Entry] = []
    for name, raw in overrides.items():
        if raw is None:
            continue
        source = f"command-line override {name}"
        _require_known(name, name, source, spell=str)
        convert = _from_text if isinstance(raw, str) else _from_native
        layer.append((name, raw, source, convert))
    return layer


def _require_known(name: str, spelled: str, source: str, spell: Callable[[str], str]) -> None:
    """Raise ConfigError unless ``name`` is a field, suggesting the closest spelling."""
    if name in _RULES:
        return
    guess = difflib.get_close_matches(spelled, [spell(n) for n in _RULES], n=1)
    hint = f"; did you mean {guess[0]}?" if guess else ""
    raise ConfigError(f"{source}: unknown setting{hint}")
