"""Prometheus metrics (``[metrics] enabled = true``), bound to 127.0.0.1 only.

Nothing is counted on the hot paths for the sake of metrics: a custom collector reads, at
scrape time, the counters each part keeps anyway (the CAN pipelines' frame and anomaly
counts, the meter pollers' health, the record counts by kind, the uplinks' statistics, the
ledger file size and its last checkpoint).
"""

from __future__ import annotations

import datetime
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.ledger.store import size_on_disk
from agent.records.envelope import Record

log = logging.getLogger("evgw.metrics")


class CountingLedger:
    """What the station writer appends through: counts records by kind on the way."""

    def __init__(self, ledger: Any) -> None:
        self._ledger = ledger
        self.records_by_kind: Counter[str] = Counter()

    def append_nowait(self, record: Record) -> None:
        self.records_by_kind[record.kind] += 1
        self._ledger.append_nowait(record)

    def __getattr__(self, name: str) -> Any:  # flush, find … go to the ledger itself
        return getattr(self._ledger, name)


def last_checkpoint_ts(ledger_path: Path) -> float | None:
    """When the newest checkpoint was signed (read-only look at the ledger file)."""
    try:
        conn = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT ts FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    if row is None:
        return None
    return datetime.datetime.fromisoformat(row[0].replace("Z", "+00:00")).timestamp()


class StationCollector(Collector):
    """Reads the live runtime (``runtime()`` may change on reload) at each scrape."""

    def __init__(self, runtime: Callable[[], Any], clock: Callable[[], float] = time.time) -> None:
        self.runtime = runtime
        self.clock = clock

    def collect(self) -> Iterator[Any]:
        rt = self.runtime()
        if rt is None:
            return
        frames = CounterMetricFamily("evgw_can_frames", "CAN frames received", labels=["connector"])
        anomalies = CounterMetricFamily(
            "evgw_can_anomalies",
            "CAN decode/transport/session anomalies",
            labels=["connector", "layer"],
        )
        for listener in rt.devices.listeners:
            cid = listener.spec.connector_id
            frames.add_metric([cid], listener.pipeline.counts.total)
            for layer, kinds in listener.pipeline.anomalies().items():
                anomalies.add_metric([cid, layer], sum(kinds.values()))
        yield frames
        yield anomalies

        polls = CounterMetricFamily(
            "evgw_meter_polls", "meter polls by outcome", labels=["meter", "outcome"]
        )
        online = GaugeMetricFamily(
            "evgw_meter_online", "1 when the meter answers", labels=["meter"]
        )
        for meter_id, counts in rt.devices.poll_counts.items():
            for outcome, n in counts.items():
                polls.add_metric([meter_id, outcome], n)
        for poller in rt.devices.pollers:
            for meter_id in poller.meter_ids:
                online.add_metric([meter_id], 1.0 if poller.health(meter_id).online else 0.0)
        yield polls
        yield online

        records = CounterMetricFamily("evgw_records", "records written by kind", labels=["kind"])
        for kind, n in sorted(rt.counting_ledger.records_by_kind.items()):
            records.add_metric([kind], n)
        yield records

        sent = CounterMetricFamily("evgw_uplink_sent", "records sent", labels=["uplink"])
        acked = CounterMetricFamily("evgw_uplink_acked", "records acknowledged", labels=["uplink"])
        retries = CounterMetricFamily("evgw_uplink_retries", "send retries", labels=["uplink"])
        backlog = GaugeMetricFamily("evgw_uplink_backlog", "records waiting", labels=["uplink"])
        parked = GaugeMetricFamily(
            "evgw_uplink_parked", "records parked (refused) for an uplink", labels=["uplink"]
        )
        peer_open = GaugeMetricFamily(
            "evgw_uplink_peer_open", "0 while the platform parks the uplink", labels=["uplink"]
        )
        link_alarm = GaugeMetricFamily(
            "evgw_uplink_link_alarm", "1 while alarm 27 is raised", labels=["uplink"]
        )
        for name, stats in rt.uplink_stats().items():
            sent.add_metric([name], stats.get("sent", 0))
            acked.add_metric([name], stats.get("acked", 0))
            retries.add_metric([name], stats.get("retries", 0))
            backlog.add_metric([name], stats.get("backlog", 0))
            if "parked_now" in stats:  # the uplinks that park (T/CEC)
                parked.add_metric([name], stats["parked_now"])
                peer_open.add_metric([name], 1.0 if stats.get("peer") == "open" else 0.0)
                link_alarm.add_metric([name], 1.0 if stats.get("link_alarm") else 0.0)
        yield from (sent, acked, retries, backlog, parked, peer_open, link_alarm)

        path = rt.ledger.path
        yield GaugeMetricFamily(
            "evgw_ledger_size_bytes", "ledger size on disk", value=size_on_disk(path)
        )
        yield GaugeMetricFamily(
            "evgw_ledger_last_seq", "last durable seq", value=rt.ledger.last_seq
        )
        cp_ts = last_checkpoint_ts(path)
        if cp_ts is not None:
            yield GaugeMetricFamily(
                "evgw_ledger_checkpoint_age_seconds",
                "age of the newest signed checkpoint",
                value=max(0.0, self.clock() - cp_ts),
            )


def start_metrics_server(port: int, runtime: Callable[[], Any]) -> tuple[Any, Any]:
    """Serve /metrics on 127.0.0.1:port; returns (server, thread) for shutdown."""
    registry = CollectorRegistry()
    registry.register(StationCollector(runtime))
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    log.info("metrics on http://127.0.0.1:%d/metrics", port)
    return server, thread
