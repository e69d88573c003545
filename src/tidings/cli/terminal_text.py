"""Text that other people wrote, made safe to print on a terminal.

A message body, a sender's device name or a relay's refusal reason reaches ``listen``,
``history`` and ``chat`` from someone else. Printed raw, its control characters are
instructions to the terminal: ``ESC ] 0 ; … BEL`` retitles the window, ``ESC [ 2 J`` clears the
screen, ``ESC [ 1 A`` plus ``CR`` overwrites the line above (a forged "✓✓" or a forged message
from someone else), and some terminals answer queries by typing into the shell. Terminal
emulators parse C1 controls (U+0080–U+009F) as well, ``CSI`` = U+009B included.

:func:`for_terminal` keeps the text readable and takes the controls away:

- a line break (LF, CRLF, or U+2028/U+2029) starts a new line indented by
  :data:`CONTINUATION`, so a body cannot begin a line that looks like one of ours;
- every other C0 control and DEL is shown as its Unicode control picture (``ESC`` → ``␛``,
  ``CR`` → ``␍``, ``BEL`` → ``␇``; U+2400–U+2421), TAB kept;
- every C1 control is shown as ``\\x9b`` (its code, in text).

What JSON output prints (``--json``) is escaped by :func:`json.dumps` instead.
"""

from __future__ import annotations

__all__ = ["CONTINUATION", "for_terminal"]

#: What follows a line break inside someone else's text: an indent no line of ours starts with.
CONTINUATION = "\n    "


def _table() -> dict[int, str]:
    table: dict[int, str] = {c: chr(0x2400 + c) for c in range(0x20)}
    del table[0x09]  # TAB: harmless, and code pasted in a message keeps its shape
    table[0x0A] = CONTINUATION
    table[0x7F] = "\u2421"
    table.update({c: f"\\x{c:02x}" for c in range(0x80, 0xA0)})
    table[0x2028] = CONTINUATION  # LINE SEPARATOR
    table[0x2029] = CONTINUATION  # PARAGRAPH SEPARATOR
    return table


_TABLE = _table()


def for_terminal(text: str) -> str:
    """``text`` with its line breaks indented and its control characters made visible."""
    return text.replace("\r\n", "\n").translate(_TABLE)
