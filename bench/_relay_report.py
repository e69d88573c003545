"""The relay bench's report: its figures from the raw readings, and the table printed."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from typing import Any

from _relay_config import Config
from _relay_probe import Snapshot, ticks_us

#: Published costs on these machines, in server CPU µs per relayed message (from the issue).
REFERENCES_US = {
    "Mosquitto (MQTT QoS 1, no fsync)": 10.5,
    "Prosody (XMPP + stream management)": 94.0,
    "Synapse": 11_000.0,
}
#: The first target: server CPU per relayed, durably-acked message at 50 pairs.
TARGET_US = 40.0


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """Count, p50, p90, p99, max (ms) of a list of latencies."""
    if not values:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}
    values = sorted(values)
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    return {
        "count": len(values),
        "p50": round(q[49], 3),
        "p90": round(q[89], 3),
        "p99": round(q[98], 3),
        "max": round(values[-1], 3),
    }


def summarize(
    cfg: Config,
    dones: list[dict[str, Any]],
    before: Snapshot,
    after: Snapshot,
    wall: float,
    idle_us_per_s: float,
    pid: int,
    metrics0: dict[str, float],
    metrics1: dict[str, float],
) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(int(d[key]) for d in dones)

    def merged(key: str) -> list[float]:
        return [x for d in dones for x in d[key]]

    messages = total("received")  # relayed messages: delivered to their receivers
    receipts = total("delivered_receipts")  # delivered receipts relayed back to the senders
    items = messages + receipts
    cpu_us = ticks_us(after.ticks - before.ticks)
    used = {
        tid: ticks_us(ticks - before.threads.get(tid, 0)) for tid, ticks in after.threads.items()
    }
    busy_others = [tid for tid, us in used.items() if tid != pid and us > 0]
    threads: dict[str, float] = {}
    for tid, us in sorted(used.items(), key=lambda kv: kv[0] != pid):
        if tid == pid:
            label = "event loop (main thread)"
        elif len(busy_others) == 1:
            label = f"store thread {tid} (SQLite)"
        else:
            label = f"thread {tid}"
        if us > 0 or tid == pid:
            threads[label] = round(us / max(messages, 1), 2)
    busy = after.machine[0] - before.machine[0]
    machine_total = max(after.machine[1] - before.machine[1], 1)
    ctx_v = after.status["voluntary_ctxt_switches"] - before.status["voluntary_ctxt_switches"]
    ctx_n = after.status["nonvoluntary_ctxt_switches"] - before.status["nonvoluntary_ctxt_switches"]
    written = after.io.get("write_bytes", 0) - before.io.get("write_bytes", 0)
    client_cpu = sum(float(d["cpu_s"]) for d in dones)
    per_msg = cpu_us / messages if messages else None
    metrics = {
        k: round(v - metrics0.get(k, 0.0), 3)
        for k, v in metrics1.items()
        if v != metrics0.get(k, 0.0) and not k.startswith("tidings_connections")
    }
    store: dict[str, float] = {}
    commits = metrics.get("tidings_store_commit_batch_size_count", 0.0)
    if commits and messages:  # once the server exports its group-commit histogram
        ops = metrics.get("tidings_store_commit_batch_size_sum", 0.0)
        store = {
            "commits": commits,
            "writes_per_commit": round(ops / commits, 1),
            "commits_per_message": round(commits / messages, 4),
        }
    return {
        "complete": messages == cfg.pairs * cfg.messages and receipts == messages,
        "timed_out": any(d["timed_out"] for d in dones),
        "counts": {
            "expected": cfg.pairs * cfg.messages,
            "sent": total("sent"),
            "acked": total("acked"),
            "relayed_messages": messages,
            "relayed_receipts": receipts,
            "relayed_items": items,
            "failed": total("failed"),
            "disconnects": total("disconnects"),
        },
        "wall_s": round(wall, 3),
        "throughput": {
            "messages_per_s": round(messages / wall, 1),
            "items_per_s": round(items / wall, 1),
        },
        "server_cpu": {
            "total_s": round(cpu_us / 1e6, 3),
            "user_s": round(ticks_us(after.user - before.user) / 1e6, 3),
            "system_s": round(ticks_us(after.system - before.system) / 1e6, 3),
            "us_per_message": round(per_msg, 2) if per_msg is not None else None,
            "us_per_item": round(cpu_us / items, 2) if items else None,
            "cores_used": round(cpu_us / 1e6 / wall, 3),
            "us_per_message_by_thread": threads,
            "idle_us_per_s": round(idle_us_per_s, 1),
            "target_us_per_message": TARGET_US,
            "target_met": per_msg is not None and per_msg <= TARGET_US,
        },
        "latency_ms": {
            "send_to_sent": percentiles(merged("ack_ms")),
            "send_to_delivered": percentiles(merged("delivered_ms")),
            "send_to_received": percentiles(merged("receive_ms")),
        },
        "server_rss_after_run_kib": after.status["VmRSS"],
        "server_per_message": {
            "disk_write_bytes": round(written / messages, 1) if messages else None,
            "voluntary_ctx_switches": round(ctx_v / messages, 3) if messages else None,
            "involuntary_ctx_switches": round(ctx_n / messages, 3) if messages else None,
        },
        "clients_cpu": {
            "total_s": round(client_cpu, 3),
            "us_per_message": round(client_cpu * 1e6 / messages, 1) if messages else None,
        },
        "machine_cpu_busy_pct": round(100 * busy / machine_total, 1),
        "server_metrics_delta": metrics,
        "store_group_commit": store,
        "references_us_per_message": REFERENCES_US,
    }


def fmt(value: object, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text} {unit}".rstrip()


def table(report: dict[str, Any]) -> Iterator[str]:
    """The report as a human-readable table."""
    c, cfg, cpu = report["counts"], report["config"], report["server_cpu"]
    lat, idle, machine = report["latency_ms"], report["idle_connections"], report["machine"]
    rows: list[tuple[str, str]] = [
        ("pairs × messages per sender", f"{cfg['pairs']} × {cfg['messages']}"),
        ("rate per sender", "window-limited" if not cfg["rate"] else fmt(cfg["rate"], "msg/s")),
        ("payload", fmt(cfg["payload"], "B")),
        ("complete", f"{report['complete']} (timed out: {report['timed_out']})"),
        ("messages relayed (to receivers)", fmt(c["relayed_messages"])),
        ("delivered receipts relayed back", fmt(c["relayed_receipts"])),
        ("failed / disconnects", f"{c['failed']} / {c['disconnects']}"),
        ("measured phase", fmt(report["wall_s"], "s")),
        ("relayed messages/s", fmt(report["throughput"]["messages_per_s"])),
        ("relayed items/s (messages + receipts)", fmt(report["throughput"]["items_per_s"])),
        ("server CPU per relayed message", fmt(cpu["us_per_message"], "µs")),
        ("  (receipts' work included; target", f"≤ {TARGET_US:g} µs: met={cpu['target_met']})"),
        ("server CPU per relayed item", fmt(cpu["us_per_item"], "µs")),
    ]
    for thread, us in cpu["us_per_message_by_thread"].items():
        rows.append((f"  of which {thread}", fmt(us, "µs/msg")))
    rows += [
        ("server CPU user / system", f"{fmt(cpu['user_s'])} / {fmt(cpu['system_s'])} s"),
        ("server cores used", fmt(cpu["cores_used"])),
        ("server idle CPU (all connected)", fmt(cpu["idle_us_per_s"], "µs/s")),
        ("machine CPU busy (all processes)", fmt(report["machine_cpu_busy_pct"], "%")),
        (
            "machine load avg (1 min) start / end",
            f"{machine['loadavg_1m_at_start']} / {machine['loadavg_1m_at_end']}",
        ),
        (
            "clients' CPU per message (all workers)",
            fmt(report["clients_cpu"]["us_per_message"], "µs"),
        ),
    ]
    for key, title in (
        ("send_to_sent", "send→✓"),
        ("send_to_delivered", "send→✓✓"),
        ("send_to_received", "send→received"),
    ):
        p = lat[key]
        rows.append(
            (f"{title} p50 / p99 / max", f"{fmt(p['p50'])} / {fmt(p['p99'])} / {fmt(p['max'])} ms")
        )
    per = report["server_per_message"]
    rows += [
        ("server disk writes per message", fmt(per["disk_write_bytes"], "B")),
        ("server context switches per message", fmt(per["voluntary_ctx_switches"])),
        ("server RSS after the run", fmt(report["server_rss_after_run_kib"] / 1024, "MiB")),
        (
            f"server RSS per idle connection ({idle['connections']})",
            fmt(idle.get("rss_per_connection_kib"), "KiB"),
        ),
    ]
    if cfg.get("profile") or cfg.get("perf"):
        rows.append(("NOTE", "a profiler was attached: the CPU figures above are inflated"))
    width = max(len(r[0]) for r in rows) + 2
    yield "-" * (width + 30)
    for name, value in rows:
        yield f"{name:<{width}}{value}"
    yield "-" * (width + 30)
    if cpu["us_per_message"]:
        yield "for reference (server CPU µs per relayed message):"
        for name, us in REFERENCES_US.items():
            ratio = cpu["us_per_message"] / us
            yield f"  {name:<40}{us:>10,.1f}   (tidings costs {ratio:.2f}× this)"
    profile = report.get("profile")
    if profile:
        yield ""
        if "error" in profile:
            yield f"profile ({profile['tool']}): {profile['error']}"
        else:
            unit = "samples" if profile["tool"] == "py-spy" else "seconds"
            yield f"profile ({profile['tool']}), top {len(profile['top_self'])} by self time:"
            key = "samples" if unit == "samples" else "seconds"
            for entry in profile["top_self"]:
                yield f"  {entry['pct']:>6.2f}%  {entry[key]:>8}  {entry['function']}"
            if "threads" in profile:
                yield f"  samples by thread: {profile['threads']}"
            if "top_files_self" in profile:
                yield "  self time by source file:"
                for entry in profile["top_files_self"][:15]:
                    yield f"  {entry['pct']:>6.2f}%  {entry['samples']:>8}  {entry['function']}"
    perf = report.get("perf")
    if perf:
        yield ""
        yield "perf (server CPU samples), by shared object:"
        for row in perf.get("by_object", []):
            yield f"  {row['pct']:>6.2f}%  {row['what']}"
        yield "perf, by symbol:"
        for row in perf.get("by_symbol", []):
            yield f"  {row['pct']:>6.2f}%  {row['what']}"
        yield "perf, by thread (tid:comm) and shared object:"
        for row in perf.get("by_thread", []):
            yield f"  {row['pct']:>6.2f}%  {row['what']}"
