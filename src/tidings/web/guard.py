"""Which HTTP requests the local web app answers: the security of a server on loopback.

Sans-I/O: :meth:`Guard.check` takes a request's method, path, headers and cookie in and gives a
:class:`Verdict` out; :mod:`tidings.web.server` applies it. Loopback alone protects nothing
from the browser the user runs: any web page they visit can make it send requests to
``127.0.0.1``. So:

- **A session token** (:data:`TOKEN_BYTES` random bytes) that ``tidings web`` prints in the URL:
  the first request carrying it (``/?token=…``) gets it as an ``HttpOnly``, ``SameSite=Strict``
  cookie and is redirected to a URL without it (so it is not left in the address bar, the
  history or a ``Referer``). Every other request needs the cookie (or the token); compared in
  constant time. Without it: 401.
- **Host** must be the app's own (``127.0.0.1:PORT`` or ``localhost:PORT``): a DNS-rebinding page
  whose name now resolves to 127.0.0.1 sends its own name, and is refused (421).
- **Origin**, when the browser sends one, must be the app's own: a cross-site request is refused
  (403) before it does anything.
- **No state change on GET.** Everything that changes state is a ``POST`` to ``/api/METHOD``
  with a JSON body (``Content-Type: application/json``): a cross-site page can only send that
  after a CORS preflight, which this server never grants; a plain HTML form cannot send it at
  all (415). Other methods: 405.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass
from urllib.parse import parse_qs

__all__ = ["COOKIE_PREFIX", "TOKEN_BYTES", "Guard", "Verdict", "Verdicts"]

#: Bytes of randomness in a session token (256 bits, as a URL-safe string).
TOKEN_BYTES = 32
#: The cookie's name, followed by the port: two apps on one machine keep separate cookies
#: (browsers share cookies between the ports of one host).
COOKIE_PREFIX = "tidings_token_"


class Verdicts(enum.Enum):
    ALLOW = "allow"
    #: the token came in the URL: set the cookie and redirect to the same path without it
    ADOPT_TOKEN = "adopt-token"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Verdicts
    status: int = 200
    reason: str = ""


_ALLOW = Verdict(Verdicts.ALLOW)


class Guard:
    """The checks for one app on ``port`` with session token ``token``."""

    def __init__(self, token: str, port: int) -> None:
        self.token = token
        self.port = port
        self.hosts = frozenset({f"127.0.0.1:{port}", f"localhost:{port}"})
        self.origins = frozenset(f"http://{h}" for h in self.hosts)

    @property
    def cookie(self) -> str:
        """The cookie's name for this app."""
        return f"{COOKIE_PREFIX}{self.port}"

    def check(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        cookies: dict[str, str],
    ) -> Verdict:
        """Whether to answer a request (``headers`` with lower-case names)."""
        host = headers.get("host", "")
        if host not in self.hosts:
            return Verdict(Verdicts.REFUSE, 421, f"not this app's host: {host or 'none'}")
        origin = headers.get("origin")
        if origin is not None and origin not in self.origins:
            return Verdict(Verdicts.REFUSE, 403, f"cross-site request from {origin}")
        if method not in ("GET", "HEAD", "POST"):
            return Verdict(Verdicts.REFUSE, 405, f"method {method} not allowed")
        in_url = parse_qs(query).get("token", [""])[0]
        if in_url and self._is_token(in_url):
            return Verdict(Verdicts.ADOPT_TOKEN, 303) if method == "GET" else _ALLOW
        if not self._is_token(cookies.get(self.cookie, "")):
            return Verdict(Verdicts.REFUSE, 401, "no session: open the URL `tidings web` printed")
        if method == "POST":
            if not path.startswith("/api/"):
                return Verdict(Verdicts.REFUSE, 405, "only /api/ takes POST")
            kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if kind != "application/json":
                return Verdict(Verdicts.REFUSE, 415, "the API takes application/json")
        elif path.startswith("/api/"):
            return Verdict(Verdicts.REFUSE, 405, "the API takes POST (no state change on GET)")
        return _ALLOW

    def _is_token(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())
