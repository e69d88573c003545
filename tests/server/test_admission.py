"""The connection caps, sans-I/O: who is served, refused or dropped, and the derived default."""

from __future__ import annotations

import pytest

from tidings.server.admission import (
    FD_RESERVE,
    MAX_CONNECTIONS_AUTO_CEILING,
    REFUSING_SLOTS,
    Admission,
    Caps,
    Verdict,
    address_key,
    resolve_max_connections,
)
from tidings.server.logs import Throttle


def verdicts(admission: Admission, address: str, n: int) -> list[tuple[Verdict, str | None]]:
    return [(d.verdict, d.cap) for d in (admission.decide(address) for _ in range(n))]


def test_connections_over_the_total_cap_are_refused_then_dropped_then_full() -> None:
    admission = Admission(Caps(2, refusing=3, refusing_per_address=2))
    assert verdicts(admission, "10.0.0.1", 2) == [(Verdict.ADMIT, None)] * 2
    assert not admission.full
    # Over the total cap: told, while refusing slots last (2 for this address, 3 in all).
    assert verdicts(admission, "10.0.0.1", 3) == [
        (Verdict.REFUSE, "total"),
        (Verdict.REFUSE, "total"),
        (Verdict.DROP, "total"),
    ]
    assert verdicts(admission, "10.0.0.2", 1) == [(Verdict.REFUSE, "total")]
    assert admission.open == 5 and admission.full  # 2 served + 3 refusing: stop accepting
    admission.release("10.0.0.1", Verdict.ADMIT)
    assert not admission.full
    assert verdicts(admission, "10.0.0.3", 1) == [(Verdict.ADMIT, None)]


def test_the_per_address_cap_does_not_touch_other_addresses() -> None:
    admission = Admission(Caps(10, max_per_address=2, refusing_per_address=1))
    assert verdicts(admission, "a", 4) == [
        (Verdict.ADMIT, None),
        (Verdict.ADMIT, None),
        (Verdict.REFUSE, "per_address"),
        (Verdict.DROP, "per_address"),
    ]
    assert verdicts(admission, "b", 2) == [(Verdict.ADMIT, None)] * 2
    admission.release("a", Verdict.ADMIT)
    assert verdicts(admission, "a", 1) == [(Verdict.ADMIT, None)]


def test_released_addresses_are_forgotten() -> None:
    admission = Admission(Caps(5))
    admission.decide("a")
    admission.decide("b")
    admission.release("a", Verdict.ADMIT)
    admission.release("b", Verdict.ADMIT)
    assert admission.open == 0 and admission.addresses() == 0


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("/run/tidings.sock", "/run/tidings.sock"),
    ],
)
def test_addresses_are_counted_per_ipv4_host_and_per_ipv6_64(host: str, key: str) -> None:
    assert address_key(host) == key


def test_the_default_cap_is_derived_from_the_limit_of_open_files() -> None:
    assert resolve_max_connections(0, 1024) == 1024 - FD_RESERVE - REFUSING_SLOTS
    assert resolve_max_connections(0, 1 << 20) == MAX_CONNECTIONS_AUTO_CEILING
    assert resolve_max_connections(500, 1024) == 500


def test_a_cap_that_does_not_fit_the_limit_says_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"max_connections = 5000 needs 5164 open files .* 1024"):
        resolve_max_connections(5000, 1024)
    with pytest.raises(ValueError, match="leaves no room for connections: raise it"):
        resolve_max_connections(0, 100)


def test_caps_validate() -> None:
    with pytest.raises(ValueError):
        Caps(0)
    with pytest.raises(ValueError):
        Caps(1, max_per_address=-1)


def test_a_throttle_logs_the_first_occurrence_then_once_per_interval_with_a_count() -> None:
    throttle = Throttle(10.0)
    assert throttle.hit(100.0) == 1
    assert [throttle.hit(t) for t in (101.0, 105.0, 109.9)] == [0, 0, 0]
    assert throttle.hit(110.0) == 4  # this one and the three held back
    assert throttle.hit(119.0) == 0
