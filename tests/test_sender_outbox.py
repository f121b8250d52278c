"""The sender (issue 19's soak found both): outbox rows a failed write had taken are sent once
InfluxDB is back, even when nothing new is ever committed (a healthy InfluxDB takes every new
reading from memory, so no commit says "the outbox holds rows" again); and a rejected point
that cannot be parked on a full disk is said as a full disk, without a traceback.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from recorder.config import Settings
from recorder.diskspace import DiskSpace
from recorder.run import LatencyProbe, Sender
from recorder.sinks.influx import BadData, RetryLater
from recorder.storage.inflight import InFlight
from recorder.storage.outbox import Outbox
from recorder.storage.state import StateStore
from tests.test_disk_full import fill_up, reading
from tests.test_disk_full import small_disk as small_disk  # a fixture


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


def test_outbox_rows_a_failed_write_took_are_sent_when_influxdb_is_back(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path / "state.db")
    try:
        outbox = Outbox(store.engine)
        inflight = InFlight(outbox)
        inflight.add([reading(node, node) for node in (1, 2, 3)], arrived=0.0)
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


def test_a_rejected_point_that_cannot_be_parked_on_a_full_disk_is_said_without_a_traceback(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = StateStore.open(small_disk / "state.db")
    try:
        outbox = Outbox(store.engine)
        inflight = InFlight(outbox)
        inflight.add([reading(1, 1)], arrived=0.0)
        disk = DiskSpace()
        sender = Sender(inflight, outbox, store, RejectingInfluxDB(), Settings(), LatencyProbe(), disk)
        ballast = fill_up(small_disk)
        sender.start()
        try:
            deadline = time.monotonic() + 10
            while not disk.full and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
        finally:
            sender.stop_requested.set()
            sender.wake.set()
            ballast.unlink()
            sender.join(timeout=30)
        assert disk.full, "the full disk was said"
        assert not [record for record in caplog.records if record.exc_info], "no traceback"
    finally:
        store.close()


class RejectingInfluxDB(FlakyInfluxDB):
    def write(self, lines: list[str]) -> None:
        raise BadData("unable to parse")
