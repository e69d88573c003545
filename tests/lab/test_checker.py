"""The checker (tidings.lab.checker) on small synthetic runs: real client stores, real records.

``FakeRun`` builds a run directory the way the lab does (record.jsonl, per-device events, one
ClientStore per device home, a server data dir and log); each test starts from a clean run and
breaks exactly one thing, then proves the checker names it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings.client.connect import DB_NAME
from tidings.client.store import ClientStore, Identity, TracePoint
from tidings.delivery import Message, Status
from tidings.lab.checker import CheckResult, check, format_violations
from tidings.lab.record import (
    Composed,
    DeviceStarted,
    Fault,
    JsonlWriter,
    ReadMarked,
    Received,
    RunStarted,
    ServerStarted,
    Settled,
    StatusChanged,
    decode_event,
    events_path,
)
from tidings.lab.record_read import load_run, read_jsonl
from tidings.store.base import DeviceRef


def _ref(label: str) -> DeviceRef:
    account, _, device = label.rpartition(".")
    return DeviceRef(account, int(device))


class FakeRun:
    """A run directory under construction. Times: lab clock == device clock (offset 0)."""

    def __init__(self, root: Path, scenario: str = "clean", seed: int = 7) -> None:
        self.dir = root / "run"
        self.record = JsonlWriter(self.dir / "record.jsonl")
        self.record.write(RunStarted(100.0, scenario, seed, True))
        self.stores: dict[str, ClientStore] = {}
        self.events: dict[str, JsonlWriter] = {}
        self.accounts: dict[str, list[str]] = {}
        self.seq: dict[str, int] = {}
        self.n = 0
        self.data_dir = self.dir / "server" / "data"
        self.data_dir.mkdir(parents=True)
        (self.data_dir / "relay.db").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 4)
        (self.data_dir / "relay.db-wal").write_bytes(b"\x37\x7f\x06\x82 ciphertext only")
        (self.dir / "server" / "relay.log").write_text("relay: listening\n")
        self.record.write(ServerStarted(100.0, "server/data", "server/relay.log"))

    def device(self, label: str) -> None:
        ref = _ref(label)
        home = self.dir / "homes" / label
        home.mkdir(parents=True)
        store = ClientStore(home / DB_NAME)
        store.save_identity(Identity(bytes(32), ref.account, ref.device_id, label, "ws://x"))
        self.stores[label] = store
        self.events[label] = JsonlWriter(events_path(self.dir, label))
        self.accounts.setdefault(ref.account, []).append(label)
        self.seq[label] = 0
        self.record.write(DeviceStarted(100.0, ref.account, ref.device_id, f"homes/{label}"))

    def send(
        self, sender: str, to: str, at: float, *, line: bool = True, skew: float = 0.0
    ) -> bytes:
        """Compose (durable) and, with ``line``, write the composed event; ``skew``: the
        sender's clock minus the lab clock (the store's time; the line keeps the lab's)."""
        self.n += 1
        mid = self.n.to_bytes(16, "big")
        own = _ref(sender).account
        conv = ":".join(sorted({own, to}))
        body = f"tdlab-7-{sender}-{self.n}-marker"
        _, msg = self.stores[sender].compose(mid, to, conv, body.encode(), at + skew)
        if line:
            self.events[sender].write(Composed(at, mid.hex(), to, conv, msg.counter, body))
        return mid

    def targets(self, sender: str, to: str) -> list[str]:
        own = _ref(sender).account
        return [d for d in [*self.accounts[to], *self.accounts[own]] if d != sender]

    def ack(self, sender: str, mid: bytes, at: float) -> None:
        store = self.stores[sender]
        msg = store.message(mid)
        assert msg is not None and msg.recipient is not None
        store.add_trace(mid, TracePoint.WRITTEN, at - 0.05)
        store.add_trace(mid, TracePoint.TCP_ACKED, at - 0.04)
        devices = [_ref(d) for d in self.accounts[msg.recipient]]
        store.mark_sent(mid, at, at, devices)
        for d in devices:
            self.events[sender].write(StatusChanged(at, mid.hex(), str(d), "sent", "SENT"))

    def deliver(
        self, device: str, sender: str, mid: bytes, at: float, *, event: bool = True
    ) -> None:
        """Store at ``device`` (shown), write its received event, and the ✓✓ at the sender."""
        msg = self.stores[sender].message(mid)
        assert msg is not None
        self.seq[device] += 1
        content = Message(msg.conversation, msg.counter, msg.sent_at, msg.body)
        key = (_ref(sender), mid)
        self.stores[device].commit_incoming(self.seq[device], _ref(sender), mid, content, at,
                                            surfaced=[key], recipient=msg.recipient)  # fmt: skip
        if event:
            self.received(device, sender, mid, at)
        if _ref(device).account == msg.recipient:
            self.status(sender, mid, device, Status.DELIVERED, at + 0.01)

    def received(self, device: str, sender: str, mid: bytes, at: float) -> None:
        msg = self.stores[sender].message(mid)
        assert msg is not None
        line = Received(at, mid.hex(), sender, msg.conversation, msg.counter, False)
        self.events[device].write(line)

    def status(self, sender: str, mid: bytes, device: str, status: Status, at: float) -> None:
        store = self.stores[sender]
        store.update_status(mid, _ref(device), status, at)
        point = TracePoint.DELIVERED if status is Status.DELIVERED else TracePoint[status.name]
        store.add_trace(mid, point.at(_ref(device)), at)
        name = status.name.lower()
        self.events[sender].write(StatusChanged(at, mid.hex(), device, name, status.name))

    def deliver_all(self, sender: str, mid: bytes, at: float) -> None:
        to = self.stores[sender].message(mid)
        assert to is not None and to.recipient is not None
        for d in self.targets(sender, to.recipient):
            self.deliver(d, sender, mid, at)

    def finish(self, *, settled: bool = True) -> Path:
        if settled:
            self.record.write(Settled(200.0))
        for w in [self.record, *self.events.values()]:
            w.close()
        for s in self.stores.values():
            s.close()
        return self.dir


