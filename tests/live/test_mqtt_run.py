"""`recorder run --mqtt` end to end: a simulated array, a real Mosquitto, a real InfluxDB.

One run for the module: the simulator (`sim:` source, 135 optimizers, 60x real time, one of them
replaced half way) feeds `recorder run`, which writes to the test InfluxDB and publishes to a
Mosquitto that needs a password (given through `RECORDER_MQTT`). While it runs, the broker is
stopped for a few seconds and started again empty (an outage and a restart), and then Home
Assistant's birth message (`homeassistant/status` = `online`) is published. A paho subscriber
reads everything back. When the run is over, the retained states must be the ground truth's
last reports, every barcode must have its discovery configs, and InfluxDB must hold every point
(the MQTT outage cost it nothing).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from recorder.live.discovery import OPTIMIZER_FIELDS
from recorder.sim.truth import compare_points, load_truth
from tests.conftest import ROOT
from tests.influx import LocalInfluxDB
from tests.live.running import (
    discovery_configs,
    fresh_database,
    influx_env,
    label_array,
    last_reports,
    run_command,
)
from tests.mosquitto import LocalMosquitto, MosquittoUnavailable, Subscriber, wait_for

pytestmark = [pytest.mark.influx, pytest.mark.slow]

NODES = 135
SEED = "7"
START = "2025-06-21T10:00:00+00:00"
DURATION = "40m"  # at 60x: 40 s of real time, enough for the outage and the birth message
PASSWORD = "mqtt-Secret-42"
TOKEN = "recorder:influx-secret"


@dataclass
class MqttRun:
    subscriber: Subscriber
    truth: list[dict[str, Any]]
    strings: dict[str, str]  # barcode -> string, as labelled (the replacement is not)
    replaced: str  # the barcode taken off its node half way
    replacement: str  # the barcode put on
    stderr: str
    returncode: int
    influx: LocalInfluxDB
    database: str
    points_during_outage: tuple[int, int]  # InfluxDB's points when the broker stopped, and restarted
    configs_before_birth: int
    configs_after_birth: int

    def last_reports(self) -> dict[str, dict[str, Any]]:
        return last_reports(self.truth)

    def configs(self) -> dict[str, dict[str, Any]]:
        return discovery_configs(self.subscriber)


def config_messages(subscriber: Subscriber) -> int:
    return subscriber.count(lambda topic: topic.startswith("homeassistant/sensor/"))


@pytest.fixture(scope="module")
def mqtt_run(influxdb: LocalInfluxDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MqttRun]:
    work = tmp_path_factory.mktemp("mqtt-run")
    broker = LocalMosquitto(work / "mosquitto", users={"recorder": PASSWORD, "reader": "reader"})
    try:
        broker.start()
    except MosquittoUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    subscriber = Subscriber(broker.port, username="reader", password="reader")
    db = work / "state.db"
    # The array's strings, as labels (string devices and totals).
    mappings = label_array(work, db, start=START, seed=SEED, nodes=NODES)

    database = fresh_database(influxdb, "mqtt")
    truth_file = work / "truth.jsonl"
    source = (
        f"sim:?nodes={NODES}&seed={SEED}&start={START.replace('+', '%2B')}&duration={DURATION}"
        f"&speed=60x&reassign=1&truth={truth_file}"
    )
    stderr_path = work / "recorder.stderr"
    with stderr_path.open("wb") as errors:
        recorder = subprocess.Popen(
            run_command(db, source, "--exit-at-end", "--mqtt-interval", "1"),
            stdout=subprocess.DEVNULL,
            stderr=errors,
            cwd=ROOT,
            env={
                **influx_env(influxdb, database, TOKEN),
                "RECORDER_MQTT": f"mqtt://recorder:{PASSWORD}@127.0.0.1:{broker.port}",
            },
        )
    started = time.monotonic()
    try:
        wait_for(lambda: subscriber.json("tigo/array/state") is not None, "the first totals", 60)
        wait_for(
            lambda: (subscriber.json("tigo/array/state") or {}).get("reporting") == NODES,
            "every optimizer",
            60,
        )
        # An outage: the broker goes away for a few seconds, and comes back empty.
        broker.stop()
        outage_start = influxdb.count("tigo_optimizer", database, "power")
        time.sleep(4)
        outage_end = influxdb.count("tigo_optimizer", database, "power")
        broker.start()
        subscriber.clear()
        wait_for(lambda: subscriber.text("tigo/status") == "online", "the recorder to reconnect", 60)
        wait_for(
            lambda: config_messages(subscriber) >= NODES * len(OPTIMIZER_FIELDS),
            "discovery after the restart",
            60,
        )
        # Home Assistant (re)starts: it announces itself, and gets discovery again.
        before_birth = config_messages(subscriber)
        subscriber.publish("homeassistant/status", "online")
        wait_for(
            lambda: config_messages(subscriber) >= before_birth + NODES * len(OPTIMIZER_FIELDS),
            "discovery after the birth message",
            60,
        )
        after_birth = config_messages(subscriber)
        print(f"outage and birth message done {time.monotonic() - started:.0f} s into the run")
        assert recorder.poll() is None, "the run ended before the outage and the birth message were over"
        returncode = recorder.wait(timeout=300)
        wait_for(lambda: subscriber.text("tigo/status") == "offline", "offline after the run")
        truth = load_truth(truth_file)
        changes = [m for m in truth if m["type"] == "mapping" and m["node_id"] & 0x8000]
        assert len(changes) == 1
        replacement = changes[0]
        replaced = next(
            m["barcode"]
            for m in truth
            if m["type"] == "mapping"
            and m["node_id"] == replacement["node_id"] & 0x7FFF
            and m["barcode"] != replacement["barcode"]
        )
        yield MqttRun(
            subscriber=subscriber,
            truth=truth,
            strings={m["barcode"]: m["string"] for m in mappings},
            replaced=replaced,
            replacement=replacement["barcode"],
            stderr=stderr_path.read_text(),
            returncode=returncode,
            influx=influxdb,
            database=database,
            points_during_outage=(outage_start, outage_end),
            configs_before_birth=before_birth,
            configs_after_birth=after_birth,
        )
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait(10)
        subscriber.close()
        broker.stop()
        influxdb.ensure_running()
        influxdb.drop_database(database)


def test_every_barcode_is_discovered_and_its_state_is_the_truths_last_report(mqtt_run: MqttRun) -> None:
    run = mqtt_run
    assert run.returncode == 0, run.stderr
    last = run.last_reports()
    assert len(last) == NODES + 1  # the replaced unit and its replacement both reported
    configs = run.configs()
    for barcode in last:
        for field in OPTIMIZER_FIELDS:
            config = configs[f"tigo_{barcode}_{field.key}"]
            assert config["device"]["identifiers"] == [barcode]
            assert config["device"]["via_device"] == "tigo_gateway_4609"
    for barcode, report in last.items():
        if barcode == run.replaced:
            continue  # see the replacement test
        state = run.subscriber.json(f"tigo/{barcode}/state")
        assert state is not None, barcode
        published = datetime.fromisoformat(state["measured_at"])
        assert abs((published - datetime.fromisoformat(report["measured_at"])).total_seconds()) < 1.0, barcode
        assert state["voltage_in"] == report["voltage_in"]
        assert state["voltage_out"] == report["voltage_out"]
        assert state["current_in"] == report["current_in"]
        assert state["temperature"] == report["temperature"]
        assert state["rssi"] == report["rssi"]
        assert state["duty_cycle"] == pytest.approx(report["duty_cycle"], abs=5e-7)
        assert state["power"] == pytest.approx(report["voltage_in"] * report["current_in"], abs=1e-9)
        expected_out = report["current_in"] / report["duty_cycle"] if report["duty_cycle"] else None
        assert state["current_out"] == pytest.approx(expected_out, abs=5e-4)
        assert run.subscriber.text(f"tigo/{barcode}/availability") == "online"
    # String and array totals: sums of the latest (all fresh) powers. The replacement is in no
    # string (nobody labelled it yet), but in the array.
    strings: dict[str, float] = {}
    for barcode, report in last.items():
        if barcode in run.strings and barcode != run.replaced:
            string = run.strings[barcode]
            strings[string] = strings.get(string, 0.0) + report["voltage_in"] * report["current_in"]
    for name, power in strings.items():
        state = run.subscriber.json(f"tigo/string/{name.lower()}/state")
        assert state["power"] == pytest.approx(power, abs=0.1), name
        assert configs[f"tigo_string_{name.lower()}_power"]["device"]["name"] == f"String {name}"
    new = last[run.replacement]
    array = run.subscriber.json("tigo/array/state")
    total = sum(strings.values()) + new["voltage_in"] * new["current_in"]
    assert (array["power"], array["reporting"]) == (pytest.approx(total, abs=0.1), NODES)


def test_a_replacement_moves_readings_to_the_new_barcodes_device(mqtt_run: MqttRun) -> None:
    run = mqtt_run
    subscriber = run.subscriber
    assert subscriber.text(f"tigo/{run.replaced}/availability") == "offline"
    assert subscriber.text(f"tigo/{run.replacement}/availability") == "online"
    last = run.last_reports()[run.replacement]
    state = subscriber.json(f"tigo/{run.replacement}/state")
    assert state["voltage_in"] == last["voltage_in"] and state["current_in"] == last["current_in"]
    # The old device is kept (unavailable, with its history), not removed.
    assert f"tigo_{run.replaced}_power" in run.configs()


def test_a_broker_restart_is_survived_and_home_assistants_birth_gets_discovery_again(
    mqtt_run: MqttRun,
) -> None:
    run = mqtt_run
    assert "MQTT: lost the connection to mqtt://recorder@127.0.0.1" in run.stderr
    assert "again" in run.stderr.split("MQTT: lost the connection", 1)[1]
    assert "Home Assistant announced itself" in run.stderr
    every_config = (NODES + 1) * len(OPTIMIZER_FIELDS)  # after the replacement: one more optimizer
    assert run.configs_after_birth - run.configs_before_birth >= NODES * len(OPTIMIZER_FIELDS)
    assert len(run.configs()) >= every_config


def test_an_mqtt_outage_costs_influxdb_nothing(mqtt_run: MqttRun) -> None:
    run = mqtt_run
    before, after = run.points_during_outage
    assert after > before, "InfluxDB should have kept receiving points while the broker was down"
    result = compare_points(run.truth, run.influx.query("SELECT * FROM tigo_optimizer", run.database))
    assert result.exact and result.matched == result.expected, result.summary()


def test_the_password_never_shows(mqtt_run: MqttRun) -> None:
    assert "Traceback" not in mqtt_run.stderr
    assert PASSWORD not in mqtt_run.stderr and "influx-secret" not in mqtt_run.stderr
    assert "MQTT: publishing to mqtt://recorder@127.0.0.1:" in mqtt_run.stderr
