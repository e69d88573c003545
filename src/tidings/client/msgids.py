"""Message ids as people type them: the whole id or a unique prefix, as git abbreviates hashes.

Status lines print ``a990c53083ad…``; :func:`parse_prefix` takes that, the whole id, or any
prefix of at least :data:`MIN_PREFIX` hex digits, in either case, with or without the ``…``.
"""

from __future__ import annotations

import re
from typing import Protocol

from ..errors import ConfigError

__all__ = [
    "CANDIDATES_SHOWN",
    "MIN_PREFIX",
    "AmbiguousMessage",
    "NoSuchMessage",
    "parse_prefix",
    "resolve",
]

#: Fewest hex digits a message id may be shortened to (as git's abbreviated hashes).
MIN_PREFIX = 4

#: How many candidates an ambiguous prefix lists.
CANDIDATES_SHOWN = 5

_PREFIX = re.compile(rf"[0-9a-f]{{{MIN_PREFIX},32}}")


def parse_prefix(text: str) -> str:
    """``text`` as lower-case hex digits (a trailing ``…`` or ``...`` dropped).

    Raises:
        ValueError: it is not a message id or a prefix of at least :data:`MIN_PREFIX` digits.
    """
    prefix = text.strip().lower()
    for ellipsis in ("…", "..."):
        if prefix.endswith(ellipsis):
            prefix = prefix[: -len(ellipsis)]
            break
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(
            f"{text!r} is not a message id: give it, or at least its first {MIN_PREFIX} hex "
            "digits, as `tidings send` printed it"
        )
    return prefix


class _Index(Protocol):
    def message_ids_starting(self, prefix: str, limit: int = 10) -> list[bytes]: ...


class NoSuchMessage(ConfigError):
    """No stored message starts with the prefix."""


class AmbiguousMessage(ConfigError):
    """Several stored messages start with the prefix: ``candidates`` (the first
    :data:`CANDIDATES_SHOWN`), ``more`` if there are others."""

    def __init__(self, prefix: str, candidates: list[bytes], more: bool) -> None:
        super().__init__(f"message id {prefix} matches several messages")
        self.candidates = candidates
        self.more = more


def resolve(store: _Index, prefix: str) -> bytes:
    """The one stored message id that starts with ``prefix`` (from :func:`parse_prefix`).

    Raises:
        NoSuchMessage: none does.
        AmbiguousMessage: several do.
    """
    found = store.message_ids_starting(prefix, CANDIDATES_SHOWN + 1)
    if not found:
        raise NoSuchMessage(f"no message {prefix}")
    if len(found) > 1:
        raise AmbiguousMessage(prefix, found[:CANDIDATES_SHOWN], len(found) > CANDIDATES_SHOWN)
    return found[0]
