"""The relay's limits against hostile peers (issue 8): how much each account, device and source
address may ask for, and what the relay answers past it.

======================  ===========================  ===========================================
what                    budget per                   past it
======================  ===========================  ===========================================
SEND                    account (smaller when new)   REFUSED RATE_LIMITED, ``retry_after``
PREKEY_FETCH            (device, target device),     REQUEST_FAILED RATE_LIMITED,
                        source address, new account  ``retry_after``
one-time prekeys        target device                the bundle comes without one-time prekeys
handed out                                           (signed + last-resort KEM prekey)
GET_DEVICES (others)    account, source address      REQUEST_FAILED RATE_LIMITED, ``retry_after``
REGISTER                source address               ERROR RATE_LIMITED, the wait in the reason
LINK_CODE_REQUEST       account                      REQUEST_FAILED RATE_LIMITED, ``retry_after``
SEALED_SEND             (access key, recipient),     SEALED_SENT RATE_LIMITED, ``retry_after``
                        source address
======================  ===========================  ===========================================

Invariants:

- Sans-I/O: every method takes ``now`` from the relay's *monotonic* clock (never the wall clock:
  a clock stepped back an hour would freeze every budget for that hour).
- A refused request spends nothing from any of its budgets
  (:func:`~tidings.delivery.ratelimit.try_take_all`), so its ``retry_after`` is exact.
- A budget configured as 0 is off; a request without a source address (none known) passes the
  per-address budgets.
- Memory is bounded: each budget keeps at most
  :data:`~tidings.delivery.ratelimit.MAX_TRACKED_KEYS` buckets (least recently used evicted).

Why the target's one-time prekeys degrade instead of being refused: a drained device would make
every new contact's session fall back to the last-resort key until its owner refills, and a
refusal would stop new contacts from starting a session at all. Past the per-device budget the
relay hands out what Signal's server hands out once the one-time keys are gone (the signed
prekey and the last-resort KEM prekey): sessions still start, and the pool is kept for later
contacts. A device with no last-resort KEM prekey is refused RATE_LIMITED instead.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from ..delivery.ratelimit import RateLimiter, try_take_all
from ..store import DeviceRef
from .config import DEFAULT_RATE_BURST, DEFAULT_RATE_PER_SECOND, ServerConfig
from .prekeys import PREKEY_FETCH_BURST, PREKEY_FETCH_WINDOW

__all__ = [
    "HOUR",
    "IPV6_PREFIX",
    "LINK_CODES_PER_HOUR",
    "PUSH_REQUESTS_PER_HOUR",
    "SEALED_ADDRESS_BURST",
    "SEALED_ADDRESS_BURST_FACTOR",
    "SEALED_ADDRESS_RATE",
    "SEALED_ADDRESS_RATE_FACTOR",
    "SEALED_RECIPIENT_BURST",
    "SEALED_RECIPIENT_RATE",
    "Limits",
    "address_key",
    "client_address",
    "decode_key",
    "encode_key",
]

#: The window of every "per hour" budget.
HOUR = 3600.0

#: IPv6 addresses share a budget per /64: one host (or one home network) usually holds a whole
#: /64 (RFC 4291 §2.5.1 interface ids, RFC 6177), so per-address budgets on full addresses
#: would give one machine 2^64 of them.
IPV6_PREFIX = 64

#: Link codes one account may ask for per hour: linking a few devices needs a few; each code is
#: a stored row until it expires.
LINK_CODES_PER_HOUR = 10


#: PUSH_REGISTER and PUSH_UNREGISTER per device per hour: a device registers when it starts and
#: when its push service renews the subscription; each costs the relay a name lookup and a write.
PUSH_REQUESTS_PER_HOUR = 20


#: Sealed sends per (access key, recipient account): every sender holding that key, together,
#: to that account — its contacts, whom the relay cannot tell apart (issue 12). They get what
#: one account may send (`rate_per_second`, `rate_burst`: 20 a second, bursts of 100 by
#: default): a contact streaming to the account, or a contact's client flushing its outbox
#: after a day offline, is not slowed more than an identified sender would be; a holder of a
#: leaked key (a contact blocked before the rotation reached it) fills the recipient's queue no
#: faster than one account could. (A first version allowed 1 a second, bursts of 60: a 500-message
#: stream through `tidings daemon` then crawled at one a second once it went sealed.)
SEALED_RECIPIENT_RATE = DEFAULT_RATE_PER_SECOND
#: See :data:`SEALED_RECIPIENT_RATE`.
SEALED_RECIPIENT_BURST = DEFAULT_RATE_BURST

#: Sealed sends per source address (an IPv6 /64), as multiples of one account's budget: what
#: one machine or one home network sends sealed, to anyone — several people's devices behind
#: one address, and a wrong key spends too (a guessed key is a pair of its own), so this is the
#: budget that bounds probing for access keys (128-bit keys: hopeless anyway) and what one host
#: may queue in strangers' queues (bounded per queue by the strangers' share, too).
SEALED_ADDRESS_RATE_FACTOR = 2.5
#: See :data:`SEALED_ADDRESS_RATE_FACTOR`.
SEALED_ADDRESS_BURST_FACTOR = 10
#: The per-address budget at the default send budget: 50 a second, bursts of 1,000.
SEALED_ADDRESS_RATE = DEFAULT_RATE_PER_SECOND * SEALED_ADDRESS_RATE_FACTOR
#: See :data:`SEALED_ADDRESS_RATE`.
SEALED_ADDRESS_BURST = DEFAULT_RATE_BURST * SEALED_ADDRESS_BURST_FACTOR


def _hourly(count: int) -> RateLimiter[Any] | None:
    """A budget of ``count`` per hour (all of it at once at most), or ``None`` when 0 (off)."""
    return RateLimiter(count / HOUR, count) if count else None


def address_key(address: str | None) -> str | None:
    """The key of ``address``'s per-address budgets: an IPv4 address (also IPv4-mapped IPv6)
    whole, an IPv6 address by its /:data:`IPV6_PREFIX`; ``None`` for none or garbage."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def client_address(peer: str | None, headers: Any, proxy_header: str) -> str | None:
    """The client's address: ``peer`` (the socket's), or, when ``proxy_header`` is not
    ``none``, what the reverse proxy wrote in that header of the upgrade request (for
    ``x-forwarded-for`` its last entry: the one the proxy added, which a client cannot forge).

    ``headers`` is the request's headers, a case-insensitive multidict (picows): of several
    lines of the header, the last counts.
    """
    if proxy_header == "none" or headers is None:
        return peer
    values = headers.getall(proxy_header, [])
    last = str(values[-1]).rsplit(",", 1)[-1].strip() if values else ""
    return last or peer


