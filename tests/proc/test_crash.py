"""Crash tests with real processes: ``kill -9`` of the relay, the sender and the receiver (G1-G3,
G7; DESIGN §5).

Each test runs ``tidings server`` and client drivers (:mod:`tests.proc.driver`) as separate
processes, follows them through their JSON lines (no sleeping: ``select`` on their pipes with a
deadline), kills one of them with SIGKILL at a seeded random point, restarts it on the same data
(and, for the relay, the same port: the clients reconnect to the URL they registered with), and
checks at the end, from the stores themselves, that every message composed is stored exactly
once at the receiver, in the sender's order.

The kill points come from ``random.Random(f"{SEED}-{test}")``; set ``TIDINGS_PROC_SEED`` to
replay or vary them. The seed is in every failure message; every process's stdout and stderr are
kept under ``tmp_path/logs`` for post-mortems.

The drivers work around nothing: a driver that crashes (e.g. ``send()`` raising) fails the test
at once, with its traceback in the message. The two tests at the end are regression tests for
client bugs these tests found: ``send()`` raising after the connection was lost, and a session
that never opened when WELCOME was handled before the connect loop stored the connection.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tidings.client import Client, Disconnected, StatusChanged
from tidings.client.connect import open_channel
from tidings.delivery import ContentKind, Status
from tidings.net.channel import Event, FrameReceived
from tidings.wire import Welcome

from .checks import (
    SEED,
    check_exactly_once,
    has,
    rng_for,
    sender_messages,
    setup,
    wait_all_succeed,
)
from .harness import WAIT, Proc, World, wait_for, world

pytestmark = [pytest.mark.proc, pytest.mark.slow]


def outline(proc: Proc) -> str:
    """The process's lines in short: q queued, s sent, r received, D/C (dis)connected."""
    marks = {"queued": "q", "sent": "s", "received": "r", "disconnected": "D", "connected": "C"}
    out = []
    for line in proc.lines:
        key = next((k for k in marks if k in line), None)
        out.append(marks[key] if key else ".")
    return "".join(out)


def sent_between_disconnects(proc: Proc) -> list[int]:
    """How many ✓ the process printed after each of its ``disconnected`` lines (until the
    next one): a positive count proves its stream was still going when that connection died."""
    counts: list[int] = []
    for line in proc.lines:
        if "disconnected" in line:
            counts.append(0)
        elif "sent" in line and counts:
            counts[-1] += 1
    return counts


def test_server_kill9_during_a_stream_of_sends(tmp_path: Path) -> None:
    """G1/G3/G7: the relay is SIGKILLed three times while a sender streams 300 messages; it
    restarts on the same data dir and port, both clients reconnect by themselves, and the
    receiver ends with every message exactly once, in order, including every one acked ✓."""
    n = 300
    rng = rng_for("server-kill")
    kill_at = sorted(rng.sample(range(20, n - 60, 5), 3))
    note = f"seed={SEED} kill_at={kill_at}"
    with world(tmp_path) as w:
        alice, bob = setup(w)
        receiver = w.driver("receiver", bob, "receive", "--peer", "alice", "--count", str(n))
        # Paced (100/s, at most 32 without ✓) so that the stream is still going when each
        # kill lands, however late the test reacts: 60+ messages are still to be composed.
        sender = w.driver(
            "sender",
            alice,
            *("send", "--to", "bob", "--count", str(n)),
            *("--interval", "0.01", "--max-unacked", "32"),
        )
        both = [sender, receiver]
        acked_before_kill: list[set[str]] = []
        for k in kill_at:
            wait_for(both, has(sender, "sent", k), WAIT, f"{k} ✓ ({note})")
            w.kill_server()
            acked_before_kill.append(set(sender.values("sent")))
            w.start_server()
        wait_all_succeed(both, note)
    out = sender_messages(alice)
    assert [m.message_id.hex() for m in out] == sender.values("queued")
    assert set(sender.values("sent")) == {m.message_id.hex() for m in out}
    # Every kill hit a live stream: ✓ kept coming after each disconnect.
    progress = sent_between_disconnects(sender)
    assert len(progress) >= len(kill_at) and all(c > 0 for c in progress), (
        progress,
        note,
        outline(sender),
    )
    check_exactly_once(bob, out, [receiver], note)
    # G1 in particular: whatever was acked before a kill survived it.
    arrived = {m.message_id.hex() for m in out}
    for acked in acked_before_kill:
        assert acked <= arrived


