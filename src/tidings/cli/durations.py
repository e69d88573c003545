"""Durations as people type and read them: ``30s``, ``5m``, ``1h``, ``1d``, ``1w``, ``off``."""

from __future__ import annotations

import argparse
import re

from ..delivery import MAX_TIMER

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"([0-9]{1,9})([smhdw]?)")


def parse_duration(text: str) -> int:
    """``off`` or ``0`` → 0; ``90``, ``90s``, ``5m``, ``1h``, ``1d``, ``1w`` → seconds.

    Raises:
        argparse.ArgumentTypeError: anything else, or longer than four weeks.
    """
    if text.strip().lower() == "off":
        return 0
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: say off, or a number with s, m, h, d or w (e.g. 1h)"
        )
    seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds > MAX_TIMER:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than {format_duration(MAX_TIMER)}")
    return seconds


def format_duration(seconds: int) -> str:
    """The largest unit that says ``seconds`` exactly: ``1h``, ``90m``, ``4w``; 0 is ``off``."""
    if seconds == 0:
        return "off"
    for unit, size in reversed(_UNITS.items()):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