class Limits:
    """Every budget of the relay, built from its configuration.

    Each ``*`` method returns 0.0 when the request may go on (its tokens are taken), otherwise
    the seconds until it would pass (nothing is taken).

    **Shared between nodes** (issue 14): every budget here is global to the relay, not per
    node, once :attr:`on_take` is set (the cluster sets it: :mod:`.cluster`). Each token a
    request takes is reported to it as ``(budget name, key)``; the cluster tells the other
    nodes, which :meth:`apply` it to their own buckets (:meth:`RateLimiter.debit`). A client
    spreading its requests over N nodes so gets the budget once, not N times, give or take
    what it takes on several nodes within one hint's round trip (a few milliseconds).
    """

    def __init__(self, config: ServerConfig) -> None:
        self.new_account_age = config.new_account_age
        sends: RateLimiter[str] = RateLimiter(config.rate_per_second, config.rate_burst)
        # Never more than an established account gets, whatever the two settings say.
        new_sends: RateLimiter[str] = RateLimiter(
            min(config.new_account_rate_per_second, config.rate_per_second),
            min(config.new_account_rate_burst, config.rate_burst),
        )
        pairs: RateLimiter[tuple[DeviceRef, DeviceRef]] = RateLimiter(
            PREKEY_FETCH_BURST / PREKEY_FETCH_WINDOW, PREKEY_FETCH_BURST
        )
        self._sends, self._new_sends = sends, new_sends  # never off: SEND's fast path
        #: Every budget by its name (the name other nodes know it by), ``None`` when off.
        self._budgets: dict[str, RateLimiter[Any] | None] = {
            "sends": sends,
            "new_sends": new_sends,
            "prekey_pairs": pairs,
            "prekey_addresses": _hourly(config.address_prekey_fetches_per_hour),
            "new_prekey_accounts": _hourly(config.new_account_prekey_fetches_per_hour),
            "one_time": _hourly(config.device_one_time_prekeys_per_hour),
            "lookup_accounts": _hourly(config.account_lookups_per_hour),
            "lookup_addresses": _hourly(config.address_lookups_per_hour),
            "registrations": _hourly(config.address_registrations_per_hour),
            "link_codes": _hourly(LINK_CODES_PER_HOUR),
            "push_requests": _hourly(PUSH_REQUESTS_PER_HOUR),
            # sealed sends: what one account may send (see SEALED_RECIPIENT_RATE), and a
            # multiple of it per address; an operator's --rate/--burst moves both
            "sealed_recipients": RateLimiter(config.rate_per_second, config.rate_burst),
            "sealed_addresses": RateLimiter(
                config.rate_per_second * SEALED_ADDRESS_RATE_FACTOR,
                config.rate_burst * SEALED_ADDRESS_BURST_FACTOR,
            ),
        }
        #: Called with ``(budget name, key)`` for every token taken here (see the class
        #: docstring); ``None`` on a relay of one node.
        self.on_take: Callable[[str, Hashable], None] | None = None

    def is_new(self, created_at: float, wall_now: float) -> bool:
        """Whether an account created at ``created_at`` is new at ``wall_now`` (both wall-clock
        times: the creation time is a stored timestamp, and a day is coarse enough for it)."""
        return wall_now - created_at < self.new_account_age

    def send(self, account: str, new: bool, now: float) -> float:
        """One SEND of ``account`` (``new``: it gets the new-account budget)."""
        # The one budget of every SEND, the relay's most frequent frame: taken directly (one
        # bucket takes nothing when it refuses, as try_take_all's several do).
        name, limiter = ("new_sends", self._new_sends) if new else ("sends", self._sends)
        retry_after = limiter.try_take(account, now)
        if retry_after == 0.0 and self.on_take is not None:
            self.on_take(name, account)
        return retry_after

    def prekey_fetch(
        self, device: DeviceRef, target: DeviceRef, address: str | None, new: bool, now: float
    ) -> float:
        """One PREKEY_FETCH of ``target`` by ``device`` from ``address``."""
        return self._take(
            now,
            ("prekey_pairs", (device, target)),
            ("prekey_addresses", address_key(address)),
            ("new_prekey_accounts", device.account if new else None),
        )

    def one_time_prekeys(self, target: DeviceRef, now: float) -> bool:
        """Whether a bundle of ``target`` may include one-time prekeys (taking one if so)."""
        return self._take(now, ("one_time", target)) == 0.0

    def one_time_wait(self, target: DeviceRef, now: float) -> float:
        """Seconds until ``target`` may hand out a one-time prekey again (taking nothing)."""
        limiter = self._budgets["one_time"]
        return 0.0 if limiter is None else limiter.wait(target, now)

    def lookup(self, account: str, address: str | None, now: float) -> float:
        """One GET_DEVICES of another account by ``account`` from ``address``."""
        return self._take(
            now, ("lookup_accounts", account), ("lookup_addresses", address_key(address))
        )

    def register(self, address: str | None, now: float) -> float:
        """One REGISTER from ``address``."""
        return self._take(now, ("registrations", address_key(address)))

    def link_code(self, account: str, now: float) -> float:
        """One LINK_CODE_REQUEST of ``account``."""
        return self._take(now, ("link_codes", account))

    def push_request(self, device: DeviceRef, now: float) -> float:
        """One PUSH_REGISTER or PUSH_UNREGISTER of ``device``."""
        return self._take(now, ("push_requests", device))

    def sealed_send(
        self, access_key: bytes, recipient: str, address: str | None, now: float
    ) -> float:
        """One SEALED_SEND to ``recipient`` with ``access_key`` (right or wrong: a wrong one
        spends too, so probing costs budget) from ``address``. The pair's key is a digest:
        the budgets (and the hints that share them between nodes) hold no access key."""
        return self._take(
            now,
            ("sealed_recipients", _pair_key(access_key, recipient)),
            ("sealed_addresses", address_key(address)),
        )

    def sealed_multi_send(
        self, recipients: Sequence[tuple[bytes, str]], address: str | None, now: float
    ) -> float:
        """One SEALED_MULTI_SEND naming ``recipients`` (``(access key, account)`` each, right
        or wrong) from ``address``: a token from each pair's budget, as a SEALED_SEND to each
        would take, and one from the address's — all of them or none."""
        return self._take(
            now,
            *(("sealed_recipients", _pair_key(key, account)) for key, account in recipients),
            ("sealed_addresses", address_key(address)),
        )

    def sealed_denied(self, address: str | None, count: int, now: float) -> None:
        """``count`` accounts of a sealed multi-send from ``address`` refused its access key:
        each costs the address one more token (into debt if need be), as the SEALED_SEND that
        tried it would have, so that guessing keys in a multi-send is no cheaper."""
        limiter, key = self._budgets["sealed_addresses"], address_key(address)
        if limiter is None or key is None or count <= 0:
            return
        limiter.debit(key, now, count)
        if self.on_take is not None:
            for _ in range(count):
                self.on_take("sealed_addresses", key)

    def apply(self, name: str, key: object, count: object, now: float) -> None:
        """``count`` tokens of budget ``name`` that another node took for ``key`` (as
        :func:`encode_key` wrote it): taken here too, into debt if need be (at most two
        bursts' worth per call: one message cannot empty a budget for longer).

        Raises:
            ValueError: no such budget, a malformed key, or a count that is not positive
                (another node's message is checked, never trusted).
        """
        decoded = decode_key(name, key)
        if isinstance(count, bool) or not isinstance(count, int | float) or not count > 0:
            raise ValueError(f"not a token count: {count!r}")
        limiter = self._budgets[name]
        if limiter is not None:  # off here: nothing to take
            limiter.debit(decoded, now, min(float(count), 2 * limiter.burst))

    def _take(self, now: float, *budgets: tuple[str, Hashable | None]) -> float:
        """:func:`try_take_all` over the budgets that are on and have a key; each token taken
        is reported to :attr:`on_take`."""
        takes: list[tuple[str, RateLimiter[Any], Hashable]] = []
        for name, key in budgets:
            limiter = self._budgets[name]
            if limiter is not None and key is not None:
                takes.append((name, limiter, key))
        retry_after = try_take_all(now, [(limiter, key) for _, limiter, key in takes])
        if retry_after == 0.0 and self.on_take is not None:
            for name, _, key in takes:
                self.on_take(name, key)
        return retry_after


