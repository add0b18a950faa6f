"""`/metrics`: the run's figures for Prometheus, read at scrape time.

Every `StatsSnapshot` field with a metric kind is exported under `metric_name(field)`, with the
field's documentation as its help, so a figure has one name and one meaning in `/api/stats`, the
logs and Prometheus. Nothing is copied in step with the pipeline: the collector reads the
server's state when scraped. The per-route request counter is declared here too, so every name
the server exports is in one place.
"""

from __future__ import annotations

import math
from dataclasses import fields

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from edge_fer import __version__
from edge_fer.results import StatsSnapshot
from edge_fer.sinks.server.state import ServerState


def request_counter(registry: CollectorRegistry) -> Counter:
    """`edge_fer_http_requests_total`, by route and status, registered on `registry`."""
    return Counter("edge_fer_http_requests", "HTTP requests served, by route and status",
                   ["route", "code"], registry=registry)


def metric_name(stat: str) -> tuple[str, float]:
    """The Prometheus name of a `StatsSnapshot` field and the factor to its value: `edge_fer_`
    + the field's name in Prometheus base units (`_ms` and `_s` fields become `_seconds`).
    Counters get the `_total` suffix from the client library when exposed."""
    if stat.endswith("_ms"):
        return f"edge_fer_{stat[:-3]}_seconds", 1e-3
    if stat.endswith("_s"):
        return f"edge_fer_{stat[:-2]}_seconds", 1.0
    return f"edge_fer_{stat}", 1.0


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


class StatsCollector:
    """Prometheus collector reading the newest stats at scrape time (no copies kept in step).

    Every `StatsSnapshot` field with a metric kind is exported under `metric_name(field)`, with
    the field's documentation as its help: a figure has one name and one meaning everywhere."""

    _FAMILIES = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}

    def __init__(self, state: ServerState):
        self._state = state

    def describe(self):
        return []

    def collect(self):
        result, stats, _, age = self._state.snapshot()
        yield InfoMetricFamily("edge_fer_build", "edge-fer version", value={"version": __version__})
        for f in fields(StatsSnapshot) if stats is not None else ():
            kind = f.metadata["metric"]
            value = _number(getattr(stats, f.name))
            if kind is None or value is None:
                continue
            name, factor = metric_name(f.name)
            yield self._FAMILIES[kind](name, f.metadata["doc"], value=value * factor)
        by_label = GaugeMetricFamily("edge_fer_faces_by_label", "Faces in the newest frame, by smoothed emotion",
                                     labels=["label"])
        counts: dict[str, int] = {}
        for f in (result.faces if result is not None else []):
            counts[f.label] = counts.get(f.label, 0) + 1
        for label, n in sorted(counts.items()):
            by_label.add_metric([label], n)
        yield by_label
        if math.isfinite(age):
            yield GaugeMetricFamily("edge_fer_last_frame_age_seconds",
                                    "Seconds since the newest processed frame (alert when it grows)",
                                    value=age)
        yield GaugeMetricFamily("edge_fer_stream_clients", "Connected /stream.mjpg clients",
                                value=self._state.stream_clients)
        yield CounterMetricFamily("edge_fer_stream_frames_encoded", "Frames encoded to JPEG for the stream",
                                  value=self._state.frames_encoded)
        for name, (status, metrics) in self._state.statuses().items():
            for key, (kind, doc) in metrics.items():
                value = _number(status.get(key))
                if value is not None:
                    yield self._FAMILIES[kind](f"edge_fer_{name}_{key}", doc, value=value)
