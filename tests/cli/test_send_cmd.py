"""``tidings send --wait``: what it says while it waits and when the wait ends, and its exit code.

Real ``python -m tidings`` processes against a real relay (the helpers of test_cli.py); the
words for each per-device state are also checked in process (:func:`where_it_is`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings.cli.exits import Exit
from tidings.cli.send_cmd import _per_device
from tidings.delivery import Status
from tidings.store import DeviceRef

from .test_cli import Proc, Server, ok, points, register, run

BOB1, BOB2 = DeviceRef("bob", 1), DeviceRef("bob", 2)


def link(root: Path, url: str, account: str, existing: Path, new: Path) -> None:
    (code,) = ok(root, "link-code", "--home", str(existing), "--json").json_lines()
    register(root, url, account, new, "--link-code", code["code"])


def listen(root: Path, name: str, home: Path, procs: list[Proc]) -> Proc:
    proc = Proc(root, name, ["listen", "--json", "--home", str(home)])
    procs.append(proc)
    proc.wait_for(lambda line: line.get("event") == "connected")
    return proc


# ------------------------------------------------------------------------------- per device


@pytest.mark.proc
@pytest.mark.slow
def test_wait_delivered_says_per_device_how_far_it_got(tmp_path: Path, procs: list[Proc]) -> None:
    server = Server(tmp_path, tmp_path / "data")
    procs.append(server.proc)
    alice, bob1, bob2 = tmp_path / "alice", tmp_path / "bob1", tmp_path / "bob2"
    register(tmp_path, server.url, "alice", alice)
    register(tmp_path, server.url, "bob", bob1)
    link(tmp_path, server.url, "bob", bob1, bob2)

    # Nobody online: the relay has it (✓), which is not "in the outbox".
    both_off = run(
        tmp_path, "send", "bob", "one", "--wait", "delivered", "--timeout", "2",
        "--home", str(alice),
    )  # fmt: skip
    assert both_off.code == Exit.TIMED_OUT, both_off.err
    assert both_off.out.splitlines()[-1] == (
        "timed out after 2 s waiting for ✓✓ delivered: ✓ stored by the relay; not yet "
        "delivered to bob.1, bob.2 (offline?)"
    )

    # bob.1 online, bob.2 not.
    listen(tmp_path, "bob1-listen", bob1, procs)
    one_off = run(
        tmp_path, "send", "bob", "two", "--wait", "delivered", "--timeout", "4", "--json",
        "--home", str(alice),
    )  # fmt: skip
    assert one_off.code == Exit.TIMED_OUT, one_off.err
    last = one_off.json_lines()[-1]
    assert last["event"] == "timeout" and last["wanted"] == "delivered"
    assert last["status"] == "sent" and last["in_outbox"] is False
    assert last["devices"] == {"bob.1": "delivered", "bob.2": "sent"}
    text = run(
        tmp_path, "send", "bob", "three", "--wait", "delivered", "--timeout", "4",
        "--home", str(alice),
    )  # fmt: skip
    assert text.out.splitlines()[-1] == (
        "timed out after 4 s waiting for ✓✓ delivered: ✓✓ delivered to bob.1; not yet "
        "delivered to bob.2 (offline?)"
    )

    # Both online: reached, exit 0.
    listen(tmp_path, "bob2-listen", bob2, procs)
    done = ok(
        tmp_path, "send", "bob", "four", "--wait", "delivered", "--json", "--home", str(alice)
    )
    lines = done.json_lines()
    delivered = {x["device"] for x in lines if x.get("status") == "delivered"}
    assert delivered == {"bob.1", "bob.2"}
    assert lines[-1]["event"] == "status"
    assert server.stop() == 0


@pytest.mark.proc
@pytest.mark.slow
def test_a_note_to_self_waits_for_the_other_own_devices(tmp_path: Path, procs: list[Proc]) -> None:
    server = Server(tmp_path, tmp_path / "data")
    procs.append(server.proc)
    phone, laptop, solo = tmp_path / "phone", tmp_path / "laptop", tmp_path / "solo"
    register(tmp_path, server.url, "alice", phone)
    link(tmp_path, server.url, "alice", phone, laptop)

    off = run(
        tmp_path, "send", "alice", "note", "--wait", "delivered", "--timeout", "2",
        "--home", str(phone),
    )  # fmt: skip
    assert off.code == Exit.TIMED_OUT, off.err
    assert off.out.splitlines()[-1].endswith(
        "✓ stored by the relay; not yet delivered to alice.2 (offline?)"
    )

    listen(tmp_path, "laptop-listen", laptop, procs)
    on = ok(tmp_path, "send", "alice", "note 2", "--wait", "delivered", "--json",
            "--home", str(phone))  # fmt: skip
    last = on.json_lines()[-1]
    assert (last["status"], last["device"]) == ("delivered", "alice.2")

    # A single device has no one to deliver a note to: said at once, not a 30 s wait.
    register(tmp_path, server.url, "solo", solo)
    alone = ok(tmp_path, "send", "solo", "memo", "--wait", "delivered", "--home", str(solo))
    assert alone.out.splitlines()[-1] == (
        "solo has no other device: there is nothing to deliver it to"
    )
    assert server.stop() == 0


# ------------------------------------------------------------------------------- refusals


@pytest.mark.proc
@pytest.mark.slow
def test_a_full_queue_is_shown_once_per_refusal_and_the_message_stays_queued(
    tmp_path: Path, procs: list[Proc]
) -> None:
    # 4, of which 2 for strangers: alice's first message to bob, then her profile key (sealed
    # sender, docs/protocol.md §14.1) fill what bob's queue keeps for strangers
    server = Server(tmp_path, tmp_path / "data", 0, "server", "--max-queue", "4")
    procs.append(server.proc)
    alice, bob = tmp_path / "alice", tmp_path / "bob"
    register(tmp_path, server.url, "alice", alice)
    register(tmp_path, server.url, "bob", bob)
    ok(tmp_path, "send", "bob", "fills the queue", "--home", str(alice))

    full = run(tmp_path, "send", "bob", "waits", "--timeout", "3", "--json", "--home", str(alice))
    assert full.code == Exit.TIMED_OUT, full.err
    lines = full.json_lines()
    mid = lines[0]["message_id"]
    refused = [x for x in lines if x["event"] == "refused"]
    assert refused and all(x["code_name"] == "QUEUE_FULL" and not x["final"] for x in refused)
    # once per refusal: as many lines as the trace has refusals
    assert len(refused) == sum(p == "refused:QUEUE_FULL" for p in points(tmp_path, alice, mid))
    assert len({x["at"] for x in refused}) == len(refused)
    last = lines[-1]
    assert last["event"] == "timeout" and last["in_outbox"] is True
    assert last["refused"] == "QUEUE_FULL" and last["status"] == "pending"

    text = run(tmp_path, "send", "bob", "also waits", "--timeout", "2", "--home", str(alice))
    assert text.code == Exit.TIMED_OUT
    assert "refused by the relay: QUEUE_FULL" in text.out
    assert text.out.splitlines()[-1].startswith(
        "timed out after 2 s waiting for ✓ sent: … still only in this device's outbox (the "
        "relay refused it for now (QUEUE_FULL: "
    )
    assert server.stop() == 0


@pytest.mark.proc
@pytest.mark.slow
def test_a_final_refusal_exits_4_and_says_it_was_not_sent(tmp_path: Path) -> None:
    server = Server(tmp_path, tmp_path / "data")
    try:
        alice = tmp_path / "alice"
        register(tmp_path, server.url, "alice", alice)
        result = run(tmp_path, "send", "nobody", "hi", "--json", "--home", str(alice))
        assert result.code == Exit.REFUSED, result.err
        queued, refused, failed = result.json_lines()
        assert refused["event"] == "refused" and refused["final"] is True
        assert refused["code_name"] == "NO_SUCH_ACCOUNT"
        assert failed == {
            "event": "failed",
            "message_id": queued["message_id"],
            "status": "failed",
            "code": refused["code"],
            "code_name": "NO_SUCH_ACCOUNT",
            "reason": refused["reason"],
        }
        text = run(tmp_path, "send", "nobody", "hi", "--home", str(alice))
        assert text.code == Exit.REFUSED
        assert text.out.splitlines()[-1] == (
            f"! not sent: the relay refused it for good (NO_SUCH_ACCOUNT: {refused['reason']}); "
            "it is no longer in the outbox"
        )
        assert server.stop() == 0
    finally:
        server.proc.kill()


# ------------------------------------------------------------------------------- the words


def test_the_words_for_each_mix_of_device_states() -> None:
    sent = {BOB1: Status.SENT}
    assert _per_device(sent, Status.DELIVERED) == (
        "✓ stored by the relay; not yet delivered to bob.1 (offline?)"
    )
    mixed = {BOB1: Status.READ, BOB2: Status.DELIVERED, DeviceRef("bob", 3): Status.SENT}
    assert _per_device(mixed, Status.READ) == (
        "R read on bob.1; ✓✓ delivered to bob.2; not yet read there; not yet delivered to "
        "bob.3 (offline?)"
    )
    gone = {BOB1: Status.DELIVERED, BOB2: Status.EXPIRED}
    assert _per_device(gone, Status.READ) == (
        "✓✓ delivered to bob.1; not yet read there; ✗ expired before bob.2 fetched it"
    )
    assert _per_device({}, Status.DELIVERED) == "✓ stored by the relay"