def _pair_key(access_key: bytes, recipient: str) -> str:
    """The budget key of an (access key, recipient) pair: a digest, holding no access key."""
    return hashlib.blake2s(access_key + recipient.encode(), digest_size=16).hexdigest()


#: The kind of key of each budget: an account or address key (text), a device, or a pair of
#: devices (the fetching device, the fetched one).
_KEY_KINDS = {
    "sends": "text",
    "new_sends": "text",
    "prekey_pairs": "pair",
    "prekey_addresses": "text",
    "new_prekey_accounts": "text",
    "one_time": "device",
    "lookup_accounts": "text",
    "lookup_addresses": "text",
    "registrations": "text",
    "link_codes": "text",
    "push_requests": "device",
    "sealed_recipients": "text",
    "sealed_addresses": "text",
}


def encode_key(key: Hashable) -> object:
    """A budget's key as msgpack carries it: text as is, a device as ``[account, id]``, a
    pair of devices as a list of two of those."""
    if isinstance(key, DeviceRef):
        return [key.account, key.device_id]
    if isinstance(key, tuple):
        return [encode_key(part) for part in key]
    return key


def decode_key(name: str, raw: object) -> Hashable:
    """The key of budget ``name`` that :func:`encode_key` wrote as ``raw``.

    Raises:
        ValueError: no such budget, or ``raw`` is not a key of its kind.
    """
    kind = _KEY_KINDS.get(name)
    if kind is None:
        raise ValueError(f"no budget named {name!r}")
    if kind == "text" and isinstance(raw, str) and raw:
        return raw
    if kind == "device":
        return _device(raw)
    if kind == "pair" and isinstance(raw, list) and len(raw) == 2:
        return (_device(raw[0]), _device(raw[1]))
    raise ValueError(f"not a key of budget {name!r}: {raw!r}")


def _device(raw: object) -> DeviceRef:
    if isinstance(raw, list) and len(raw) == 2:
        account, device_id = raw
        if isinstance(account, str) and account and type(device_id) is int and device_id >= 0:
            return DeviceRef(account, device_id)
    raise ValueError(f"not a device: {raw!r}")
