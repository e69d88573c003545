"""Message ids as people type them: the whole id or a unique prefix, as git abbreviates hashes.

Status lines print ``a990c53083ad…``; :func:`parse_prefix` takes that, the whole id, or any
prefix of at least :data:`MIN_PREFIX` hex digits, in either case, with or without the ``…``.
"""

from __future__ import annotations

import re

__all__ = ["CANDIDATES_SHOWN", "MIN_PREFIX", "parse_prefix"]

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
