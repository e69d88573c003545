"""Which of a relay's URLs to connect to: a sticky current node, the next one on failure, back
to the preferred one in time (sans-I/O, pure time: the caller passes ``now``, monotonic).

A relay may run as several nodes (``tidings server`` processes on one PostgreSQL database, all
with the relay's one ``server.key``): a device then knows it by several URLs, in order of
preference (the nearest node first). The device pins one relay key, and every node presents it,
so any node is the relay; the database is the truth, so a device may connect to any of them and
HELLO's cursor resumes where the last committed batch ended, whichever node served it.

:class:`RelayNodes` keeps the **current** URL and moves it:

* an attempt that fails before the session opens (refused, unreachable, a close before
  WELCOME): the next URL, in order, wrapping around. The connection core's backoff
  (:mod:`tidings.client.reconnect`, with its jitter) still spaces the attempts, so a relay whose
  every node is down is not hammered, and clients cut off together do not come back in step;
* a session that was open and ended: the **same** URL once more (a network blip leaves the node
  where it was); if that attempt fails, the rule above moves on. A node that was killed costs one
  refused connect;
* back to the preferred (first) URL: a device that left it does not cut a working session to go
  back, but when a session on another node ends after :data:`RETURN_TO_PREFERRED_AFTER`
  seconds away, its next attempt is the preferred URL again (if that fails, the next one).

One URL (every home registered before this existed) behaves exactly as before: it is always
the current one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import urlparse

from ..errors import ConfigError

__all__ = [
    "MAX_RELAY_URLS",
    "RETURN_TO_PREFERRED_AFTER",
    "RelayNodes",
    "check_url",
    "parse_relay_urls",
]

#: The most URLs a device keeps for its relay: each failed one costs an attempt and a backoff
#: step, so a relay with more nodes than this belongs behind a load balancer (docs/haproxy.cfg).
MAX_RELAY_URLS = 16
#: Seconds away from the preferred URL after which the next reconnect tries it first again: long
#: enough that a node that is down is not retried on every blip, short enough that a device is
#: back on its nearest node within minutes of it coming back.
RETURN_TO_PREFERRED_AFTER = 300.0


class RelayNodes:
    """The relay's URLs and the current one (see the module docstring).

    Args:
        urls: the relay's URLs, preferred first (1 to :data:`MAX_RELAY_URLS`, no duplicates).

    Raises:
        ValueError: no URL, too many, or a duplicate.
    """

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("a relay needs at least one URL")
        if len(urls) > MAX_RELAY_URLS:
            raise ValueError(f"at most {MAX_RELAY_URLS} relay URLs, got {len(urls)}")
        if len(set(urls)) != len(urls):
            raise ValueError("a relay URL is given twice")
        self.urls = tuple(urls)
        #: The index of the current URL in :attr:`urls`.
        self.index = 0
        #: When the current URL stopped being the preferred one (``None``: it is the preferred).
        self.away_since: float | None = None

    @property
    def current(self) -> str:
        """The URL the next attempt connects to."""
        return self.urls[self.index]

    def attempt_failed(self, now: float) -> None:
        """An attempt to :attr:`current` failed before its session opened: move to the next."""
        if len(self.urls) == 1:
            return
        if self.index == 0:
            self.away_since = now
        self.index = (self.index + 1) % len(self.urls)
        if self.index == 0:
            self.away_since = None

    def session_ended(self, now: float) -> None:
        """A session that was open on :attr:`current` ended: try it again, unless it is time to
        go back to the preferred URL."""
        if self.away_since is not None and now - self.away_since >= RETURN_TO_PREFERRED_AFTER:
            self.index = 0
            self.away_since = None


def check_url(url: str) -> str:
    """Validate a relay URL (``ws://host:port/v1`` or ``wss://…``).

    Raises:
        ConfigError: it is not one, in one line naming it.
    """
    try:
        parsed = urlparse(url)
        parsed.port  # noqa: B018 - raises on a port that is not a number below 65536
    except ValueError:
        raise ConfigError(f"server URL must look like ws://host:port/v1, not {url!r}") from None
    if parsed.scheme not in ("ws", "wss") or not parsed.hostname or any(c.isspace() for c in url):
        raise ConfigError(f"server URL must look like ws://host:port/v1, not {url!r}")
    return url


def parse_relay_urls(texts: Iterable[str]) -> tuple[str, ...]:
    """The relay URLs given as ``--server`` values (each may hold several, comma-separated),
    checked, in order: 1 to :data:`MAX_RELAY_URLS`, no duplicates.

    Raises:
        ConfigError: none given, a bad URL, a duplicate, or too many (one line naming it).
    """
    urls = [u.strip() for text in texts for u in text.split(",") if u.strip()]
    if not urls:
        raise ConfigError("give the relay URL with --server (several: repeat it, or a,b)")
    for url in urls:
        check_url(url)
    twice = sorted({u for u in urls if urls.count(u) > 1})
    if twice:
        raise ConfigError(f"relay URL given twice: {', '.join(twice)}")
    if len(urls) > MAX_RELAY_URLS:
        raise ConfigError(
            f"at most {MAX_RELAY_URLS} relay URLs (got {len(urls)}): put a load balancer in "
            "front of a relay with more nodes"
        )
    return tuple(urls)