@pytest.fixture
def run(tmp_path: Path) -> FakeRun:
    """alice (2 devices) and bob (1 device); alice.1 sent 2 messages to bob, bob.1 one to
    alice, all ✓ and delivered everywhere; one read."""
    r = FakeRun(tmp_path)
    for label in ("alice.1", "alice.2", "bob.1"):
        r.device(label)
    r.record.write(Fault(110.0, "loss", "bob.1", 110.0, 120.0, {"rate": 0.3}))
    r.record.write(Fault(130.0, "server_kill", "relay", 130.0, None, {}))
    for i, (sender, to) in enumerate([("alice.1", "bob"), ("alice.1", "bob"), ("bob.1", "alice")]):
        t = 101.0 + 10 * i
        mid = r.send(sender, to, t)
        r.ack(sender, mid, t + 0.2)
        r.deliver_all(sender, mid, t + 0.5)
    first = (1).to_bytes(16, "big")
    r.status("alice.1", first, "bob.1", Status.READ, 150.0)
    r.events["bob.1"].write(ReadMarked(149.0, (first.hex(),)))
    return r


def kinds(result: CheckResult) -> list[str]:
    return sorted({v.kind for v in result.violations})


def test_clean_run_is_ok_and_counted(run: FakeRun) -> None:
    result = check(run.finish())
    assert result.ok, format_violations(result)
    assert (result.scenario, result.seed, result.settled) == ("clean", 7, True)
    c = result.counts
    assert (c.sent, c.composed_lines, c.acked, c.targets) == (3, 3, 3, 6)
    assert (c.delivered, c.read, c.expired, c.lost) == (4, 1, 0, 0)  # ✓✓ per device
    assert [
        len(result.latencies[p]) for p in ("written", "tcp_acked", "sent", "delivered", "read")
    ] == [3, 3, 3, 4, 1]
    assert result.latencies["sent"] == pytest.approx((0.2, 0.2, 0.2))
    assert result.latencies["read"] == pytest.approx((49.0,))
    assert [m.composed for m in result.messages] == [101.0, 111.0, 121.0]
    assert "no violations" in format_violations(result)


