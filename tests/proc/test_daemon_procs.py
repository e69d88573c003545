"""Real ``tidings`` processes on one device home: the lock (one process connects per home), the
daemon serving ``listen`` and ``send`` while a stream runs, and ``kill -9`` of the daemon during
a long catch-up (DESIGN §9; G1-G3).

The relay, the CLI commands and alice's driver (:mod:`tests.proc.driver`) are separate
processes, followed through their JSON lines (``select`` with deadlines, no sleeping). Whether
two processes were ever connected as one device at once is read from the relay's own log: each
connection's ``[conn] = open bob.1`` and ``[conn] = closed`` lines. What reached whom is read
from the stores at the end. The daemon's progress is followed through its API socket (a
subscription), so each kill lands after a seeded number of stored messages.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tidings.client.connect import DB_NAME
from tidings.client.store import ClientStore, Direction, StoredMessage
from tidings.delivery import Status

from .checks import (
    CONV,
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

#: Statuses that mean ✓✓ (delivered to every device of the recipient) or further.
DELIVERED = {Status.DELIVERED, Status.READ}

_OPEN = re.compile(r"\[(\d+)\] = open (\S+) cursor=")
_CLOSED = re.compile(r"\[(\d+)\] = closed ")


def relay_sessions(w: World, device: str) -> tuple[int, int]:
    """From the relay's logs (every run of it): how many sessions of ``device`` opened, and the
    most that were open at once. Every connection logs ``closed`` when it ends (its channel
    closes, even on a lost TCP connection), so an ``open`` while another is open is an overlap."""
    opened = 0
    most = 0
    for path in sorted(w.logs.glob("server-*.stderr")):
        live: set[str] = set()  # a relay that was killed closes nothing: start each run afresh
        for line in path.read_text(errors="replace").splitlines():
            if (m := _OPEN.search(line)) and m.group(2) == device:
                live.add(m.group(1))
                opened += 1
                most = max(most, len(live))
            elif m := _CLOSED.search(line):
                live.discard(m.group(1))
    return opened, most


class ApiWatch:
    """A subscription to a daemon's API socket, read like a :class:`Proc` by ``wait_for``:
    the answers to requests by id, and the events in order."""

    def __init__(self, home: Path, name: str) -> None:
        self.name = name
        self.eof = False
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(home / "api.sock"))
        self._buf = b""
        self._next_id = 0
        self.answers: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def request(self, method: str, **params: Any) -> int:
        """Send a request; its answer lands in :attr:`answers` under the returned id."""
        self._next_id += 1
        line = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}
        self.sock.sendall(json.dumps(line).encode() + b"\n")
        return self._next_id

    def call(self, method: str, **params: Any) -> Any:
        """A request and its result (events that come meanwhile are kept)."""
        rid = self.request(method, **params)
        wait_for([self], lambda: rid in self.answers, WAIT, f"the answer to {method}")
        answer = self.answers[rid]
        assert "result" in answer, answer
        return answer["result"]

    def read_available(self) -> None:
        try:
            data = self.sock.recv(1 << 16)
        except ConnectionError:
            data = b""
        if not data:
            self.eof = True
            return
        *complete, self._buf = (self._buf + data).split(b"\n")
        for raw in complete:
            msg = json.loads(raw)
            if msg.get("method") == "event":
                self.events.append(msg["params"])
            elif isinstance(msg.get("id"), int):
                self.answers[msg["id"]] = msg

    def last_counter(self) -> int:
        """The highest counter of the message events so far (0: none)."""
        counters = [e["counter"] for e in self.events if e["event"] == "message"]
        return max(counters, default=0)

    def describe(self) -> str:
        return f"--- {self.name} events={len(self.events)} last={self.events[-3:]}"

    def close(self) -> None:
        self.sock.close()


def ended(proc: Proc) -> Callable[[], bool]:
    """A condition for ``wait_for``: ``proc`` closed its stdout (it is exiting)."""
    return lambda: proc.eof


def stored(watch: ApiWatch, last: int, target: int) -> Callable[[], bool]:
    """A condition for ``wait_for``: the daemon stored message ``target`` (its counter), known
    from ``last`` (the newest one when the watch subscribed) or a message event since."""
    return lambda: max(last, watch.last_counter()) >= target


def start_daemon(w: World, home: Path) -> Proc:
    """``tidings daemon`` on ``home``, once its API is up (its first line)."""
    daemon = w.tidings("daemon", home, "daemon")
    wait_for([daemon], has(daemon, "event", 1), WAIT, "the daemon to start")
    assert daemon.lines[0]["event"] == "daemon", daemon.describe()
    return daemon


def interrupt(proc: Proc) -> int:
    """Ctrl-C (SIGINT), as a person stops ``listen``; its exit code."""
    os.kill(proc.pid, signal.SIGINT)
    return proc.wait_exit()


def refused_busy(proc: Proc, holder: Proc) -> None:
    """``proc`` exited 7 at once with one line naming the holder's pid and command."""
    code = proc.wait_exit()
    err = proc.stderr_path.read_text().splitlines()
    assert code == 7, (code, err)
    assert len(err) == 1 and f"in use by process {holder.pid}" in err[0], err
    assert proc.lines == [], proc.lines  # it printed nothing: it never queued or connected


