"""The sender and the outbox (issue 19's soak found this): rows a failed write had taken are sent
once InfluxDB is back, even when nothing new is ever committed (a healthy InfluxDB takes every
new reading from memory, so no commit says "the outbox holds rows" again).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recorder.config import Settings
from recorder.ingest import LatencyProbe, Sender
from recorder.observer import Reading
from recorder.protocol.events import PowerReport
from recorder.sinks.influx import RetryLater
from recorder.storage.inflight import InFlight
from recorder.storage.outbox import Outbox
from recorder.storage.state import StateStore
from tests.helpers import T0


class FlakyInfluxDB:
    """A LineWriter that refuses while `down`, and keeps what it accepted."""

    def __init__(self) -> None:
        self.down = True
        self.lines: list[str] = []

    def write(self, lines: list[str]) -> None:
        if self.down:
            raise RetryLater("cannot reach InfluxDB: connection refused")
        self.lines += lines

    def close(self) -> None:
        pass


def reading(node: int) -> Reading:
    report = PowerReport(
        voltage_in_raw=100,
        voltage_out_raw=100,
        duty_cycle_raw=200,
        current_in_raw=50,
        temperature_raw=250,
        unknown=b"\0\0\0",
        slot_counter=node,
        rssi=100,
    )
    at = T0 + timedelta(seconds=node)
    return Reading(1, node, at, at, report, bytes([4, 0xC0, 0x5B, 0x40, 0, 0, 0, node]), None)


def test_outbox_rows_a_failed_write_took_are_sent_when_influxdb_is_back(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "state.db")
    try:
        outbox = Outbox(store.engine)
        inflight = InFlight(outbox)
        inflight.add([reading(node) for node in (1, 2, 3)], arrived=0.0)
        inflight.commit(None, datetime.now(UTC))  # InfluxDB was down: they wait in the outbox
        influxdb = FlakyInfluxDB()
        sender = Sender(inflight, outbox, store, influxdb, Settings(), LatencyProbe())
        with pytest.raises(RetryLater):
            sender._send_some()  # the run loop backs off after this
        influxdb.down = False  # back; the bus is quiet or InfluxDB takes new readings in time
        while sender._send_some():
            pass
        assert len(influxdb.lines) == 3, "the outbox's rows went to InfluxDB"
        assert outbox.depth()["ready"] == 0
    finally:
        store.close()