def test_missing_message_at_a_recipient_is_lost_after_settled(run: FakeRun) -> None:
    mid = run.send("alice.1", "bob", 160.0)
    run.ack("alice.1", mid, 160.2)
    run.deliver("alice.2", "alice.1", mid, 160.5)  # the sync copy arrives, bob.1's never does
    result = check(run.finish())
    assert kinds(result) == ["lost"]
    (v,) = result.violations
    assert (v.message_id_hex, v.device) == (mid.hex(), "bob.1")
    assert "false ✓" in v.detail
    assert any("composed" in e.what for e in v.timeline)
    assert [e.t for e in v.timeline] == sorted(e.t for e in v.timeline)
    assert mid.hex() in format_violations(result)


def test_absence_is_not_judged_before_settled(run: FakeRun) -> None:
    mid = run.send("alice.1", "bob", 160.0)  # still in the outbox
    result = check(run.finish(settled=False))
    assert result.ok and not result.settled
    assert result.counts.sent == 4 and result.counts.acked == 3
    assert mid.hex() in {m.mid for m in result.messages}


def test_expired_notice_excuses_a_missing_message(run: FakeRun) -> None:
    mid = run.send("alice.1", "bob", 160.0)
    run.ack("alice.1", mid, 160.2)
    run.deliver("alice.2", "alice.1", mid, 160.5)
    run.status("alice.1", mid, "bob.1", Status.EXPIRED, 170.0)
    result = check(run.finish())
    assert result.ok, format_violations(result)
    assert result.counts.expired == 1


def test_two_received_events_are_duplicated(run: FakeRun) -> None:
    run.received("bob.1", "alice.1", (1).to_bytes(16, "big"), 190.0)
    result = check(run.finish())
    assert kinds(result) == ["duplicated"]
    assert result.violations[0].device == "bob.1"
    assert result.counts.duplicated == 1


def test_counters_out_of_display_order_are_reordered(run: FakeRun) -> None:
    m3 = run.send("alice.1", "bob", 160.0)
    m4 = run.send("alice.1", "bob", 161.0)
    for mid in (m3, m4):
        run.ack("alice.1", mid, 162.0)
        run.deliver("alice.2", "alice.1", mid, 163.0)
    run.deliver("bob.1", "alice.1", m4, 164.0)  # #4 shown before #3
    run.deliver("bob.1", "alice.1", m3, 165.0)
    result = check(run.finish())
    assert kinds(result) == ["reordered"]
    (v,) = result.violations
    assert v.message_id_hex == m3.hex() and "#3 displayed after #4" in v.detail


def test_a_gap_displayed_over_is_reordered_and_lost(run: FakeRun) -> None:
    m3 = run.send("alice.1", "bob", 160.0)
    m4 = run.send("alice.1", "bob", 161.0)
    for mid in (m3, m4):
        run.ack("alice.1", mid, 162.0)
        run.deliver("alice.2", "alice.1", mid, 163.0)
    run.deliver("bob.1", "alice.1", m4, 164.0)  # #3 never comes
    result = check(run.finish())
    assert kinds(result) == ["lost", "reordered"]
    gap = next(v for v in result.violations if v.kind == "reordered")
    assert gap.message_id_hex == m3.hex() and "never displayed" in gap.detail


def test_receipt_after_an_expiry_notice_is_honest(run: FakeRun) -> None:
    mid = run.send("alice.1", "bob", 160.0)
    run.ack("alice.1", mid, 160.2)
    run.deliver("alice.2", "alice.1", mid, 160.5)
    run.status("alice.1", mid, "bob.1", Status.EXPIRED, 161.0)
    run.deliver("bob.1", "alice.1", mid, 162.0)  # fetched just before expiry: ✓✓ wins (G5)
    result = check(run.finish())
    assert result.ok, format_violations(result)
    assert (result.counts.delivered, result.counts.expired) == (5, 0)


