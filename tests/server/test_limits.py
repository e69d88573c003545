"""The relay's limits against hostile peers, over real connections (issue 8 "Hardening").

Each limit is shown three ways: a burst over it is refused with a sensible ``retry_after``, traffic
under it passes, and it recovers once the window has passed. The relay's clocks are the fake
``relays.clock``: ``advance`` lets time pass on both, ``step`` moves the wall clock alone (an NTP
step), which no limit may notice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from tests.harness import RawPeer, RelayLab, open_raw, send_sealed
from tidings.net.ws import ChannelConnection
from tidings.noise import generate_keypair
from tidings.server.app import Relay
from tidings.store import DeviceRef
from tidings.wire import (
    PROTOCOL_VERSION,
    ErrorCode,
    Frame,
    Hello,
    Refused,
    Register,
    Registered,
    Send,
    Sent,
    Target,
    Welcome,
)

HOUR = 3600.0


@dataclass
class Device:
    """A registered device on a raw connection, its session open (WELCOME received)."""

    conn: ChannelConnection
    peer: RawPeer
    ref: DeviceRef

    def send(self, *frames: Frame) -> None:
        send_sealed(self.conn, *frames)

    async def answer(self, kind: type[Frame] = Frame) -> Frame:
        return await self.peer.frame(kind)


def url_of(relay: Relay) -> str:
    assert relay.address is not None
    return f"ws://127.0.0.1:{relay.address[1]}/v1"


async def new_device(relay: Relay, account: str) -> Device:
    private, _ = generate_keypair(os.urandom)
    conn, peer = await open_raw(url_of(relay), private)
    send_sealed(conn, Register(PROTOCOL_VERSION, account, "raw", None))
    registered = await peer.frame(Registered)
    send_sealed(conn, Hello(PROTOCOL_VERSION, 0))
    await peer.frame(Welcome)
    return Device(conn, peer, DeviceRef(registered.account, registered.device_id))


async def sends(device: Device, to: Device, count: int) -> list[Frame]:
    """Send ``count`` messages to ``to``'s device; return the answers (SENT or REFUSED)."""
    for _ in range(count):
        payload = Target(to.ref.account, to.ref.device_id, b"x")
        device.send(Send(os.urandom(16), to.ref.account, (payload,)))
    answers: list[Frame] = []
    while len(answers) < count:
        frame = await device.answer()
        if isinstance(frame, Sent | Refused):
            answers.append(frame)
    return answers


def sent(answers: list[Frame]) -> int:
    return sum(isinstance(a, Sent) for a in answers)


# --------------------------------------------------------------------------- clocks


@pytest.mark.parametrize("step", [-HOUR, HOUR])
async def test_a_wall_clock_step_moves_no_send_budget(relays: RelayLab, step: float) -> None:
    relay = await relays.start(rate_per_second=1.0, rate_burst=2)
    alice, bob = await new_device(relay, "alice"), await new_device(relay, "bob")
    answers = await sends(alice, bob, 3)
    assert sent(answers) == 2
    (refused,) = [a for a in answers if isinstance(a, Refused)]  # refusals do not wait: first
    assert isinstance(refused, Refused) and refused.code == ErrorCode.RATE_LIMITED
    assert refused.retry_after == pytest.approx(1.0)

    # The wall clock steps by an hour, then one second passes. Stepped back, a wall-clock
    # limiter was frozen for the hour; stepped forward, it refilled to its whole burst. The
    # budget is one token either way: the second that passed.
    relays.clock.step(step)
    relays.clock.advance(1.0)
    assert sent(await sends(alice, bob, 2)) == 1
    relays.clock.advance(2.0)
    answers = await sends(alice, bob, 3)
    assert sent(answers) == 2
    # What people see still follows the wall clock: the stored time is the stepped one.
    assert {a.stored_at for a in answers if isinstance(a, Sent)} == {relays.clock.now}
