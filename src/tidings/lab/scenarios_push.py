"""Push wake-ups that fail: a sleeping device is woken by the relay through a push service that
drops, then delays, its wake-ups — and still gets every message.

``push-failure`` (issue 13) reproduces "no notification until I open the app"
(https://github.com/signalapp/Signal-Android/issues/9716,
https://github.com/element-hq/element-android/issues/2930): one device registers a Web Push
subscription with the relay at the lab's push service (:mod:`.push_service`), then goes to sleep
(its process exits, as a phone's app is suspended) while the others keep writing to it. The
relay POSTs a content-free wake-up; the push service answers 503 for a while (the lab clock
jumps minutes between tries, so the relay's backoff is what retries), then accepts one and holds
it for three minutes of lab time before it reaches the device, which then starts and catches
up. The delivery rules judge the run (lost, duplicated, reordered); the scenario itself fails
unless the relay retried after the failures, a wake-up was accepted, and every wake-up
decrypted to nothing but a 16-byte nonce. Registered in :data:`tidings.lab.scenarios.SCENARIOS`.
"""

from __future__ import annotations

from .labrun import PHASE, SERVER_CONFIG, LabRun, Params, Scenario
from .procs import LabProcError
from .push_service import LabPushService

__all__ = ["PUSH_SCENARIOS", "push_failure"]

#: The relay lets the devices register the lab's push service on loopback (plain http).
_RELAY_CONFIG = SERVER_CONFIG + "push_allow_private = true\n"

#: Wake-ups the push service drops (503) before it accepts one: each retry comes after the
#: relay's backoff (5 s, doubling), which a clock jump of :data:`RETRY_JUMP` always covers.
DROPPED = 3
#: Lab seconds the clock jumps between two dropped wake-ups (more than the backoff's cap of the
#: first retries, so each jump makes the next POST due).
RETRY_JUMP = 60.0
#: Lab seconds an accepted wake-up spends in the push network before the device gets it.
DELAY = 180.0
#: What a wake-up may carry: a random nonce, nothing of a message.
NONCE_LEN = 16


def push_failure(run: LabRun) -> None:
    """The second account's device sleeps; its wake-ups are dropped, then one is delayed."""
    service = LabPushService()
    try:
        _script(run, service)
    finally:
        service.close()


def _script(run: LabRun, service: LabPushService) -> None:
    victim = run.devices[f"{run.params.users[1]}.1"]
    run.start_all()
    victim.push_register(service.endpoint, service.keys.public, service.keys.auth)
    others = [d for d in run.devices.values() if d is not victim]
    run.wait_composed(max(1, run.planned // 4))
    run.progress(f"{victim.name} goes to sleep; its push service is down")
    service.mode = "fail"
    t0 = run.clock.now()
    victim.finish(PHASE)
    for i in range(DROPPED):
        _wait_failed(run, service, i + 1)
        if i + 1 < DROPPED:
            run.clock.jump(RETRY_JUMP)  # the relay's backoff passes
    t1 = run.clock.now()
    run.fault("push_down", victim.name, t0, t1, dropped=DROPPED, jump=RETRY_JUMP)
    run.progress(f"the push service is back; a wake-up for {victim.name} takes {DELAY:g} s")
    service.mode = "accept"
    run.clock.jump(RETRY_JUMP)
    run.wait_file(lambda: service.counts()[2] >= 1, PHASE, "an accepted wake-up")
    run.clock.jump(DELAY)  # held in the push network
    t2 = run.clock.now()
    victim.start()  # the wake-up reaches the phone: the app starts and catches up
    victim.wait_line("connected", PHASE)
    posts, failed, accepted = service.counts()
    wakes = service.wakes
    run.fault("push_delay", victim.name, t1, t2, delay=DELAY, posts=posts, accepted=accepted)
    if failed < DROPPED or not wakes or service.undecryptable:
        raise LabProcError(f"push: {posts} POSTs, {failed} failed, {accepted} accepted")
    if any(w.plaintext_len > NONCE_LEN for w in wakes):
        raise LabProcError(f"a wake-up carried more than a nonce: {wakes}")
    run.wait_composed(run.planned, [*others, victim])
    run.wait_complete()


def _wait_failed(run: LabRun, service: LabPushService, n: int) -> None:
    """Until the push service has dropped ``n`` wake-ups."""
    run.wait_file(lambda: service.counts()[1] >= n, PHASE, f"dropped wake-up {n}")


_THREE = ("alice", "bob", "carol")

PUSH_SCENARIOS = (
    Scenario(
        "push-failure",
        "a sleeping device's push wake-ups are dropped, then delayed by minutes; no root",
        125,
        Params(_THREE, (1, 1, 1), 12, 4.0, 0.0),
        Params(_THREE, (1, 2, 1), 150, 5.0, 0.0),
        push_failure,
        relay_config=_RELAY_CONFIG,
        complaint="no notification (or message) until I open the app",
        links=(
            "https://github.com/signalapp/Signal-Android/issues/9716",
            "https://github.com/element-hq/element-android/issues/2930",
        ),
        invariant=(
            "G1/G7: woken through a failing push service, the device gets every message "
            "(lost, duplicated, reordered); wake-ups carry no content"
        ),
    ),
)
