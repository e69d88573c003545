"""Client configuration: one frozen, validated :class:`ClientConfig` and the loader that builds it.

It mirrors the relay's (:mod:`tidings.server.config`): the same layers, the same one-line
:class:`~tidings.errors.ConfigError` naming the key and its source, the same durations.

Invariants:

- A :class:`ClientConfig` that exists is valid: every field is checked in ``__post_init__``
  (types, ranges, ``keepalive_timeout_seconds > keepalive_seconds``), so
  ``dataclasses.replace`` cannot produce an invalid one either. A backoff whose ``initial`` is
  above its ``max`` is not an error: every delay is then drawn below the ``max``
  (:attr:`ClientConfig.reconnect`), so lowering a cap alone just works.
- :func:`load_client_config` layers four sources, later ones winning: the defaults below, the
  ``[client]`` table of a TOML file, ``TIDINGS_CLIENT_<FIELD>`` environment variables, and
  overrides (``--set NAME=VALUE`` flags). It returns the config with, per field, where its value
  came from (:attr:`ClientConfig.sources`); it raises before anything runs, so a bad setting
  changes nothing.
- The environment prefix is ``TIDINGS_CLIENT_``, not the relay's ``TIDINGS_``: the relay refuses
  any unknown ``TIDINGS_<NAME>`` as a typo, and a relay and its clients often share a shell (the
  lab, the demo, tests); each side refuses typos in its own namespace and ignores the other's.
- ``read_receipts`` is ``None`` unless a layer sets it: then the device's stored setting
  (``tidings read-receipts on|off``) applies. When a layer sets it, that value wins.

Example ``HOME/config.toml``::

    [client]
    keepalive_seconds = 15
    reconnect_max_seconds = "2m"
    read_receipts = false
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..configfile import CLIENT_ENV_PREFIX, parse_duration, read_table
from ..delivery.outbox import OUTBOX_WINDOW, RETRY_BASE, RETRY_CAP
from ..errors import ConfigError
from ..net.channel import KeepaliveParams
from .reconnect import RECONNECT_BASE, RECONNECT_CAP

__all__ = [
    "CONFIG_ENV",
    "CONFIG_NAME",
    "ENV_PREFIX",
    "ClientConfig",
    "check_read_receipts",
    "config_path",
    "load_client_config",
    "parse_sets",
]

# --- Defaults, each with its reason -------------------------------------------------------------

#: PING after 5 s of silence: below the relay's 10 s ping interval and any NAT's idle timeout.
DEFAULT_KEEPALIVE_SECONDS = 5.0
#: Dead after 10 s with nothing received: a dead WiFi link or a handoff is noticed in ≤ 10 s
#: instead of TCP's minutes of retransmissions (G7), two keepalives without an answer.
DEFAULT_KEEPALIVE_TIMEOUT_SECONDS = 10.0
#: Seconds for the Noise handshake to finish (not a setting: a relay either answers or not).
HANDSHAKE_TIMEOUT = 10.0
#: The first reconnect delay is at most 0.5 s: a relay restart costs the user well under a second.
DEFAULT_RECONNECT_INITIAL_SECONDS = RECONNECT_BASE
#: At most 30 s between tries: a relay that is back is found within 30 s, and many clients cut
#: off together do not hammer it (the lab's ``reconnect-storm``).
DEFAULT_RECONNECT_MAX_SECONDS = RECONNECT_CAP
#: 64 sends in flight: pipelining hides the round trip; the relay's group commit makes a deeper
#: pipeline useless, and 64 SEND frames of at most 1 MiB bound what is outstanding.
DEFAULT_OUTBOX_WINDOW = OUTBOX_WINDOW
#: A refused send (rate limit, full queue) is first retried within 0.5 s: not hammering a relay
#: that just refused, not keeping the user waiting either.
DEFAULT_OUTBOX_RETRY_INITIAL_SECONDS = RETRY_BASE
#: A message waits at most a minute for its next try, as users expect of a chat app.
DEFAULT_OUTBOX_RETRY_MAX_SECONDS = RETRY_CAP
#: ``None``: the device's stored setting (``tidings read-receipts``, on when registered) applies.
DEFAULT_READ_RECEIPTS: bool | None = None

#: The largest ``outbox_window``: 1,024 SENDs of at most 1 MiB is a GiB outstanding already.
MAX_OUTBOX_WINDOW = 1024

#: Prefix of the environment variables read by :func:`load_client_config` (the relay skips it).
ENV_PREFIX = CLIENT_ENV_PREFIX
#: The variable naming the config file (``--config`` wins over it).
CONFIG_ENV = "TIDINGS_CLIENT_CONFIG"
#: The config file's name in the device home, read when it exists.
CONFIG_NAME = "config.toml"
#: The table of the file that holds the settings; anything else at the top is refused.
TABLE = "client"

#: How ``read_receipts`` may be written in the environment and in ``--set``.
_BOOLS = {"on": True, "true": True, "yes": True, "1": True}
_BOOLS |= {"off": False, "false": False, "no": False, "0": False}


class _Invalid(Exception):
    """A value failed a check; the message is the reason, without key or source."""


# --- The value ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Every tunable of a device, validated on construction.

    Attributes:
        keepalive_seconds: seconds of silence after which the client PINGs the relay.
        keepalive_timeout_seconds: seconds with nothing received after which the connection is
            declared dead and a new one is made (> ``keepalive_seconds``).
        reconnect_initial_seconds: the reconnect delay's ceiling after the first failed attempt
            (it doubles per attempt; each delay is drawn uniformly below its ceiling).
        reconnect_max_seconds: the largest reconnect delay ceiling.
        outbox_window: sends in flight (sent, not yet answered by the relay).
        outbox_retry_initial_seconds: a refused send's first retry delay ceiling (doubling).
        outbox_retry_max_seconds: the largest retry delay ceiling of a send.
        read_receipts: send read receipts; ``None``: the device's stored setting decides.
        sources: where each field's value came from (:meth:`source`); not part of equality.

    Raises:
        ConfigError: on construction, naming the first invalid field.
    """

    keepalive_seconds: float = DEFAULT_KEEPALIVE_SECONDS
    keepalive_timeout_seconds: float = DEFAULT_KEEPALIVE_TIMEOUT_SECONDS
    reconnect_initial_seconds: float = DEFAULT_RECONNECT_INITIAL_SECONDS
    reconnect_max_seconds: float = DEFAULT_RECONNECT_MAX_SECONDS
    outbox_window: int = DEFAULT_OUTBOX_WINDOW
    outbox_retry_initial_seconds: float = DEFAULT_OUTBOX_RETRY_INITIAL_SECONDS
    outbox_retry_max_seconds: float = DEFAULT_OUTBOX_RETRY_MAX_SECONDS
    read_receipts: bool | None = DEFAULT_READ_RECEIPTS
    sources: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({}), compare=False, repr=False
    )

    def __post_init__(self) -> None:
        for name in SETTINGS:
            try:
                value = _check(name, getattr(self, name))
            except _Invalid as exc:
                raise ConfigError(f"{name}: {exc}") from None
            object.__setattr__(self, name, value)  # int → float for durations; frozen
        object.__setattr__(self, "sources", types.MappingProxyType(dict(self.sources)))
        reason = _relation_error(self)
        if reason:
            raise ConfigError(reason)

    @property
    def keepalive(self) -> KeepaliveParams:
        """The connection's keepalive timing."""
        return KeepaliveParams(
            ping_interval=self.keepalive_seconds,
            dead_after=self.keepalive_timeout_seconds,
            handshake_timeout=HANDSHAKE_TIMEOUT,
        )

    @property
    def reconnect(self) -> tuple[float, float]:
        """The reconnect backoff's first and largest delay ceilings (a first above the largest
        is the largest: every delay is then drawn below the largest)."""
        return min(self.reconnect_initial_seconds, self.reconnect_max_seconds), (
            self.reconnect_max_seconds
        )

    @property
    def outbox_retry(self) -> tuple[float, float]:
        """A refused send's first and largest retry delay ceilings (clamped like
        :attr:`reconnect`)."""
        return min(self.outbox_retry_initial_seconds, self.outbox_retry_max_seconds), (
            self.outbox_retry_max_seconds
        )

    def source(self, name: str) -> str:
        """Where setting ``name`` came from: ``"default"``, or e.g. ``"file /h/config.toml"``,
        ``"env TIDINGS_CLIENT_OUTBOX_WINDOW"``, ``"flag --set outbox_window"``; ``"code"`` for a
        value given to the constructor by a program (the SDK) rather than loaded."""
        if name in self.sources:
            return self.sources[name]
        return "default" if getattr(self, name) == _DEFAULTS[name] else "code"

    def origin(self, name: str) -> str:
        """:meth:`source` for people: ``"the default"``, ``"config file /h/config.toml"``,
        ``"environment variable TIDINGS_CLIENT_…"``, ``"--set NAME"``."""
        kind, _, where = self.source(name).partition(" ")
        prefix = {"file": "config file ", "env": "environment variable ", "flag": ""}
        return prefix[kind] + where if where else {"code": "the program"}.get(kind, "the default")

    def describe(self) -> dict[str, dict[str, Any]]:
        """Each setting: ``{"value", "source"}`` (the kind: default, file, env, flag, code) and
        ``"where"`` (the file, variable or flag; ``None`` for a default)."""
        out: dict[str, dict[str, Any]] = {}
        for name in SETTINGS:
            kind, _, where = self.source(name).partition(" ")
            out[name] = {"value": getattr(self, name), "source": kind, "where": where or None}
        return out