def test_final_expired_status_with_message_stored(run: FakeRun) -> None:
    mid = run.send("alice.1", "bob", 160.0)
    run.ack("alice.1", mid, 160.2)
    run.deliver("alice.2", "alice.1", mid, 162.0)
    run.seq["bob.1"] += 1
    msg = run.stores["alice.1"].message(mid)
    assert msg is not None
    content = Message(msg.conversation, msg.counter, msg.sent_at, msg.body)
    run.stores["bob.1"].commit_incoming(run.seq["bob.1"], _ref("alice.1"), mid, content, 162.0,
                                        surfaced=[(_ref("alice.1"), mid)])  # fmt: skip
    run.status("alice.1", mid, "bob.1", Status.EXPIRED, 170.0)
    result = check(run.finish())
    assert kinds(result) == ["expired_and_delivered"]
    assert result.violations[0].device == "bob.1"


def test_stored_message_no_sender_composed_is_phantom(run: FakeRun) -> None:
    mid = (999).to_bytes(16, "big")
    content = Message("alice:bob", 9, 170.0, b"forged")
    run.seq["bob.1"] += 1
    run.stores["bob.1"].commit_incoming(run.seq["bob.1"], _ref("alice.2"), mid, content, 171.0)
    result = check(run.finish())
    assert "phantom" in kinds(result)
    assert any(v.kind == "phantom" and v.message_id_hex == mid.hex() for v in result.violations)


def test_delivered_status_without_the_message_is_false_delivered(run: FakeRun) -> None:
    mid = run.send("alice.1", "bob", 160.0)
    run.ack("alice.1", mid, 160.2)
    run.deliver("alice.2", "alice.1", mid, 160.5)
    run.status("alice.1", mid, "bob.1", Status.DELIVERED, 161.0)  # bob.1 never stored it
    result = check(run.finish(settled=False))  # presence-based: judged before settled too
    assert kinds(result) == ["false_delivered"]
    assert result.violations[0].message_id_hex == mid.hex()


def test_composed_line_not_in_store_is_lost_before_ack(run: FakeRun) -> None:
    run.events["alice.1"].write(Composed(170.0, "ab" * 16, "bob", "alice:bob", 9, "gone-body-x"))
    result = check(run.finish(settled=False))
    assert kinds(result) == ["lost_before_ack"]
    assert result.violations[0].message_id_hex == "ab" * 16


def test_message_not_composed_in_events_is_still_checked(run: FakeRun) -> None:
    mid = run.send("alice.1", "bob", 160.0, line=False)  # killed before writing its line
    result = check(run.finish())
    assert kinds(result) == ["lost"]
    assert {v.message_id_hex for v in result.violations} == {mid.hex()}


@pytest.mark.parametrize(
    "where", ["server/data/relay.db-wal", "server/data/sub/x.bin", "server/relay.log"]
)
def test_body_in_server_files_is_a_plaintext_leak(run: FakeRun, where: str) -> None:
    path = run.dir / where
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(b"\x00\x01 tdlab-7-alice.1-2-marker \x02")
    result = check(run.finish())
    assert kinds(result) == ["plaintext_leak"]
    (v,) = result.violations
    assert v.message_id_hex == (2).to_bytes(16, "big").hex() and where.split("/")[-1] in v.detail
    assert check(run.dir, plaintext_scan=False).ok


def test_truncated_last_line_is_tolerated(run: FakeRun) -> None:
    run_dir = run.finish()
    path = events_path(run_dir, "bob.1")
    with path.open("a") as f:
        f.write('{"t": 199.0, "ev": "received", "mid": "00')
    result = check(run_dir)
    assert result.ok, format_violations(result)
    assert str(path) in result.truncated


def test_cut_line_inside_a_file_is_tolerated(run: FakeRun) -> None:
    run_dir = run.finish()
    path = events_path(run_dir, "bob.1")
    text = path.read_text()
    path.write_text('{"t": 100.5, "ev": "comp\n' + text)  # killed mid-line, then restarted
    assert check(run_dir).ok


@pytest.mark.parametrize("garbage", ["not json at all", '{"t": 1.0, "ev": "warp"}', "[1, 2]",
                                     '{"t": "x", "ev": "settled"}', "\udcff"])  # fmt: skip
