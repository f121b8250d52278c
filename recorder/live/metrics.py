"""`/metrics`: the latest readings and the recorder's health in Prometheus's exposition format.

Theory of operation. Nothing is kept in a metrics registry between scrapes: `LiveCollector` is a
`prometheus_client` custom collector that, at each scrape, takes one `LiveData` snapshot and
yields metric families built from it. So a scrape costs one pass over the optimizers, and the
read loop does no metrics work at all.

Per optimizer (labels `barcode`, `gateway`, `node_id`, and `string`, `name` when the optimizer
is labelled), from its latest reading by measurement time:

    tigo_optimizer_power_watts                  input power, Vin × Iin
    tigo_optimizer_voltage_in_volts / _voltage_out_volts
    tigo_optimizer_current_in_amperes / _current_out_amperes   (no current_out at duty cycle 0)
    tigo_optimizer_temperature_celsius
    tigo_optimizer_duty_cycle_ratio             0-1
    tigo_optimizer_rssi                         raw, as reported
    tigo_optimizer_last_report_timestamp_seconds   measurement time, Unix seconds

An optimizer appears once InfluxDB shows it too: with its barcode, or with `barcode=""` once the
identity hold expired (`OptimizerNow.published`). A reading older than `--stale-after` keeps only
its timestamp: the values are left out, as a dead target's would be, so graphs and alerts see a
gap rather than a frozen last value.

The recorder's health, from `Ingest.status_snapshot`: counters `tigo_recorder_<name>_total` and
gauges `tigo_recorder_<name>` (see `HEALTH_COUNTERS` and `HEALTH_GAUGES`).

The body is always in the classic text format (0.0.4), which every Prometheus reads: it asks
for OpenMetrics first, but nothing here needs it (no exemplars, no `_created`), and
prometheus_client's OpenMetrics encoder costs about 1.7 times as much CPU per scrape
(`benchmarks/live.py`), which counts on a Raspberry Pi.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from recorder.live.latest import OptimizerNow
from recorder.live.snapshot import LiveData

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# metric name, LatestReading attribute, help text
OPTIMIZER_GAUGES = (
    ("tigo_optimizer_power_watts", "power", "Input power (voltage_in x current_in) of the latest reading."),
    ("tigo_optimizer_voltage_in_volts", "voltage_in", "Panel (input) voltage of the latest reading."),
    ("tigo_optimizer_voltage_out_volts", "voltage_out", "Optimizer output voltage of the latest reading."),
    ("tigo_optimizer_current_in_amperes", "current_in", "Panel (input) current of the latest reading."),
    (
        "tigo_optimizer_current_out_amperes",
        "current_out",
        "Output current (current_in / duty_cycle) of the latest reading; absent at duty cycle 0.",
    ),
    ("tigo_optimizer_temperature_celsius", "temperature", "Optimizer temperature of the latest reading."),
    ("tigo_optimizer_duty_cycle_ratio", "duty_cycle", "DC-DC duty cycle (1 = pass-through), latest reading."),
    ("tigo_optimizer_rssi", "rssi", "Received signal strength as reported (raw; no dBm scale)."),
)

# health key -> help; exposed as tigo_recorder_<key>_total
HEALTH_COUNTERS = {
    "bytes": "Bytes received from the bus.",
    "frames": "Gateway link frames decoded.",
    "checksum_errors": "Frames dropped for a bad checksum.",
    "noise_bytes": "Bytes outside any frame.",
    "truncated_frames": "Frames cut short.",
    "runts": "Frames too short to decode.",
    "giants": "Frames too long to be real.",
    "unknown_frame_types": "Gateway frames of a type the decoder does not know.",
    "unknown_packet_types": "PV packets of a type the decoder does not know.",
    "power_reports": "Optimizer power reports decoded.",
    "invalid_power_reports": "Power reports that could not be decoded.",
    "duplicate_reports": "Power reports seen more than once (counted once).",
    "topology_reports": "Topology reports decoded.",
    "node_tables": "Complete node tables assembled.",
    "readings": "Readings committed to the outbox.",
    "points_written": "Points InfluxDB acknowledged.",
    "write_errors": "InfluxDB writes that failed (and were retried).",
    "source_reconnects": "Times the source was lost and reconnected.",
    "watchdog_reconnects": "Reconnects because a live source went silent.",
    "archive_errors": "Raw archive writes that failed.",
    "unresolved_written": "Readings written without a barcode after the identity hold.",
    "unresolved_dropped": "Readings dropped after the identity hold (--on-unresolved drop).",
    "disk_full_events": "Writes that failed because the disk was full.",
    "readings_dropped_disk_full": "Readings dropped from memory while the disk was full (bound reached).",
    "archive_removed_for_space": "Raw archive files deleted to make room for readings.",
}

# gauge name -> (health key, help)
HEALTH_GAUGES = {
    "outbox_ready": ("outbox_ready", "Readings in the outbox waiting to be written."),
    "outbox_held": ("outbox_held", "Readings in the outbox waiting for their optimizer's barcode."),
    "outbox_parked": ("points_parked", "Points InfluxDB rejected, kept aside in the state database."),
    "unresolved_nodes": ("unresolved_nodes", "Nodes whose readings wait for a barcode."),
    "source_connected": ("source_connected", "1 when the bus source is connected."),
    "decode_stalled": ("decode_stalled", "1 when frames arrive in daylight but no power report decodes."),
    "influxdb_up": ("influx_reachable", "1 when the last write to InfluxDB succeeded, 0 when it failed."),
    "disk_full": ("disk_full", "1 while the state database's disk is full (readings wait in memory)."),
    "disk_free_bytes": ("disk_free_bytes", "Free bytes on the state database's filesystem."),
    "archive_paused": ("archive_paused", "1 while the raw archive gives way to readings (disk short)."),
    "readings_in_memory": ("readings_in_memory", "Readings neither acknowledged nor committed yet."),
}


class LiveCollector:
    """A `prometheus_client` collector reading one `LiveData` snapshot per scrape."""

    def __init__(self, data: LiveData) -> None:
        self.data = data

    def describe(self) -> list[Metric]:
        return []  # families vary with the data; nothing to pre-register

    def collect(self) -> Iterator[Metric]:
        snapshot = self.data.snapshot()
        yield from optimizer_families(snapshot.latest.optimizers)
        yield from health_families(snapshot.health)


def optimizer_families(optimizers: list[OptimizerNow]) -> Iterator[Metric]:
    # Plain `Metric`s rather than GaugeMetricFamily: their label set may differ per sample,
    # so `string` and `name` appear only on labelled optimizers.
    gauges = [(name, attribute, Metric(name, text, "gauge")) for name, attribute, text in OPTIMIZER_GAUGES]
    stamp_name = "tigo_optimizer_last_report_timestamp_seconds"
    timestamps = Metric(
        stamp_name,
        "Measurement time of the latest reading (Unix seconds); kept when the values are stale.",
        "gauge",
    )
    for optimizer in optimizers:
        if not optimizer.published:
            continue
        reading = optimizer.reading
        labels = {
            "barcode": reading.barcode or "",
            "gateway": str(reading.gateway_id),
            "node_id": str(reading.node_id),
        }
        if optimizer.string:
            labels["string"] = optimizer.string
        if optimizer.name:
            labels["name"] = optimizer.name
        timestamps.add_sample(stamp_name, labels, reading.measured_at.timestamp())
        if optimizer.stale:
            continue
        for name, attribute, family in gauges:
            value = getattr(reading, attribute)
            if value is not None:
                family.add_sample(name, labels, float(value))
    for _name, _attribute, family in gauges:
        yield family
    yield timestamps


def health_families(health: Mapping[str, Any]) -> Iterator[Metric]:
    for key, text in HEALTH_COUNTERS.items():
        value = health.get(key)
        if value is not None:
            yield CounterMetricFamily(f"tigo_recorder_{key}", text, value=float(value))
    for name, (key, text) in HEALTH_GAUGES.items():
        value = health.get(key)
        if value is not None:
            yield GaugeMetricFamily(f"tigo_recorder_{name}", text, value=float(value))
    last_data = health.get("last_data_at")
    if last_data:
        yield GaugeMetricFamily(
            "tigo_recorder_last_data_timestamp_seconds",
            "When the source last delivered bytes (Unix seconds, source time).",
            value=datetime.fromisoformat(str(last_data)).timestamp(),
        )
    latency = GaugeMetricFamily(
        "tigo_recorder_report_latency_seconds",
        "From a report's last byte arriving to InfluxDB acknowledging its point, by quantile.",
        labels=["quantile"],
    )
    for quantile, key in (("0.5", "latency_p50_ms"), ("0.99", "latency_p99_ms")):
        if health.get(key) is not None:
            latency.add_metric([quantile], float(health[key]) / 1000)
    if latency.samples:
        yield latency


def render_metrics(collector: LiveCollector) -> tuple[bytes, str]:
    """The exposition body and its content type (text format 0.0.4: see the module docstring)."""
    return generate_latest(collector), CONTENT_TYPE