def outgoing(home: Path) -> list[StoredMessage]:
    with ClientStore(home / DB_NAME) as store:
        return [m for m in store.messages(CONV, limit=10**9) if m.direction is Direction.OUT]


def assert_delivered(home: Path, messages: list[StoredMessage], note: str) -> None:
    """Every one of ``messages`` (sent from ``home``) is ✓✓ in the sender's store."""
    with ClientStore(home / DB_NAME) as store:
        statuses = [store.message_status(m.message_id) for m in messages]
    short = collections.Counter(s for s in statuses if s not in DELIVERED)
    assert not short, f"not ✓✓ from {home.name}: {dict(short)} ({note})"


def shown_by(listen: Proc) -> list[str]:
    """The ids of the messages ``listen --json`` printed, in order."""
    return [line["message_id"] for line in listen.lines if line.get("event") == "message"]


def test_second_process_on_a_home_refuses_and_never_connects(tmp_path: Path) -> None:
    """DESIGN §9: while ``tidings listen`` runs bob's device, ``send``, a second ``listen`` and
    ``daemon`` on the same home exit 7 at once with one line naming its pid; none of them queues
    anything or connects (the relay saw one session of bob.1 since registration)."""
    with world(tmp_path) as w:
        alice, bob = setup(w)
        listen = w.tidings("listen", bob, "listen")
        wait_for([listen], has(listen, "event", 2), WAIT, "listen to connect")
        assert listen.lines[0]["event"] == "connecting", listen.lines
        assert listen.lines[1] == {"event": "connected", "pattern": "IK"}, listen.lines
        for argv in (("send", "alice", "not sent"), ("listen",), ("daemon",)):
            refused_busy(w.tidings(argv[0], bob, *argv), listen)
        assert outgoing(bob) == []  # refused before composing
        # A message from alice still reaches the one listener, shown once.
        send = w.tidings("send", alice, "send", "bob", "hello", "--wait", "delivered")
        wait_for([send, listen], lambda: send.eof, WAIT, "alice's send")
        assert send.wait_exit() == 0, send.describe()
        assert interrupt(listen) == 0, listen.describe()
        assert [line.get("body") for line in listen.lines if "body" in line] == ["hello"]
        assert w.stop_server() == 0
        opened, most = relay_sessions(w, "bob.1")
    # registration's session, then listen's: the refused processes never connected
    assert (opened, most) == (2, 1), (opened, most)