# --- Field rules --------------------------------------------------------------------------------

#: Each setting's kind: durations are seconds > 0, the window an integer from 1 to the maximum.
SETTINGS: dict[str, str] = {
    "keepalive_seconds": "duration",
    "keepalive_timeout_seconds": "duration",
    "reconnect_initial_seconds": "duration",
    "reconnect_max_seconds": "duration",
    "outbox_window": "int",
    "outbox_retry_initial_seconds": "duration",
    "outbox_retry_max_seconds": "duration",
    "read_receipts": "bool",
}
assert set(SETTINGS) | {"sources"} == {f.name for f in dataclasses.fields(ClientConfig)}
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ClientConfig) if f.name in SETTINGS}


def _check(name: str, value: object) -> object:
    """Return ``value`` normalised for field ``name``, or raise :class:`_Invalid`."""
    kind = SETTINGS[name]
    if kind == "bool":
        if value is not None and not isinstance(value, bool):
            raise _Invalid(f"expected true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected an integer, got {value!r}")
        if not 1 <= value <= MAX_OUTBOX_WINDOW:
            raise _Invalid(f"must be from 1 to {MAX_OUTBOX_WINDOW}, got {value}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"expected seconds (a number, or e.g. '30s', '2m'), got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise _Invalid(f"must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _relation_error(c: ClientConfig) -> str | None:
    """The cross-field rules, naming both values and where they came from."""
    low, high = "keepalive_seconds", "keepalive_timeout_seconds"
    a, b = getattr(c, low), getattr(c, high)
    if a >= b:
        return (
            f"{low} ({a:g}, from {c.origin(low)}) must be less than "
            f"{high} ({b:g}, from {c.origin(high)})"
        )
    return None


def _from_text(name: str, raw: str) -> object:
    """Convert an environment or ``--set`` value to field ``name``'s type."""
    kind, text = SETTINGS[name], raw.strip()
    if kind == "bool":
        if text.lower() not in _BOOLS:
            raise _Invalid(f"expected on or off (true/false, yes/no, 1/0), got {raw!r}")
        return _BOOLS[text.lower()]
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise _Invalid(f"expected an integer, got {raw!r}") from None
    return _duration(text)


def _from_native(name: str, value: object) -> object:
    """Convert a TOML value to field ``name``'s type (a duration may be a string: ``"2m"``)."""
    if SETTINGS[name] == "duration" and isinstance(value, str):
        return _duration(value)
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ConfigError:
        raise _Invalid(f"expected seconds (a number, or e.g. '30s', '2m'), got {text!r}") from None


# --- Loading ------------------------------------------------------------------------------------


def config_path(home: Path, flag: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """The config file to read: ``--config``, else ``TIDINGS_CLIENT_CONFIG``, else
    ``HOME/config.toml`` if it exists (else ``None``: no file)."""
    if flag:
        return Path(flag).expanduser()
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    default = home / CONFIG_NAME
    return default if default.is_file() else None


def load_client_config(
    path: Path | None, env: Mapping[str, str], overrides: Mapping[str, str] | None = None
) -> ClientConfig:
    """Build a device's configuration from defaults, a file, the environment and overrides.

    Precedence, per field: ``overrides`` > ``env`` > file > defaults.

    Args:
        path: a TOML file whose ``[client]`` table holds field names, or ``None`` for no file.
        env: the environment (usually ``os.environ``); ``TIDINGS_CLIENT_<FIELD>`` variables are
            read, any other ``TIDINGS_CLIENT_*`` (except :data:`CONFIG_ENV`) is refused as a typo;
            other variables (the relay's ``TIDINGS_*``) are ignored.
        overrides: field name → text, as given to ``--set NAME=VALUE``.

    Returns:
        The validated configuration, with the source of each value that is not a default.

    Raises:
        ConfigError: an unreadable file, bad TOML, an unknown key or variable, a value of the
            wrong type or out of range; one line naming the key and its source.
    """
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for name, value, source, where in [
        *_file_layer(path),
        *_env_layer(env),
        *_override_layer(overrides or {}),
    ]:
        values[name] = value
        sources[name] = source
        try:
            _check(name, value)
        except _Invalid as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return ClientConfig(**values, sources=sources)  # type: ignore[arg-type]  # each passed _check


_Entry = tuple[str, object, str, str]  # name, value, source ("file PATH"), where (for messages)


def _file_layer(path: Path | None) -> list[_Entry]:
    """The ``[client]`` table of the TOML file at ``path``."""
    if path is None:
        return []
    table = read_table(path, TABLE)
    layer: list[_Entry] = []
    for key, raw in table.items():
        where = f"{path}: [{TABLE}] {key}"
        _require_known(key, key, where, list(SETTINGS))
        layer.append((key, _convert(_from_native, key, raw, where), f"file {path}", where))
    return layer


def _env_layer(env: Mapping[str, str]) -> list[_Entry]:
    """The ``TIDINGS_CLIENT_*`` variables of ``env``."""
    layer: list[_Entry] = []
    known = [ENV_PREFIX + n.upper() for n in SETTINGS]
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        name = var[len(ENV_PREFIX) :].lower()
        where = f"environment variable {var}"
        _require_known(name, var, where, known)
        layer.append((name, _convert(_from_text, name, env[var], where), f"env {var}", where))
    return layer


def _override_layer(overrides: Mapping[str, str]) -> list[_Entry]:
    """The ``--set NAME=VALUE`` flags."""
    layer: list[_Entry] = []
    for name, raw in overrides.items():
        where = f"--set {name}"
        _require_known(name, name, where, list(SETTINGS))
        layer.append((name, _convert(_from_text, name, raw, where), f"flag --set {name}", where))
    return layer


def _convert(convert: Any, name: str, raw: object, where: str) -> object:
    try:
        return convert(name, raw)
    except _Invalid as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _require_known(name: str, spelled: str, where: str, spellings: list[str]) -> None:
    """Raise ConfigError unless ``name`` is a setting, suggesting the closest spelling."""
    if name in SETTINGS:
        return
    guess = difflib.get_close_matches(spelled, spellings, n=1)
    hint = f"did you mean {guess[0]}?" if guess else f"known: {', '.join(spellings)}"
    raise ConfigError(f"{where}: unknown setting; {hint}")


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """``--set NAME=VALUE`` flags as a mapping (the last of a name wins).

    Raises:
        ConfigError: an item without ``=``.
    """
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE, e.g. keepalive_seconds=15")
        out[name.strip().replace("-", "_")] = value
    return out


def check_read_receipts(config: ClientConfig, enabled: bool) -> None:
    """Refuse to store a read-receipts setting that the config overrides (it would not apply).

    Raises:
        ConfigError: ``config.read_receipts`` is set to the other value; the message names where.
    """
    pinned = config.read_receipts
    if pinned is not None and pinned != enabled:
        state = "on" if pinned else "off"
        raise ConfigError(
            f"read receipts are set {state} by {config.origin('read_receipts')}, which wins over "
            "the device's stored setting: change it there"
        )
