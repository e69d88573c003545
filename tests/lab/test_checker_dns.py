"""The checker on doctored runs of ``dns-failure`` and ``route-withdrawal``
(:mod:`tidings.lab.scenarios_dns`).

The broken runs are the failures these scenarios exist to catch: a client that forgets the
relay's address when its resolver fails (it comes back only once DNS answers again, after the
bound), and one that stays off after its route returned. Each fault line is written as the
scenario writes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.lab.test_checker import FakeRun
from tidings.lab.checker import check, format_violations
from tidings.lab.checker_link import liveness_bound
from tidings.lab.device_log import link_path
from tidings.lab.dns import Mode, Zone, build_query, parse_query
from tidings.lab.record import Fault

DNS_BOUND = 10.0 + 2.0 + 5.0 + 0.25 + 3.0  # connect timeout, cap, resolve, attempt delay, slack
K0, K1 = 110.0, 110.5  # the relay's restart, while the resolver times out
DNS_END = K1 + DNS_BOUND + 2.0  # the scenario holds DNS broken until every device is back


def _link(r: FakeRun, label: str, *events: tuple[float, str]) -> None:
    path = link_path(r.dir, label)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [{"t": 100.0, "ev": "start", "hints": False, "settings": {}}]
    lines += [{"t": t, "ev": ev, "reason": "x"} for t, ev in events]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def _dns_run(tmp_path: Path) -> FakeRun:
    r = FakeRun(tmp_path, "dns-failure")
    r.record.write(Fault(DNS_END, "dns_timeout", "resolver", 105.0, DNS_END, {"queries": {}}))
    for label in ("alice.1", "bob.1"):
        r.device(label)
        detail: dict[str, Any] = {"dns": "timeout", "hints": False}
        r.record.write(
            Fault(DNS_END, "relay_restart", label, K0, K1, detail | {"reconnect_within": DNS_BOUND})
        )
    mid = r.send("alice.1", "bob", 101.0)
    r.ack("alice.1", mid, 101.2)
    r.deliver("bob.1", "alice.1", mid, 101.5)
    return r


def test_devices_back_through_the_last_good_address_are_ok(tmp_path: Path) -> None:
    r = _dns_run(tmp_path)
    for label in ("alice.1", "bob.1"):
        _link(r, label, (100.1, "connected"), (K0, "disconnected"), (K1 + 1.1, "connected"))
    result = check(r.finish())
    assert result.ok, format_violations(result)


def test_a_device_that_forgot_the_address_is_unrecovered(tmp_path: Path) -> None:
    r = _dns_run(tmp_path)
    _link(r, "alice.1", (100.1, "connected"), (K0, "disconnected"), (K1 + 1.1, "connected"))
    failing = [(K1 + i, "connect_failed") for i in (1.0, 3.0, 5.0, 9.0)]  # "cannot resolve host"
    _link(
        r,
        "bob.1",
        (100.1, "connected"),
        (K0, "disconnected"),
        *failing,
        (DNS_END + 0.3, "connected"),
    )
    result = check(r.finish())
    assert [(v.kind, v.device) for v in result.violations] == [("unrecovered", "bob.1")]
    assert "relay_restart" in result.violations[0].detail


def test_a_later_restart_cutting_a_device_that_came_back_is_not_held_against_this_one(
    tmp_path: Path,
) -> None:
    r = _dns_run(tmp_path)
    for label in ("alice.1", "bob.1"):  # back at once, then the next phase's restart cuts them
        back = [(K1 + 1.0, "connected"), (K1 + 6.0, "disconnected"), (K1 + 30.0, "connected")]
        _link(r, label, (100.1, "connected"), (K0, "disconnected"), *back)
    result = check(r.finish())
    assert result.ok, format_violations(result)


def _route_run(tmp_path: Path, back: float | None) -> FakeRun:
    bound = liveness_bound(2.0, 2.5)
    r = FakeRun(tmp_path, "route-withdrawal")
    r.device("alice.1")
    detail = {"hints": False, "reconnect_within": bound}
    r.record.write(Fault(120.0, "route_withdrawn", "alice.1", 110.0, 114.0, detail))
    events = [(100.1, "connected"), (112.5, "disconnected"), (113.0, "connect_failed")]
    _link(r, "alice.1", *events, *([(back, "connected")] if back is not None else []))
    return r


@pytest.mark.parametrize("back", [115.5, None, 114.0 + liveness_bound(2.0, 2.5) + 1.0])
def test_route_withdrawal_needs_the_device_back_by_itself(
    tmp_path: Path, back: float | None
) -> None:
    result = check(_route_run(tmp_path, back).finish())
    if back == 115.5:
        assert result.ok, format_violations(result)
    else:
        assert [(v.kind, v.device) for v in result.violations] == [("unrecovered", "alice.1")]


def test_the_zone_answers_each_mode() -> None:
    zone = Zone({"Relay.Lab.Test": "10.78.0.1"}, "10.78.0.2")
    a, aaaa = build_query("relay.lab.test", qid=7), build_query("relay.lab.test", qtype=28)
    reply = zone.answer(a)
    assert reply is not None and reply[:2] == b"\x00\x07" and reply[3] & 0xF == 0
    assert reply.endswith(bytes([10, 78, 0, 1]))
    assert zone.answer(aaaa) == zone.answer(aaaa) and len(zone.answer(aaaa) or b"") == len(aaaa)
    nx = zone.answer(build_query("other.test"))
    assert nx is not None and nx[3] & 0xF == 3
    zone.mode = Mode.WRONG
    assert (zone.answer(a) or b"").endswith(bytes([10, 78, 0, 2]))
    zone.mode = Mode.SERVFAIL
    assert (zone.answer(a) or b"\x00\x00\x00\x00")[3] & 0xF == 2
    zone.mode = Mode.TIMEOUT
    assert zone.answer(a) is None
    assert zone.queries == {"answer": 5, "wrong": 1, "servfail": 1, "timeout": 1}


@pytest.mark.parametrize(
    "datagram",
    [
        b"\x00\x01\x81\x00" + bytes(8),
        build_query("x.test")[:-3],
        build_query("x.test")[:12] + b"\xc0\x0c\x00\x01\x00\x01",
    ],
)
def test_malformed_queries_get_formerr_never_an_exception(datagram: bytes) -> None:
    zone = Zone({}, "10.0.0.1")
    reply = zone.answer(datagram)
    assert reply is not None and reply[3] & 0xF == 1
    assert zone.answer(b"\x00\x01") is None  # no header to answer
    with pytest.raises(ValueError):
        parse_query(datagram)
