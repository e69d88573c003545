"""A path-MTU black hole: big packets vanish on the device's path and nobody says so.

``mtu-black-hole`` reproduces the classic failure of a tunnel, a PPPoE or mobile link, or a VPN
whose MTU is below the 1,500 bytes both ends assume, behind a firewall that filters ICMP: every
IP packet above :data:`BLACK_HOLE` bytes is dropped in both directions and ICMP "fragmentation
needed" (RFC 1191) / "packet too big" (RFC 8201) never arrive, so TCP's path-MTU discovery
never learns to send smaller segments (RFC 2923 §2.1). Small packets pass: the WebSocket upgrade
and the Noise handshake succeed, the connection looks up, and the first big write — a PQXDH
prekey message, ~2 KB, the first message to a new contact — is retransmitted at full size until
the keepalive declares the connection dead, again on every reconnect.

Every device's namespace gets the black hole before the devices start (after the accounts are
registered), so every first message to a contact crosses it; it lasts until every device has
sent its plan and received what it should. The relay clamps its TCP MSS on non-loopback
listeners (``tidings.server.listener.LISTEN_MSS``), which keeps every segment of both
directions under the hole. The checker's ``lost`` rule (after ``settled``) fails a run in which a
message never arrived; the fault line reports how long delivery under the hole took
(``delivered_in``, seconds from the devices' start to the last one complete), and the summary's
✓/✓✓ latencies are all measured under it. Registered in :data:`tidings.lab.scenarios.SCENARIOS`.
"""

from __future__ import annotations

from .labrun import LabRun, Params, Scenario
from .procs import LabProcError

__all__ = ["BLACK_HOLE", "MTU_SCENARIOS", "mtu_black_hole"]

#: The largest IP packet the black hole lets through: IPv6's minimum link MTU (RFC 8200 §5),
#: what tunnels and mobile links commonly clamp to, well below the veths' 1,500.
BLACK_HOLE = 1280


def mtu_black_hole(run: LabRun) -> None:
    """Black-hole every device's path above :data:`BLACK_HOLE` bytes, run the whole workload
    through it, then lift it; one fault line per device."""
    lab = run.netlab
    if lab is None:
        raise LabProcError("mtu-black-hole needs network namespaces")
    run.progress(f"path-MTU black hole: IP packets > {BLACK_HOLE} B dropped, ICMP filtered")
    t0 = run.clock.now()
    for ns in run.namespaces.values():
        lab.black_hole_start(ns, BLACK_HOLE)
    run.start_all()
    run.wait_complete()
    end = run.clock.now()
    for ns in run.namespaces.values():
        lab.black_hole_end(ns)
    run.progress(f"every device complete {end - t0:.1f} s after the black hole began")
    for name, ns in run.namespaces.items():
        detail = {"size": BLACK_HOLE, "namespace": ns, "delivered_in": round(end - t0, 3)}
        run.fault("mtu_black_hole", name, t0, end, **detail)


_THREE = ("alice", "bob", "carol")

MTU_SCENARIOS = (
    Scenario(
        "mtu-black-hole",
        f"IP packets > {BLACK_HOLE} B dropped both ways, ICMP too big filtered (kernel)",
        112,
        Params(_THREE, (1, 2, 1), 10, 4.0, 0.0),
        Params(_THREE, (1, 2, 1), 200, 5.0, 0.0),
        mtu_black_hole,
        kernel=True,
        complaint="messages not sending on a network with a smaller MTU (they go through a VPN)",
        links=("https://github.com/wireapp/wire-webapp/issues/8739",),
        invariant="G2/G7: the first message to a new contact (~2 KB) crosses the black hole (lost)",
    ),
)