def test_daemon_serves_listen_and_send_in_parallel(tmp_path: Path) -> None:
    """DESIGN §9, G3: bob's home runs ``tidings daemon``; alice's driver streams 500 messages to
    bob while ``tidings listen`` (started mid-stream) shows them through the daemon and bob's
    home sends to alice with ``tidings send --wait delivered``, a few dozen times. Every message
    of both directions reaches ✓✓, listen shows each of alice's once in order, none stays
    unseen, and the relay never had two sessions of bob.1 at once."""
    n = 500
    replies = 20
    start_listen_at = rng_for("daemon-parallel").randrange(1, n // 2)
    note = f"seed={SEED} listen_at={start_listen_at}"
    with world(tmp_path) as w:
        alice, bob = setup(w)
        daemon = start_daemon(w, bob)
        refused_busy(w.tidings("daemon", bob, "daemon"), daemon)
        sender = w.driver(
            "alice",
            alice,
            *("send", "--to", "bob", "--count", str(n)),
            # ~30/s: the stream outlasts most of bob's replies (a CLI start each)
            *("--until-delivered", "--expect", str(replies), "--interval", "0.03"),
            deadline=90,
        )
        procs = [daemon, sender]
        wait_for(procs, has(sender, "sent", start_listen_at), WAIT, f"alice's ✓ ({note})")
        listen = w.tidings("listen", bob, "listen", "--count", str(n))
        procs.append(listen)
        mid_stream = sender.count("sent")
        overlapped = 0  # replies that reached ✓✓ while alice's stream still ran
        for i in range(replies):
            send = w.tidings("send", bob, "send", "alice", f"reply {i}", "--wait", "delivered")
            wait_for([*procs, send], ended(send), WAIT, f"bob's send {i} ({note})")
            assert send.wait_exit() == 0, f"{send.describe()} ({note})"
            assert send.lines[-1]["status"] == "delivered", send.lines
            overlapped += sender.count("queued") < n
        wait_all_succeed([sender, listen], note)
        assert daemon.terminate() == 0, daemon.describe()
        assert w.stop_server() == 0
        opened, most = relay_sessions(w, "bob.1")
    assert (opened, most) == (2, 1), f"bob.1 sessions (opened, most at once): {(opened, most)}"
    # listen started while the stream ran (so it also met the daemon's unseen ones first)
    assert 0 < mid_stream < n, (mid_stream, note)
    out = sender_messages(alice)
    assert len(out) == n
    assert_delivered(alice, out, note)
    assert set(sender.values("delivered")) == {m.message_id.hex() for m in out}
    check_exactly_once(bob, out, [], note)
    shown = shown_by(listen)
    assert shown == [m.message_id.hex() for m in out], (
        f"listen showed {len(shown)} lines for {n} messages, {len(set(shown))} distinct ({note})"
    )
    with ClientStore(bob / DB_NAME) as store:
        assert store.unseen() == [], note
    back = sender_messages(bob)
    assert len(back) == replies
    assert_delivered(bob, back, note)
    check_exactly_once(alice, back, [], note)
    assert sender.count("received") == replies
    # a quarter: each reply is a CLI start, seconds each on a loaded 2-core machine (7–9 of 20
    # overlapped at load 7–8; 11–14 on a quiet one)
    assert overlapped >= replies // 4, f"only {overlapped} replies during the stream ({note})"


def test_daemon_kill9_during_a_catch_up(tmp_path: Path) -> None:
    """G1/G3: 5,000 messages wait at the relay for bob; ``tidings daemon`` catches up and is
    SIGKILLed at seeded points (after it stored k messages, and once right after it started),
    restarted each time. In the end bob's store holds every message once, in alice's order, none
    held behind a gap; then ``tidings listen`` shows every one of them once, and none stays
    unseen."""
    n = 5_000
    rng = rng_for("daemon-catch-up")
    kill_at = sorted(rng.sample(range(200, n - 500, 50), 5))
    early = rng.randrange(len(kill_at) + 1)  # which run is killed as soon as its API is up
    note = f"seed={SEED} kill_at={kill_at} early={early}"
    with world(tmp_path) as w:
        alice, bob = setup(w)
        sender = w.driver(
            "alice", alice, *("send", "--to", "bob", "--count", str(n), "--batch", "50")
        )
        wait_all_succeed([sender], note)
        targets: list[int | None] = list(kill_at)
        targets.insert(early, None)
        reached: list[int] = []
        for target in [*targets, n]:
            daemon = start_daemon(w, bob)
            watch = ApiWatch(bob, f"api-{len(reached)}")
            try:
                watch.call("subscribe")
                if target is not None:
                    history = watch.call("history", contact="alice", limit=1)
                    last = history[-1]["counter"] if history else 0
                    wait_for(
                        [daemon, watch],
                        stored(watch, last, target),
                        WAIT,
                        f"the daemon to store {target} ({note})",
                    )
            finally:
                watch.close()
            if target == n:
                assert daemon.terminate() == 0, daemon.describe()
            else:
                daemon.kill()
            with ClientStore(bob / DB_NAME) as store:
                reached.append(sum(1 for m in store.messages(CONV, limit=10**9)))
        note += f" stored_at_kills={reached[:-1]}"
        assert reached == sorted(reached) and reached[-1] == n, note
        # every kill landed during the catch-up, after the daemon stored its target
        for target, at_kill in zip(targets, reached, strict=False):
            assert (target or 0) <= at_kill < n, note
        out = sender_messages(alice)
        check_exactly_once(bob, out, [], note)
        listen = w.tidings("listen", bob, "listen", "--count", str(n))
        wait_all_succeed([listen], note)
    shown = shown_by(listen)
    assert shown == [m.message_id.hex() for m in out], (
        f"listen showed {len(shown)} lines for {n} messages, {len(set(shown))} distinct ({note})"
    )
    with ClientStore(bob / DB_NAME) as store:
        assert store.unseen() == [], note
