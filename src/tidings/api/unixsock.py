"""Unix sockets at any path length.

An ``AF_UNIX`` address is at most 107 bytes on Linux, and a device home can be deeper than that
(``/home/…/.local/share/tidings/alice`` is fine; a test's temporary directory may not be). So
the socket is bound and connected through ``/proc/self/fd/N/NAME``, where ``N`` is an open
descriptor of its directory: always short, and it names the same file.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

__all__ = ["bind", "connect"]


@contextlib.contextmanager
def _short(path: Path) -> Iterator[str]:
    """A short name of ``path`` while the context lasts."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def bind(path: Path, mode: int = 0o600) -> socket.socket:
    """A listening Unix socket at ``path``, created with ``mode`` (never wider, whatever the
    umask: it is bound under umask 0o777 & ~mode)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o777 & ~mode)
        try:
            with _short(path) as name:
                sock.bind(name)
        finally:
            os.umask(old)
        sock.listen(64)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def connect(path: Path) -> socket.socket:
    """A connected (blocking) Unix socket to ``path``.

    Raises:
        OSError: nothing listens there (``FileNotFoundError``, ``ConnectionRefusedError``).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with _short(path) as name:
            sock.connect(name)
    except BaseException:
        sock.close()
        raise
    return sock
