"""The CLI's exit codes: one table, documented in the README ("Exit codes").

Scripts branch on these, so a code never changes meaning; new failures get new numbers.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """What ``tidings`` returns."""

    OK = 0  #: done
    ERROR = 1  #: any other failure; one line on stderr says what
    USAGE = 2  #: bad arguments (argparse), or an option that does not apply
    #: ``send --wait`` ran out before the wanted status; the message is where the last line says
    #: (✓ stored by the relay, or still in this device's outbox) and goes on by itself
    TIMED_OUT = 3
    REFUSED = 4  #: the relay refused for good (the message is ✗)
    STORAGE = 5  #: the device's store cannot be written (disk full, read-only, I/O error)
    UNREACHABLE = 6  #: the relay could not be reached (refused, DNS, TLS, timed out)
    DEVICE_BUSY = 7  #: another process is using this device's home
    INTERRUPTED = 130  #: Ctrl-C (128 + SIGINT), as shells report it
    PIPE_CLOSED = 141  #: stdout was closed early (``| head``): 128 + SIGPIPE, nothing on stderr
