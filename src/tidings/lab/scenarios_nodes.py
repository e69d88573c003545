"""Several relay nodes on PostgreSQL + Redis, and each of them failing under load.

``node-crash`` (issue 14) starts the lab's own PostgreSQL and Redis (:mod:`.services`: never the
machine's), three ``tidings server`` nodes on them (one database, the relay's ``server.key``
copied to each), and devices that know the relay by all three URLs, in their own order (most
prefer ``node0``). Under the workload:

1. **kill -9 of the node most devices are on** (``connections`` on its ``/healthz``):
   they move to another node and resume from their cursor (the node is started again after
   step 3, so the next two faults hit a relay of two nodes);
2. **Redis killed**, then restarted after a window: the scenario waits until every node's
   ``/healthz`` says ``redis: down (polling)`` (they poll pending devices), and after the
   restart until every one says ``up`` again (hints resume);
3. **PostgreSQL killed** (a crash: every backend dies) and restarted after a window: the nodes'
   store calls fail meanwhile, and a ✓ must only follow a commit.

After the settle the scenario reads the lab database's ``sent`` table (the idempotency record,
committed in the same transaction as the queue items) into ``RUN/pg_sent.json``; the checker's
``ack_not_durable`` (:mod:`.checker_nodes`) holds every ✓ against it, on top of lost,
duplicated, reordered. Runs on loopback: no root, no namespaces (as root, PostgreSQL runs as
the ``postgres`` user). Registered in :data:`tidings.lab.scenarios.SCENARIOS`.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlparse

from ..server.datadir import KEY_FILE, PUSH_KEY_FILE
from .checker_nodes import PG_SENT_FILE, PG_TARGET, REDIS_TARGET
from .labrun import PHASE, SERVER_ARGS, LabRun, Params, Scenario
from .procs import LabProcError, ServerProc, wait_until
from .services import LabPostgres, LabRedis, free_port

__all__ = ["NODES", "NODE_SCENARIOS", "node_crash", "prepare_nodes"]

#: Relay nodes of the run.
NODES = 3
#: Seconds one ``/healthz`` read may take (milliseconds on loopback).
METRICS_TIMEOUT = 5.0
#: What a node's ``/healthz`` says of Redis (:attr:`tidings.server.cluster.Cluster.state`).
REDIS_UP = "up"
REDIS_POLLING = "down (polling)"


def _preferred(index: int) -> int:
    """The node device number ``index`` (0-based, in name order) prefers: every other one
    ``node0``, the rest spread over the others (so a kill of ``node0`` moves most devices)."""
    return 0 if index % 2 == 0 else 1 + (index // 2) % (NODES - 1)


def prepare_nodes(run: LabRun) -> None:
    """Start the lab's PostgreSQL and Redis, then the relay's three nodes on them."""
    pg = LabPostgres(run.run_dir / "pg", run.logs, registry=run.registry)
    run.cleanups.append(pg.remove)
    run.progress("starting the lab's own PostgreSQL and Redis")
    pg.init()
    pg.start(PHASE)
    redis = LabRedis(run.logs, registry=run.registry)
    redis.start(PHASE)
    base = run.server.args
    nodes: list[ServerProc] = []
    for i in range(NODES):
        flags = ["--store", pg.url, "--redis", redis.url, "--node-id", f"node{i}"]
        flags += ["--metrics-port", str(free_port())]
        if i == 0:
            node = run.server
            node.args = [*base, *flags]
        else:
            data = run.run_dir / f"node{i}"
            data.mkdir(mode=0o700)
            for name in (KEY_FILE, PUSH_KEY_FILE):  # one relay: every node has its keys
                shutil.copy2(run.server.data_dir / name, data / name)
            node = ServerProc(
                data, run.logs, name=f"node{i}", clock_file=run.clock.path,
                args=[*base, *flags], registry=run.registry,
            )  # fmt: skip
        nodes.append(node)
        if i == 0:  # its keys are the relay's: the first start makes them
            run.progress("starting relay node0")
            node.start(PHASE)
    run.progress(f"starting relay node1..node{NODES - 1}")
    for node in nodes[1:]:
        node.spawn()
    for node in nodes[1:]:
        node.ready = node.wait_line("event", PHASE)
        node.port = urlparse(node.url).port or node.port
    run.servers = nodes
    urls = [n.url for n in nodes]
    names = sorted(run.workload.plans)

    def urls_for(name: str) -> str:
        first = _preferred(names.index(name)) if name in names else 0
        return ",".join(urls[first:] + urls[:first])

    run.relay_urls = urls_for
    run.context.update(pg=pg, redis=redis)
    run.on_settled.append(lambda: _dump_sent(run, pg))


def _dump_sent(run: LabRun, pg: LabPostgres) -> None:
    """``RUN/pg_sent.json``: every row of the lab database's ``sent`` table."""
    rows = pg.query("SELECT sender_account, sender_device, message_id FROM sent")
    sent = [[str(a), int(str(d)), bytes(m).hex()] for a, d, m in rows]  # type: ignore[call-overload]
    (run.run_dir / PG_SENT_FILE).write_text(json.dumps({"sent": sent}) + "\n")


def health(node: ServerProc) -> dict[str, Any]:
    """The node's ``/healthz`` details (its body for a 503 too: degraded is not an error)."""
    port = node.args[node.args.index("--metrics-port") + 1]
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=METRICS_TIMEOUT) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    details = json.loads(body)
    if not isinstance(details, dict):
        raise LabProcError(f"{node.name}: {url} answered {body!r}")
    return details