def test_sender_kill9_while_composing(tmp_path: Path) -> None:
    """G2/G3: the sender is SIGKILLed while composing (its messages already went out, their ✓
    not yet processed); a restarted sender flushes the outbox with the same message ids, the
    relay deduplicates, and the receiver gets everything that was queued, exactly once."""
    n = 200
    k = rng_for("sender-kill").randrange(20, n // 2)
    note = f"seed={SEED} k={k}"
    with world(tmp_path) as w:
        alice, bob = setup(w)
        # --batch n: the driver composes all n without yielding to its event loop, so each
        # compose is written to the relay at once but no ✓ is processed before the kill.
        sender = w.driver(
            "sender",
            alice,
            *("send", "--to", "bob", "--count", str(n), "--batch", str(n), "--wait-connected"),
        )
        wait_for([sender], lambda: sender.count("queued") >= k, WAIT, f"{k} queued ({note})")
        sender.kill()
        queued = sender.values("queued")
        assert k <= len(queued) < n, f"the kill must land while composing ({note})"
        # Each send() waits one turn for its commit, so some ✓ may have been processed.
        seen_sent = set(sender.values("sent"))
        flusher = w.driver("flusher", alice, "send", "--to", "bob", "--count", "0")
        wait_all_succeed([flusher], note)
        out = sender_messages(alice)
        # Everything printed as queued was durable; at most one more committed unprinted.
        assert [m.message_id.hex() for m in out][: len(queued)] == queued
        assert len(out) in (len(queued), len(queued) + 1)
        [pending] = flusher.values("pending")
        flushed = set(flusher.values("sent"))
        # The restart sent again what went out before the kill without its ✓ processed (the
        # relay deduplicates those): each message got its ✓ once, before or after the kill.
        assert 1 <= pending <= len(out) - len(seen_sent), f"{pending} pending ({note})"
        assert len(flushed) == pending and flushed.isdisjoint(seen_sent)
        assert flushed <= {m.message_id.hex() for m in out}
        receiver = w.driver("receiver", bob, "receive", "--peer", "alice", "--count", str(len(out)))
        wait_all_succeed([receiver], note)
    check_exactly_once(bob, out, [receiver], note)


def test_server_down_while_composing(tmp_path: Path) -> None:
    """G2/G7: the relay is stopped (SIGTERM) while the sender composes; what it composes stays
    in the outbox; once the relay is back every message flows, exactly once, in order."""
    n = 200
    hold = rng_for("server-down").randrange(10, n // 2)
    note = f"seed={SEED} hold={hold}"
    with world(tmp_path) as w:
        alice, bob = setup(w)
        receiver = w.driver("receiver", bob, "receive", "--peer", "alice", "--count", str(n))
        sender = w.driver(
            "sender",
            alice,
            *("send", "--to", "bob", "--count", str(n), "--hold-at", str(hold)),
            stdin=True,
        )
        both = [sender, receiver]
        # The receiver must be connected before the relay goes, or it has nothing to notice.
        wait_for(
            both,
            lambda: sender.count("holding") > 0 and receiver.count("connected") > 0,
            WAIT,
            f"sender to hold and receiver to connect ({note})",
        )
        assert w.stop_server() == 0
        wait_for(
            both,
            lambda: sender.count("disconnected") > 0 and receiver.count("disconnected") > 0,
            WAIT,
            "both clients to notice the relay is gone",
        )
        sent_while_up = sender.count("sent")
        sender.write_line("go")
        wait_for(both, lambda: sender.count("composed") > 0, WAIT, f"composing ({note})")
        (outbox,) = sender.values("outbox")
        # Nothing can be acked while the relay is down: the outbox holds everything else.
        assert sender.count("sent") == sent_while_up
        assert outbox == n - sent_while_up >= n - hold, note
        # Nothing composed while it is down reaches the receiver. (The receiver may still show
        # messages delivered before the stop after its Disconnected event: those frames were
        # read before the close and are committed after it, so its count is not frozen.)
        before_stop = set(sender.values("queued")[:hold])
        assert set(receiver.values("received")) <= before_stop, note
        w.start_server()
        wait_all_succeed(both, note)
    out = sender_messages(alice)
    assert [m.message_id.hex() for m in out] == sender.values("queued")
    assert set(sender.values("sent")) == {m.message_id.hex() for m in out}
    check_exactly_once(bob, out, [receiver], note)


def test_receiver_kill9_mid_stream(tmp_path: Path) -> None:
    """G1/G3: the receiver is SIGKILLed while messages stream in; restarted, it resumes from
    its cursor (committed with each message) and ends with every message exactly once."""
    n = 200
    k = rng_for("receiver-kill").randrange(10, n - 80)
    note = f"seed={SEED} k={k}"
    with world(tmp_path) as w:
        alice, bob = setup(w)
        receiver = w.driver("receiver", bob, "receive", "--peer", "alice", "--count", str(n))
        sender = w.driver("sender", alice, "send", "--to", "bob", "--count", str(n))
        wait_for(
            [sender, receiver],
            lambda: receiver.count("received") >= k,
            WAIT,
            f"{k} received ({note})",
        )
        receiver.kill()
        printed_before = receiver.count("received")
        again = w.driver("receiver", bob, "receive", "--peer", "alice", "--count", str(n))
        wait_all_succeed([sender, again], note)
    (already,) = again.values("already")
    # Every message it displayed was committed first; maybe one more was committed unprinted.
    assert printed_before <= already < n, f"the kill must land mid-stream ({note})"
    assert already + again.count("received") == n
    out = sender_messages(alice)
    check_exactly_once(bob, out, [receiver, again], note)


def test_send_as_the_relay_dies_returns_the_id(tmp_path: Path) -> None:
    """G2/G3: send() called in the instant between the loss of the connection (the relay was
    killed) and the client's reconnect loop noticing it still returns the message id: the
    message is durable in the outbox and goes out after the reconnect. A raise here would tell
    the app the compose failed when it did not, and an app that composes again sends it twice.

    Guards against a regression of ``send()`` raising ``ValueError`` there (from
    ``tcp_unacked_bytes`` in net/ws.py, an ``ioctl`` on the closed socket, via
    ``TcpAckWatcher.written``) after it had committed the message."""

    async def scenario(w: World, home: Path) -> tuple[bytes, list[bytes]]:
        client = Client(home)
        stream = client.events()
        try:
            await client.start()
            await client.wait_connected(WAIT)
            w.kill_server()  # the loop is not running meanwhile: the EOF waits for it
            async for event in stream:  # awaits the queue directly: woken first
                if isinstance(event, Disconnected):
                    break
            # The Disconnected event woke this task before the client's own loop saw
            # ``conn.disconnected``: the client still believes its session is open.
            mid = await client.send("bob", "into the gap")
            pending = client.store.pending()  # (and alice's profile key for bob, after it)
            return mid, [i.message_id for i in pending if i.kind != ContentKind.PROFILE_KEY]
        finally:
            await client.close()

    with world(tmp_path) as w:
        alice, _ = setup(w)
        mid, pending = asyncio.run(asyncio.wait_for(scenario(w, alice), WAIT))
    assert len(mid) == 16 and pending == [mid]


class _WelcomeSpy:
    """A channel handler in front of the client's: notes when WELCOME was handled."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.welcomed = asyncio.Event()

    def on_channel_event(self, conn: Any, event: Event) -> None:
        self.inner.on_channel_event(conn, event)
        if isinstance(event, FrameReceived) and isinstance(event.frame, Welcome):
            self.welcomed.set()

    def on_disconnected(self, conn: Any) -> None:
        self.inner.on_disconnected(conn)


def test_session_opens_when_welcome_beats_the_connect_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """G2/G7: a message queued while offline goes out once connected, however the connection's
    callbacks interleave with the client's connect loop. Under load the Noise handshake, HELLO
    and WELCOME can all be handled before ``open_channel()`` returns to ``Session._run`` (seen in
    these tests with two suites on 2 cores); the interceptor below makes that interleaving
    certain.

    Guards against a regression of the session never opening then: ``_on_welcome`` found
    no connection yet (``_run`` stored it only once ``open_channel()`` returned), never sent
    GetDevices, and the client stayed without a session, its outbox stuck, until the connection
    dropped (a sender stayed 30 s so, its relay session open)."""

    async def late_open_channel(url: str, handler: Any, *args: Any, **kwargs: Any) -> Any:
        spy = _WelcomeSpy(handler)
        conn = await open_channel(url, spy, *args, **kwargs)
        async with asyncio.timeout(WAIT):
            await spy.welcomed.wait()  # WELCOME handled before _run goes on
        return conn

    monkeypatch.setattr("tidings.client.session.open_channel", late_open_channel)

    async def scenario(home: Path) -> None:
        client = Client(home)
        stream = client.events()
        try:
            mid = await client.send("bob", "queued while offline")
            await client.start()
            while True:
                # The ✓ takes milliseconds on loopback; 5 s means it is not coming.
                event = await stream.next(5.0)
                if isinstance(event, StatusChanged) and event.message_id == mid:
                    assert event.status is Status.SENT
                    return
        finally:
            await client.close()

    with world(tmp_path) as w:
        alice, _ = setup(w)
        asyncio.run(scenario(alice))
