"""The shared deadline heap (``net/timers.py``) on virtual time, and the cipher release."""

from __future__ import annotations

import asyncio
import os

from tidings.net.timers import CIPHER_IDLE_RELEASE, COMPACT_MIN, Timers, VirtualTimers
from tidings.noise import CipherState


class Target:
    """A connection's deadline as ChannelConnection keeps it: only the last scheduled counts."""

    def __init__(self, timers: Timers, log: list[tuple[str, float]], name: str) -> None:
        self.timers, self.log, self.name = timers, log, name
        self.at: float | None = None
        self.released = 0

    def arm(self, when: float) -> None:
        if self.at is not None:
            self.timers.discard()
        self.at = when
        self.timers.schedule(self, when)

    def _deadline_valid(self, when: float) -> bool:
        return self.at == when

    def _deadline_passed(self, when: float) -> None:
        self.at = None
        self.log.append((self.name, when))

    def release_ciphers(self) -> None:
        self.released += 1


def test_deadlines_fire_in_order_at_their_own_time() -> None:
    timers, log = VirtualTimers(), list[tuple[str, float]]()
    a, b, c = (Target(timers, log, n) for n in "abc")
    b.arm(2.0)
    a.arm(1.0)
    c.arm(2.0)
    timers.advance(1.5)
    assert log == [("a", 1.0)] and timers.now == 1.5
    timers.advance(10)
    assert log == [("a", 1.0), ("b", 2.0), ("c", 2.0)]


def test_only_the_last_deadline_of_a_target_fires() -> None:
    timers, log = VirtualTimers(), list[tuple[str, float]]()
    a = Target(timers, log, "a")
    a.arm(5.0)
    a.arm(3.0)  # earlier: the 5.0 entry is stale
    timers.advance(10)
    assert log == [("a", 3.0)]
    a.arm(12.0)
    a.at = None  # cancelled
    timers.discard()
    timers.advance(10)
    assert log == [("a", 3.0)]


def test_a_callback_can_be_cancelled() -> None:
    timers, fired = VirtualTimers(), list[float]()
    later = timers.call_later(2.0, lambda: fired.append(timers.now))
    timers.call_later(1.0, lambda: fired.append(timers.now))
    timers.advance(1.0)
    later.cancel()
    timers.advance(5.0)
    assert fired == [1.0]


def test_stale_entries_are_compacted_away() -> None:
    timers, log = VirtualTimers(), list[tuple[str, float]]()
    targets = [Target(timers, log, str(i)) for i in range(4 * COMPACT_MIN)]
    for t in targets:
        t.arm(100.0)
    for t in targets:  # each moved earlier, then cancelled: every entry stale
        t.arm(50.0)
        t.at = None
        timers.discard()
    assert timers.pending <= 2 * COMPACT_MIN + 2  # not 8 x COMPACT_MIN: closed ones are let go
    timers.advance(200)
    assert log == []


def test_a_quiet_connection_releases_its_ciphers_and_a_busy_one_does_not() -> None:
    timers, log = VirtualTimers(), list[tuple[str, float]]()
    busy, quiet = Target(timers, log, "busy"), Target(timers, log, "quiet")
    timers.touch(busy)
    timers.touch(quiet)
    for _ in range(8):
        timers.advance(CIPHER_IDLE_RELEASE / 2)
        timers.touch(busy)
    assert (busy.released, quiet.released) == (0, 1)
    assert timers.pending == 1  # the sweep goes on while someone is busy
    timers.advance(10 * CIPHER_IDLE_RELEASE)
    assert (busy.released, quiet.released) == (1, 1)
    assert timers.pending == 0  # nobody busy: no timer at all


async def test_the_real_timers_run_on_the_loop() -> None:
    fired = asyncio.Event()
    timers = Timers.of(asyncio.get_running_loop())
    assert Timers.of(asyncio.get_running_loop()) is timers
    timers.call_later(0.0, fired.set)
    async with asyncio.timeout(5):
        await fired.wait()


def test_a_released_cipher_goes_on_with_the_same_key_and_nonce() -> None:
    key = os.urandom(32)
    sender, receiver, reference = (CipherState("ChaChaPoly", key) for _ in range(3))
    first = sender.encrypt_with_ad(b"", b"one")
    sender.release()
    receiver.decrypt_with_ad(b"", first)
    receiver.release()
    second = sender.encrypt_with_ad(b"", b"two")
    assert receiver.decrypt_with_ad(b"", second) == b"two"
    reference.encrypt_with_ad(b"", b"one")
    assert reference.encrypt_with_ad(b"", b"two") == second  # nothing of the stream changed
    assert sender.has_key() and sender.nonce == 2
