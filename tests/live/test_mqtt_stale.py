"""`recorder run --mqtt --stale-after`: optimizers go offline when the bus goes quiet, the recorder not.

A simulated array served over TCP at 60x (each optimizer reports about three times a second of
real time) feeds `recorder run --mqtt --stale-after 4s` (no InfluxDB: readings wait in the outbox,
which MQTT does not care about). While the simulator runs, every barcode is `online`; once it
stops, each optimizer goes `offline`, no sooner than `--stale-after` after its last report,
while the recorder's own `tigo/status` stays `online` and the last states stay retained. SIGTERM
then turns `tigo/status` `offline`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from recorder.sim.truth import load_truth
from tests.conftest import ROOT
from tests.influx import free_ports
from tests.mosquitto import LocalMosquitto, MosquittoUnavailable, Subscriber, wait_for

pytestmark = pytest.mark.slow

NODES = 12
STALE_AFTER = 4.0  # seconds


def test_optimizers_go_offline_after_stale_after_while_the_recorder_stays_online(tmp_path: Path) -> None:
    broker = LocalMosquitto(tmp_path / "mosquitto")
    try:
        broker.start()
    except MosquittoUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    subscriber = Subscriber(broker.port)
    truth_file = tmp_path / "truth.jsonl"
    simulator = subprocess.Popen(
        [
            *(sys.executable, "-m", "recorder.cli.app", "simulate", "--listen", "tcp://127.0.0.1:0"),
            *("--speed", "60x", "--duration", "15m", "--start", "2025-06-21T11:00:00+00:00"),
            *("--seed", "3", "--nodes", str(NODES), "--truth", str(truth_file)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    stderr = tmp_path / "recorder.stderr"
    recorder: subprocess.Popen[bytes] | None = None
    try:
        assert simulator.stdout is not None
        port = simulator.stdout.readline().strip().rsplit(":", 1)[1]
        with stderr.open("wb") as errors:
            recorder = subprocess.Popen(
                [
                    *(sys.executable, "-m", "recorder.cli.app", "run", "--db", str(tmp_path / "state.db")),
                    *("--source", f"tcp://127.0.0.1:{port}", "--archive-days", "0", "--http", ""),
                    *("--mqtt", broker.url, "--mqtt-interval", "0.5", "--stale-after", f"{STALE_AFTER:g}s"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=errors,
                cwd=ROOT,
                env={
                    **os.environ,
                    "INFLUX_URL": f"http://127.0.0.1:{free_ports(1)[0]}",  # nobody: the outbox keeps them
                    "INFLUX_TOKEN": "nobody:nothing",
                },
            )

        def availability() -> dict[str, str]:
            return {
                topic.split("/")[1]: payload.decode()
                for topic, payload in subscriber.snapshot().items()
                if topic.endswith("/availability")
            }

        wait_for(
            lambda: len(availability()) == NODES and set(availability().values()) == {"online"},
            "every optimizer online while the bus is busy",
            120,
        )
        simulator.wait(timeout=120)
        # When each optimizer is first seen offline (wall clock: live sources stamp with it).
        offline_at: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while len(offline_at) < NODES and time.monotonic() < deadline:
            now = time.time()
            for barcode, state in availability().items():
                if state == "offline":
                    offline_at.setdefault(barcode, now)
            time.sleep(0.05)
        assert len(offline_at) == NODES, f"only {len(offline_at)} of {NODES} went offline"
        for barcode, seen in offline_at.items():
            measured_at = datetime.fromisoformat(subscriber.json(f"tigo/{barcode}/state")["measured_at"])
            quiet = seen - measured_at.timestamp()
            # Not before --stale-after had passed since its last report (ms rounding aside).
            assert quiet >= STALE_AFTER - 0.1, f"{barcode} offline {quiet:.2f} s after its last report"
        assert len(availability()) == NODES
        assert recorder.poll() is None
        assert subscriber.text("tigo/status") == "online"  # the recorder itself is fine
        array = subscriber.json("tigo/array/state")
        assert (array["power"], array["reporting"]) == (0.0, 0)
        # The last values stay retained (Home Assistant shows them as unavailable, not as gone).
        barcodes = {m["barcode"] for m in load_truth(truth_file) if m["type"] == "mapping"}
        assert set(availability()) == barcodes
        for barcode in barcodes:
            assert subscriber.json(f"tigo/{barcode}/state")["power"] > 0, barcode

        recorder.send_signal(signal.SIGTERM)
        assert recorder.wait(60) == 0
        wait_for(lambda: subscriber.text("tigo/status") == "offline", "offline after SIGTERM")
        log = stderr.read_text()
        assert "Traceback" not in log
    finally:
        if recorder is not None and recorder.poll() is None:
            recorder.kill()
            recorder.wait(10)
        if simulator.poll() is None:
            simulator.kill()
            simulator.wait(10)
        subscriber.close()
        broker.stop()
