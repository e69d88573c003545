"""The checker's ``skipped`` rule on doctored runs of ``reconnect-storm``
(:mod:`tidings.lab.scenarios_storm`): a device whose cursor moved past an unfetched item.

The doctored run is the XMPP client's bug: bob.1 was offline while carol.1 sent to it; on
reconnect a live message from alice.1 arrived first and moved its cursor past carol.1's, which it
never fetched. carol.1's message is the only one from carol.1, so no per-stream gap shows it.
"""

from __future__ import annotations

from pathlib import Path

from tests.lab.test_checker import FakeRun
from tidings.delivery import Status
from tidings.lab.checker import check, format_violations


def _run(tmp_path: Path) -> tuple[FakeRun, bytes, bytes]:
    r = FakeRun(tmp_path, "reconnect-storm")
    for label in ("alice.1", "bob.1", "carol.1"):
        r.device(label)
    queued = r.send("carol.1", "bob", 101.0)  # queued while bob.1 is offline
    r.ack("carol.1", queued, 101.2)
    live = r.send("alice.1", "bob", 102.0)  # the live message of the catch-up window
    r.ack("alice.1", live, 102.2)
    return r, queued, live


def test_a_cursor_moved_past_an_unfetched_item_is_skipped(tmp_path: Path) -> None:
    r, queued, live = _run(tmp_path)
    r.deliver("bob.1", "alice.1", live, 103.0)  # only the live one: the queued one is skipped
    result = check(r.finish())
    assert {v.kind for v in result.violations} == {"lost", "skipped"}
    (v,) = [v for v in result.violations if v.kind == "skipped"]
    assert (v.message_id_hex, v.device) == (queued.hex(), "bob.1")
    assert live.hex() in v.detail and "cursor moved past an unfetched item" in v.detail
    assert not any(v.kind == "reordered" for v in result.violations)  # no stream has a gap


def test_the_newest_message_missing_is_lost_but_not_skipped(tmp_path: Path) -> None:
    r, queued, _ = _run(tmp_path)
    r.deliver("bob.1", "carol.1", queued, 103.0)  # nothing later held: no cursor went past it
    result = check(r.finish())
    assert {v.kind for v in result.violations} == {"lost"}


def test_an_item_reported_expired_is_an_honest_gap(tmp_path: Path) -> None:
    r, queued, live = _run(tmp_path)
    r.status("carol.1", queued, "bob.1", Status.EXPIRED, 150.0)
    r.deliver("bob.1", "alice.1", live, 151.0)
    result = check(r.finish())
    assert result.ok, format_violations(result)


def test_skipped_is_judged_only_once_settled(tmp_path: Path) -> None:
    r, _, live = _run(tmp_path)
    r.deliver("bob.1", "alice.1", live, 103.0)
    result = check(r.finish(settled=False))
    assert result.ok, format_violations(result)


def test_every_delivered_in_any_order_is_ok(tmp_path: Path) -> None:
    r, queued, live = _run(tmp_path)
    r.deliver("bob.1", "alice.1", live, 103.0)
    r.deliver("bob.1", "carol.1", queued, 104.0)  # fetched after the live one, not skipped
    result = check(r.finish())
    assert result.ok, format_violations(result)