def test_garbage_line_is_a_record_error(run: FakeRun, garbage: str) -> None:
    run_dir = run.finish()
    with (run_dir / "record.jsonl").open("a", errors="surrogateescape") as f:
        f.write(garbage + "\n")
    result = check(run_dir)
    assert kinds(result) == ["record_error"]
    assert "record.jsonl:" in result.violations[0].detail


def test_unreadable_store_and_missing_record_are_record_errors(tmp_path: Path) -> None:
    assert kinds(check(tmp_path)) == ["record_error"]  # no record.jsonl at all
    r = FakeRun(tmp_path)
    r.device("alice.1")
    run_dir = r.finish()
    (run_dir / "homes" / "alice.1" / DB_NAME).write_bytes(b"garbage" * 100)
    for suffix in ("-wal", "-shm"):
        (run_dir / "homes" / "alice.1" / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
    result = check(run_dir)
    assert kinds(result) == ["record_error"]
    assert DB_NAME in result.violations[0].detail


@pytest.mark.parametrize("style", ["cwd-relative", "absolute-then-moved", "relative-run-dir"])
def test_record_paths_are_found_from_any_cwd_and_after_a_move(
    run: FakeRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, style: str
) -> None:
    """A record names homes relative to the run directory; one written by an older lab
    (relative to its cwd: ``lab-runs/x/run/homes/alice.1``, read as doubled), or with absolute
    paths into a directory since moved, or read through a relative run directory, still
    finds every store, the relay's files and its log."""
    run_dir = run.finish()
    record = run_dir / "record.jsonl"
    text = record.read_text()
    if style == "cwd-relative":
        for key in ("home", "data_dir", "log"):
            text = text.replace(f'"{key}":"', f'"{key}":"lab-runs/x/run/')
    elif style == "absolute-then-moved":
        for key in ("home", "data_dir", "log"):
            text = text.replace(f'"{key}":"', f'"{key}":"{run_dir}/')
    record.write_text(text)
    if style == "absolute-then-moved":
        (tmp_path / "moved").mkdir()
        run_dir = run_dir.rename(tmp_path / "moved" / "elsewhere")
    if style == "relative-run-dir":
        monkeypatch.chdir(tmp_path)
        run_dir = Path(run_dir.name)
    loaded = load_run(run_dir)
    for dev in loaded.devices:
        assert (loaded.path(dev.home) / DB_NAME).is_file(), dev.home
    result = check(run_dir)
    assert result.ok, format_violations(result)
    assert result.counts.delivered == 4


def test_a_record_path_that_matches_nothing_is_named_under_the_run(run: FakeRun) -> None:
    run_dir = run.finish()
    record = load_run(run_dir)
    assert record.path("homes/zed.1") == run_dir / "homes" / "zed.1"
    assert record.path("/nowhere/homes/zed.1") == Path("/nowhere/homes/zed.1")


def test_record_round_trip(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    with JsonlWriter(run_dir / "record.jsonl") as w:
        w.write(RunStarted(1.0, "s", 3, False))
        w.write(Fault(2.0, "clock_jump", "relay", 2.0, None, {"days": 35}))
    with JsonlWriter(events_path(run_dir, "a.1")) as w:
        w.write(Received(3.0, "0f" * 16, "b.1", "a:b", 1, True))
        w.write(ReadMarked(4.0, ("0f" * 16,)))
    rec = load_run(run_dir)
    assert rec.run == RunStarted(1.0, "s", 3, False)
    assert rec.faults[0].instant and rec.faults[0].detail == {"days": 35}
    assert rec.events["a.1"] == (
        Received(3.0, "0f" * 16, "b.1", "a:b", 1, True),
        ReadMarked(4.0, ("0f" * 16,)),
    )
    assert rec.errors == ("events of a device not in the record: a.1",)
    raw = events_path(run_dir, "a.1").read_text()
    assert '"from":"b.1"' in raw
    assert read_jsonl(events_path(run_dir, "a.1"), decode_event).truncated is False
