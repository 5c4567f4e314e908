"""Prometheus metrics of one app, in its own registry (no process-global state).

Under gunicorn each worker counts for itself; set ``PROMETHEUS_MULTIPROC_DIR`` to an empty
folder to have ``/metrics`` add up all workers (prometheus_client's multiprocess mode).
``feeds_subscribers`` is read from the state folder at each scrape, which all workers share: the
same in both modes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .site import Site


class Metrics:
    def __init__(self, site: Site) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        registry = None if multiprocess else self.registry
        self.requests = Counter(
            "feeds_requests_total",
            "Requests answered, by document kind, feed and status",
            ["kind", "feed", "status"],
            registry=registry,
        )
        self.throttled = Counter(
            "feeds_throttled_total",
            "Requests refused with 429 by the polling budget, by feed",
            ["feed"],
            registry=registry,
        )
        self.renders = Histogram(
            "feeds_render_seconds",
            "Time to render one document, by kind",
            ["kind"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.reload_errors = Counter(
            "feeds_reload_errors_total", "Config reloads refused as broken", registry=registry
        )
        self.reloads = Counter("feeds_reloads_total", "Reloads of articles or config", registry=registry)
        if multiprocess:
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        else:
            Gauge(
                "feeds_articles_loaded",
                "Articles in the index (drafts and embargoed included)",
                registry=self.registry,
            ).set_function(site.article_count)
            Gauge(
                "feeds_not_modified_ratio", "Share of document requests answered 304", registry=self.registry
            ).set_function(self._not_modified_ratio)
            Gauge(
                "feeds_config_degraded",
                "1 while a broken config.yaml is being ignored",
                registry=self.registry,
            ).set_function(lambda: float(site.config_error is not None))
        self.registry.register(Subscribers(site))
        site.render_hooks.append(lambda kind, seconds: self.renders.labels(kind).observe(seconds))
        site.reload_hooks.append(lambda ok: (self.reloads if ok else self.reload_errors).inc())

    def _not_modified_ratio(self) -> float:
        total = not_modified = 0.0
        for metric in self.requests.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    total += sample.value
                    if sample.labels.get("status") == "304":
                        not_modified += sample.value
        return not_modified / total if total else 0.0

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Subscribers(Collector):
    """``feeds_subscribers{feed, source}``: today's counts (see :mod:`feeds.sightings`)."""

    def __init__(self, site: Site) -> None:
        self._site = site

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "feeds_subscribers",
            "Subscribers today (UTC), by feed and source: a fetcher's own report, or direct readers",
            labels=["feed", "source"],
        )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = self._family()
        for (feed, source), count in sorted(self._site.audience.current().items()):
            family.add_metric([feed, source], count)
        yield family