def connections(node: ServerProc) -> int:
    """The node's open client connections (``/healthz``)."""
    return int(health(node)["connections"])


def _all_say(run: LabRun, nodes: list[ServerProc], key: str, value: str, what: str) -> None:
    """Wait until every one of ``nodes`` says ``key: value`` on ``/healthz`` (re-read on each
    device line, and at least every 0.1 s)."""
    run.wait_file(lambda: all(health(n).get(key) == value for n in nodes), PHASE, what)


def node_crash(run: LabRun) -> None:
    """kill -9 of the busiest node, then Redis down, then PostgreSQL down, under load."""
    pg: LabPostgres = run.context["pg"]
    redis: LabRedis = run.context["redis"]
    devices = list(run.devices.values())
    run.start_all()
    run.wait_composed(max(1, run.planned // 5))

    node_ids = {n.name: f"node{i}" for i, n in enumerate(run.servers)}
    counts = {node_ids[n.name]: connections(n) for n in run.servers}
    victim = max(run.servers, key=lambda n: counts[node_ids[n.name]])
    on_victim = counts[node_ids[victim.name]]
    run.progress(f"kill -9 of {node_ids[victim.name]} ({on_victim} of {len(devices)} devices)")
    marks = {d.name: len(d.lines) for d in devices}
    t = run.clock.now()
    victim.kill9()

    def moved() -> list[str]:
        """The devices cut off by the kill that are in session again (on another node)."""
        cut = [d for d in devices if d.find("disconnected", marks[d.name]) is not None]
        if len(cut) < on_victim:
            return []
        return [d.name for d in cut if _in_session(d)]

    wait_until(lambda: len(moved()) >= on_victim, PHASE, "the cut-off devices back", *devices)
    after = {node_ids[n.name]: connections(n) for n in run.servers if n is not victim}
    run.fault("kill9", node_ids[victim.name], t, run.clock.now(), moved=moved(),
              before=counts, after=after)  # fmt: skip
    run.progress(f"devices moved: now on {after}")

    run.wait_composed(max(1, 2 * run.planned // 5))
    live = [n for n in run.servers if n is not victim]
    run.progress("Redis is killed: nodes poll")
    t = run.clock.now()
    redis.kill9()
    _all_say(run, live, "redis", REDIS_POLLING, "every node polling")
    polling = run.clock.now() - t
    run.window()
    redis.start(PHASE)
    t_up = run.clock.now()
    _all_say(run, live, "redis", REDIS_UP, "every node back on Redis")
    back = round(run.clock.now() - t_up, 3)
    run.fault("redis_down", REDIS_TARGET, t, run.clock.now(), seconds=run.params.window,
              polling_after=round(polling, 3), hints_after=back)  # fmt: skip

    run.wait_composed(max(1, 3 * run.planned // 5))
    run.progress("PostgreSQL is killed: the nodes' store calls fail")
    t = run.clock.now()
    pg.kill9()
    run.window()
    stores = {node_ids[n.name]: health(n)["store"] for n in live}  # during the outage
    pg.start(PHASE)
    refused = _refused(run, t)
    run.fault("pg_restart", PG_TARGET, t, run.clock.now(), seconds=run.params.window,
              refused=refused, stores=stores)  # fmt: skip
    run.progress(
        f"PostgreSQL is back ({refused} sends refused meanwhile); {node_ids[victim.name]} restarts"
    )
    victim.start(PHASE)
    run.wait_complete()


def _refused(run: LabRun, since: float) -> int:
    """Sends refused STORE_UNAVAILABLE from ``since`` (lab clock), over every device."""
    return sum(
        1
        for name in run.devices
        for e in run.events(name)
        if e.get("ev") == "refused" and e.get("code") == "STORE_UNAVAILABLE"
        if e.get("t", 0.0) >= since
    )


def _in_session(device: Any) -> bool:
    """Whether ``device``'s last session line says connected (not disconnected)."""
    last = next(
        (k for line in reversed(device.lines) for k in ("connected", "disconnected") if k in line),
        None,
    )
    return last == "connected"


_THREE = ("alice", "bob", "carol")

NODE_SCENARIOS = (
    Scenario(
        "node-crash",
        "3 relay nodes on PostgreSQL + Redis: kill -9 of a node, Redis and PostgreSQL down; "
        "no root",
        141,
        Params(_THREE, (2, 1, 2), 60, 6.0, 1.5),
        Params(_THREE, (2, 2, 2), 300, 5.0, 5.0),
        node_crash,
        services=True,
        relay_args=SERVER_ARGS,
        prepare=prepare_nodes,
        complaint=(
            "users on a dead server node cannot be reached; workers silently stop getting "
            "updates after Redis trouble; events lost when the replication link reconnects"
        ),
        links=(
            "https://github.com/tinode/chat/issues/28",
            "https://github.com/matrix-org/synapse/issues/9351",
            "https://github.com/matrix-org/synapse/pull/7427",
        ),
        invariant=(
            "G1–G4: every ✓ committed in PostgreSQL, nothing lost, duplicated or reordered "
            "across a node crash, Redis and PostgreSQL outages (ack_not_durable, lost, …)"
        ),
    ),
)
