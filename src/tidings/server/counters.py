"""Counting off the hot path: plain integers that Prometheus reads at scrape time.

``prometheus_client``'s ``Counter.inc()`` takes a lock and costs ~1 µs; the relay counts ~10
things per relayed message (frames in and out by type, acks, stores, commits), so counting
alone was ~8 % of its event-loop time (issue 10's profile). Here a count is an attribute
increment (~70 ns), and :class:`CountCollector` turns the counts into metric families only
when ``/metrics`` is scraped — the "custom collector" pattern of the Prometheus client docs.

Invariants:

- Each :class:`Count` and :class:`CountHistogram` has ONE writing thread (the event loop, or
  the store thread for the commit histograms): ``value += n`` is then never lost. A scrape from
  another thread may read a value one increment old, never a torn one.
- Label values are fixed at creation for enum-labelled counts (every value exposed at zero);
  :meth:`LabelledCount.labels` adds a child for a new value of a bounded set (a handshake
  pattern name), never for an account or id.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["Count", "CountCollector", "CountHistogram", "LabelledCount"]


class Count:
    """A monotonically growing integer (or float) count."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def inc(self, n: float = 1) -> None:
        """Add ``n`` (≥ 0)."""
        self.value += n


class LabelledCount:
    """Counts by the value of one label."""

    __slots__ = ("children", "help", "label", "name")

    def __init__(self, name: str, help: str, label: str, values: Iterable[str] = ()) -> None:
        self.name, self.help, self.label = name, help, label
        self.children: dict[str, Count] = {v: Count() for v in values}

    def labels(self, **label: str) -> Count:
        """The count of one label value (created at zero the first time)."""
        (value,) = label.values()
        child = self.children.get(value)
        if child is None:
            child = self.children[value] = Count()
        return child


class CountHistogram:
    """Observations counted into fixed buckets (upper bounds), with their sum."""

    __slots__ = ("bounds", "counts", "help", "name", "sum")

    def __init__(self, name: str, help: str, buckets: Sequence[float]) -> None:
        self.name, self.help = name, help
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation of ``value``."""
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self) -> HistogramMetricFamily:
        """The Prometheus family: cumulative buckets, ``+Inf`` equal to the count."""
        cumulative, running = [], 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += n
            le = "+Inf" if bound == math.inf else repr(float(bound))  # as the client: "4.0"
            cumulative.append((le, running))
        return HistogramMetricFamily(self.name, self.help, buckets=cumulative, sum_value=self.sum)


class CountCollector(Collector):
    """Exposes plain counts as counter families (and histograms) when the registry is
    collected. ``name`` is the family name without ``_total`` (the client adds it)."""

    def __init__(self) -> None:
        self._plain: list[tuple[str, str, Count]] = []
        self._labelled: list[LabelledCount] = []
        self._histograms: list[CountHistogram] = []

    def count(self, name: str, help: str) -> Count:
        count = Count()
        self._plain.append((name, help, count))
        return count

    def labelled(self, name: str, help: str, label: str, values: Iterable[str]) -> LabelledCount:
        counts = LabelledCount(name, help, label, values)
        self._labelled.append(counts)
        return counts

    def histogram(self, name: str, help: str, buckets: Sequence[float]) -> CountHistogram:
        histogram = CountHistogram(name, help, buckets)
        self._histograms.append(histogram)
        return histogram

    def collect(self) -> Iterable[Metric]:
        for name, help, count in self._plain:
            yield CounterMetricFamily(name, help, value=count.value)
        for counts in self._labelled:
            family = CounterMetricFamily(counts.name, counts.help, labels=[counts.label])
            for value, child in list(counts.children.items()):
                family.add_metric([value], child.value)
            yield family
        for histogram in self._histograms:
            yield histogram.family()
