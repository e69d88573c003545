"""What the relay's config (``[server]``) and a device's (``[client]``) share: one TOML table
per file, durations, and who owns which ``TIDINGS_*`` variables.

Both read their file the same way: one top-level table, nothing else, and every problem one
line naming the file. What the keys mean stays with each config (``tidings.server.config``,
``tidings.client.config``); this module sits below both, so neither imports the other.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from .errors import ConfigError

__all__ = ["CLIENT_ENV_PREFIX", "parse_duration", "read_table"]

#: Prefix of the client's variables (``tidings.client.config``): not the relay's, never refused.
CLIENT_ENV_PREFIX = "TIDINGS_CLIENT_"

_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smhd])")
_DURATION_RE = re.compile(rf"(?:{_DURATION_PART_RE.pattern})+")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def read_table(path: Path, table: str) -> dict[str, object]:
    """The ``[table]`` of the TOML file at ``path`` (empty if the file has none).

    Raises:
        ConfigError: the file cannot be read, is not TOML, has another top-level key, or its
            ``table`` is not a table.
    """
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    for key in document:
        if key != table:
            raise ConfigError(f"{path}: unknown top-level key {key!r}; settings go in [{table}]")
    found = document.get(table, {})
    if not isinstance(found, dict):
        raise ConfigError(f"{path}: {table!r} must be a table ([{table}])")
    return found


def parse_duration(value: str | int | float) -> float:
    """Parse a duration into seconds.

    Args:
        value: a number of seconds (``30``, ``"2.5"``), or a string of number-unit pairs with
            units ``s``, ``m``, ``h``, ``d`` (``"30d"``, ``"10m"``, ``"1h30m"``).

    Returns:
        The duration in seconds, as a float (not range-checked: ``"-5"`` gives ``-5.0``).

    Raises:
        ConfigError: if the value is not a number or a well-formed duration string.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"invalid duration {value!r}: expected seconds or e.g. '30d'")
    if not isinstance(value, str):
        return float(value)
    text = value.replace(" ", "").lower()
    try:
        return float(text)
    except ValueError:
        pass
    if not _DURATION_RE.fullmatch(text):
        raise ConfigError(
            f"invalid duration {value!r}: expected seconds or number+unit (s, m, h, d), e.g. '30d'"
        )
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART_RE.findall(text))
