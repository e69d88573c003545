"""The TOML config files of the relay (``[server]``) and of a device (``[client]``): one table.

Both read their file the same way: one top-level table, nothing else, and every problem one
line naming the file. What the keys mean stays with each config (``tidings.server.config``,
``tidings.client.config``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from .errors import ConfigError


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
