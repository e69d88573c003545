"""Commit counters shared by the backends (the metrics endpoint reads :class:`StoreStats`)."""

from __future__ import annotations

from tidings.store.base import StoreStats

#: How many recent batch sizes :attr:`StoreStats.batch_sizes` keeps: enough for a histogram
#: over the last seconds of a busy server, small enough to copy on every scrape.
RECENT_BATCHES = 1000


def record_commit(stats: StoreStats, ops: int, seconds: float) -> None:
    """Count one commit of ``ops`` write operations that took ``seconds``."""
    stats.commits += 1
    stats.committed_ops += ops
    stats.last_batch_size = ops
    stats.commit_seconds_total += seconds
    sizes = stats.batch_sizes
    if len(sizes) >= RECENT_BATCHES:
        del sizes[: len(sizes) - RECENT_BATCHES + 1]
    sizes.append(ops)
    if stats.on_commit is not None:
        stats.on_commit(ops, seconds)
