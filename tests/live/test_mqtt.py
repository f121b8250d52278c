"""The MQTT publisher against a real Mosquitto: discovery, states, availability, reconnects.

The view is fed by hand (readings from `tests.live.helpers`, a clock the test moves), so each
test states exactly what the broker must hold afterwards; a paho subscriber on `#` reads it back.
The recorder-level behaviour (a simulated array, a broker restart mid-run, InfluxDB undisturbed)
is in `test_mqtt_run.py`.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from recorder.energy import EnergyToday
from recorder.live.broker import parse_mqtt_url
from recorder.live.discovery import GROUP_FIELDS, OPTIMIZER_FIELDS
from recorder.live.latest import LatestReadings
from recorder.live.mqtt import MqttPublisher
from recorder.live.snapshot import LiveData
from recorder.protocol.barcode import barcode_from_address
from recorder.reading import RECEIVED_MS
from recorder.storage.state import Labels
from recorder.timestamps import from_millis
from tests.conftest import ROOT
from tests.influx import free_ports
from tests.live.helpers import FakeMonotonic, address, reading
from tests.mosquitto import LocalMosquitto, MosquittoUnavailable, Subscriber, wait_for

EAST = address(0xC286CC)
WEST = address(0xC2834B)
NEW = address(0x9A57A2)
BARCODE = barcode_from_address(EAST)
WEST_BARCODE = barcode_from_address(WEST)
NEW_BARCODE = barcode_from_address(NEW)

# Per field: (unit, device_class, state_class), as Home Assistant's sensor integration defines them.
EXPECTED_CLASSES = {
    "power": ("W", "power", "measurement"),
    "voltage_in": ("V", "voltage", "measurement"),
    "voltage_out": ("V", "voltage", "measurement"),
    "current_in": ("A", "current", "measurement"),
    "current_out": ("A", "current", "measurement"),
    "temperature": ("°C", "temperature", "measurement"),
    "duty_cycle": ("%", None, "measurement"),
    "rssi": (None, None, "measurement"),
    "measured_at": (None, "timestamp", None),
    "energy_today": ("Wh", "energy", "total_increasing"),
}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[LocalMosquitto]:
    server = LocalMosquitto(tmp_path / "mosquitto")
    try:
        server.start()
    except MosquittoUnavailable as error:
        pytest.fail(str(error), pytrace=False)  # a skip would look like a pass
    yield server
    server.stop()


@pytest.fixture
def subscriber(broker: LocalMosquitto) -> Iterator[Subscriber]:
    client = Subscriber(broker.port)
    wait_for(lambda: client.connects > 0, "the subscriber to connect")
    yield client
    client.close()


class View:
    """A live view fed by hand, and a publisher of it."""

    def __init__(self, labels: dict[bytes, Labels] | None = None) -> None:
        self.clock = FakeMonotonic()
        self.latest = LatestReadings(timedelta(minutes=10), monotonic=self.clock)
        self.labels = labels or {}
        self.energy: EnergyToday | None = None  # what the energy keeper would say
        self.data = LiveData(
            self.latest,
            health=dict,
            labels=lambda: self.labels,
            energy=lambda: self.energy,
            monotonic=self.clock,
        )

    def feed(self, *readings: Any) -> None:
        self.latest.observe(readings, from_millis(max(r[RECEIVED_MS] for r in readings)))

    def publisher(self, broker: LocalMosquitto, url: str | None = None, **options: Any) -> MqttPublisher:
        found = parse_mqtt_url(url or broker.url)
        assert found is not None
        return MqttPublisher(found, self.data, interval=0.2, version="9.9", **options)


def configs(subscriber: Subscriber, prefix: str = "homeassistant") -> dict[str, Any]:
    return {
        topic.split("/")[2]: json.loads(payload)
        for topic, payload in subscriber.snapshot().items()
        if topic.startswith(f"{prefix}/sensor/") and topic.endswith("/config")
    }


@pytest.fixture
def running() -> Iterator[list[MqttPublisher]]:
    publishers: list[MqttPublisher] = []
    yield publishers
    for publisher in publishers:
        publisher.stop()


def start(publishers: list[MqttPublisher], publisher: MqttPublisher) -> MqttPublisher:
    publishers.append(publisher)
    publisher.start()
    wait_for(lambda: publisher.passes > 0, "the first publishing pass")
    return publisher


def test_every_optimizer_with_a_barcode_is_a_device_with_one_entity_per_field(
    broker: LocalMosquitto, subscriber: Subscriber, running: list[MqttPublisher]
) -> None:
    view = View({EAST: Labels(name="east 3", string="A1"), WEST: Labels(name=None, string="A1")})
    view.feed(
        reading(1, 0, long_address=EAST),
        reading(2, 5, long_address=WEST, current_in_raw=1000),  # 5 A: 162.5 W
        reading(3, 5),  # no barcode yet: never published
    )
    start(running, view.publisher(broker))
    fields = [field.key for field in OPTIMIZER_FIELDS]
    wait_for(
        lambda: len(configs(subscriber)) == 2 * len(fields) + 3 * len(GROUP_FIELDS), "every discovery config"
    )
    found = configs(subscriber)
    for field in fields:
        config = found[f"tigo_{BARCODE}_{field}"]
        unit, device_class, state_class = EXPECTED_CLASSES[field]
        assert config.get("unit_of_measurement") == unit, field
        assert config.get("device_class") == device_class, field
        assert config.get("state_class") == state_class, field
        assert config["unique_id"] == f"tigo_{BARCODE}_{field}"
        assert config["state_topic"] == f"tigo/{BARCODE}/state"
        assert config["availability_mode"] == "all"
        optimizer_availability = [{"topic": "tigo/status"}, {"topic": f"tigo/{BARCODE}/availability"}]
        if field in ("measured_at", "energy_today"):  # stay visible while the panel sleeps
            assert config["availability"] == [{"topic": "tigo/status"}]
        else:
            assert config["availability"] == optimizer_availability
        assert config["device"] == {
            "identifiers": [BARCODE],
            "name": "east 3",  # the label
            "manufacturer": "Tigo",
            "model": "TS4 optimizer",
            "via_device": "tigo_gateway_4609",
        }
    assert found[f"tigo_{WEST_BARCODE}_power"]["device"]["name"] == WEST_BARCODE  # no label: the barcode
    assert found["tigo_gateway_4609_power"]["device"]["name"] == "Tigo TAP 4609"
    assert found["tigo_gateway_4609_power"]["device"]["via_device"] == "tigo_array"
    assert found["tigo_string_a1_power"]["device"]["name"] == "String A1"
    assert found["tigo_string_a1_power"]["state_topic"] == "tigo/string/a1/state"
    assert found["tigo_array_power"]["device"]["sw_version"] == "9.9"
    assert {config["unit_of_measurement"] for key, config in found.items() if key.endswith("_power")} == {"W"}

    wait_for(lambda: subscriber.json(f"tigo/{WEST_BARCODE}/state") is not None, "the states")
    assert subscriber.json(f"tigo/{BARCODE}/state") == {
        "power": 292.5,
        "voltage_in": 32.5,
        "voltage_out": 32.5,
        "current_in": 9.0,
        "current_out": 9.0,
        "temperature": 55.3,
        "duty_cycle": 1.0,
        "rssi": 180,
        "measured_at": "2025-06-21T12:00:00.000+00:00",
        "energy_today": None,  # no energy figures in this view (the recorder always has them)
    }
    assert subscriber.json(f"tigo/{WEST_BARCODE}/state")["power"] == 162.5
    assert subscriber.text(f"tigo/{BARCODE}/availability") == "online"
    assert subscriber.text("tigo/status") == "online"
    # Totals over fresh readings; the node without a barcode still produces (array, gateway).
    assert subscriber.json("tigo/array/state") == {"power": 747.5, "reporting": 3, "energy_today": None}
    assert subscriber.json("tigo/gateway/4609/state") == {
        "power": 747.5,
        "reporting": 3,
        "energy_today": None,
    }
    assert subscriber.json("tigo/string/a1/state") == {"power": 455.0, "reporting": 2, "energy_today": None}
    # Nothing names the node without a barcode.
    assert not [topic for topic in subscriber.snapshot() if "4609_3" in topic or "/3/" in topic]


def test_states_follow_the_latest_reading_and_staleness_takes_optimizers_offline(
    broker: LocalMosquitto, subscriber: Subscriber, running: list[MqttPublisher]
) -> None:
    view = View()
    view.feed(reading(1, 0, long_address=EAST), reading(2, 0, long_address=WEST))
    publisher = start(running, view.publisher(broker))
    wait_for(
        lambda: subscriber.json("tigo/array/state") == {"power": 585.0, "reporting": 2, "energy_today": None},
        "totals",
    )
    # A newer reading replaces the state; a late one (earlier measurement) does not.
    view.feed(reading(1, 20, long_address=EAST, duty_cycle_raw=0, current_in_raw=200))
    view.feed(reading(1, 10, long_address=EAST, current_in_raw=100))
    wait_for(
        lambda: (
            (subscriber.json(f"tigo/{BARCODE}/state") or {}).get("measured_at")
            == "2025-06-21T12:00:20.000+00:00"
        ),
        "the newer state",
    )
    state = subscriber.json(f"tigo/{BARCODE}/state")
    assert state["current_in"] == 1.0 and state["current_out"] is None and state["duty_cycle"] == 0.0
    passes = publisher.passes
    states = subscriber.count(lambda topic: topic == f"tigo/{BARCODE}/state")
    wait_for(lambda: publisher.passes >= passes + 5, "more passes")
    assert subscriber.count(lambda topic: topic == f"tigo/{BARCODE}/state") == states  # unchanged: not sent

    # Ten minutes of silence (the view's clock) later WEST is stale, EAST (20 s younger) not yet.
    view.clock.now += 600 - 10
    wait_for(lambda: subscriber.text(f"tigo/{WEST_BARCODE}/availability") == "offline", "WEST offline")
    assert subscriber.text(f"tigo/{BARCODE}/availability") == "online"
    wait_for(
        lambda: subscriber.json("tigo/array/state") == {"power": 32.5, "reporting": 1, "energy_today": None},
        "totals",
    )
    view.clock.now += 30
    wait_for(lambda: subscriber.text(f"tigo/{BARCODE}/availability") == "offline", "EAST offline")
    wait_for(
        lambda: subscriber.json("tigo/array/state") == {"power": 0.0, "reporting": 0, "energy_today": None},
        "zero totals",
    )
    # The last values stay retained, marked unavailable rather than shown as current.
    assert subscriber.json(f"tigo/{WEST_BARCODE}/state")["power"] == 292.5
    # A report brings it back.
    view.feed(reading(2, 700, long_address=WEST))
    wait_for(lambda: subscriber.text(f"tigo/{WEST_BARCODE}/availability") == "online", "WEST back")


def test_a_replacement_moves_readings_to_the_new_barcodes_device(
    broker: LocalMosquitto, subscriber: Subscriber, running: list[MqttPublisher]
) -> None:
    view = View({EAST: Labels(name="east 3", string="A1"), NEW: Labels(name="east 3 (new)", string="A1")})
    view.feed(reading(1, 0, long_address=EAST), reading(2, 0, long_address=WEST))
    start(running, view.publisher(broker))
    wait_for(lambda: subscriber.text(f"tigo/{BARCODE}/availability") == "online", "EAST online")
    # Node 1 now carries a new optimizer: its readings carry the new long address.
    view.feed(reading(1, 60, long_address=NEW, current_in_raw=400))
    wait_for(lambda: subscriber.text(f"tigo/{NEW_BARCODE}/availability") == "online", "the new unit online")
    wait_for(lambda: subscriber.text(f"tigo/{BARCODE}/availability") == "offline", "the old unit offline")
    found = configs(subscriber)
    assert found[f"tigo_{NEW_BARCODE}_power"]["device"]["identifiers"] == [NEW_BARCODE]
    assert found[f"tigo_{NEW_BARCODE}_power"]["device"]["name"] == "east 3 (new)"
    assert subscriber.json(f"tigo/{NEW_BARCODE}/state")["power"] == 65.0
    assert subscriber.json(f"tigo/{NEW_BARCODE}/state")["measured_at"] == "2025-06-21T12:01:00.000+00:00"
    # The old device keeps its configuration (and so its history in Home Assistant), unavailable,
    # with the last state it had.
    assert f"tigo_{BARCODE}_power" in found
    assert subscriber.json(f"tigo/{BARCODE}/state")["measured_at"] == "2025-06-21T12:00:00.000+00:00"
    # Counted once in the totals: the new unit and WEST.
    wait_for(
        lambda: subscriber.json("tigo/array/state") == {"power": 357.5, "reporting": 2, "energy_today": None},
        "totals",
    )


def test_energy_today_is_the_keepers_running_total_and_starts_again_after_midnight(
    broker: LocalMosquitto, subscriber: Subscriber, running: list[MqttPublisher]
) -> None:
    # Node 1 carried NEW this morning and EAST since (a replacement); both labelled in string A1.
    view = View({EAST: Labels(name=None, string="A1"), NEW: Labels(name=None, string="a1")})
    view.feed(reading(1, -60, long_address=NEW), reading(2, 0, long_address=WEST), reading(3, 0))
    day = date(2025, 6, 21)
    view.energy = EnergyToday.of(
        day,
        0,
        {
            (4609, 1, NEW): 40.0,
            (4609, 1, EAST): 100.004,
            (4609, 2, WEST): 50.0,
            (4609, 3, None): 7.0,  # written without a barcode: in the gateway's and array's totals
        },
    )
    publisher = start(running, view.publisher(broker))
    wait_for(lambda: subscriber.json(f"tigo/{NEW_BARCODE}/state") is not None, "NEW's state")
    assert subscriber.json(f"tigo/{NEW_BARCODE}/state")["energy_today"] == 40.0
    view.feed(reading(1, 0, long_address=EAST))  # the replacement
    wait_for(lambda: subscriber.json(f"tigo/{BARCODE}/state") is not None, "EAST's state")
    wait_for(lambda: (subscriber.json("tigo/array/state") or {}).get("energy_today") == 197.0, "the totals")
    assert subscriber.json(f"tigo/{BARCODE}/state")["energy_today"] == 100.0  # to 0.01 Wh
    assert subscriber.json(f"tigo/{WEST_BARCODE}/state")["energy_today"] == 50.0
    assert subscriber.json("tigo/gateway/4609/state")["energy_today"] == 197.0
    # The string's total counts the unit replaced this morning (not in the view any more), so
    # it never goes down; "A1" and "a1" are one string, as their device is.
    assert subscriber.json("tigo/string/a1/state")["energy_today"] == 140.0
    found = configs(subscriber)
    for unique_id in (
        f"tigo_{BARCODE}_energy_today",
        "tigo_array_energy_today",
        "tigo_string_a1_energy_today",
    ):
        config = found[unique_id]
        assert (config["unit_of_measurement"], config["device_class"], config["state_class"]) == (
            "Wh",
            "energy",
            "total_increasing",
        )
        assert config["value_template"] == "{{ value_json.energy_today }}"
        assert config["availability"] == [{"topic": "tigo/status"}]  # the day's total shows at night
    assert found[f"tigo_{BARCODE}_energy_today"]["state_topic"] == f"tigo/{BARCODE}/state"

    # More energy, and no new reading (the evening's last minutes): the state goes out again.
    states = subscriber.count(lambda topic: topic == f"tigo/{BARCODE}/state")
    view.energy = EnergyToday.of(
        day, 0, {(4609, 1, NEW): 40.0, (4609, 1, EAST): 120.5, (4609, 2, WEST): 50.0}
    )
    wait_for(lambda: subscriber.json(f"tigo/{BARCODE}/state")["energy_today"] == 120.5, "more energy")
    assert subscriber.json(f"tigo/{BARCODE}/state")["measured_at"] == "2025-06-21T12:00:00.000+00:00"
    assert subscriber.count(lambda topic: topic == f"tigo/{BARCODE}/state") == states + 1
    passes = publisher.passes
    wait_for(lambda: publisher.passes >= passes + 5, "more passes")
    assert subscriber.count(lambda topic: topic == f"tigo/{BARCODE}/state") == states + 1  # unchanged

    # Integration passed local midnight: a new day, nothing made yet. Every value starts again.
    view.energy = EnergyToday.of(day + timedelta(days=1), 0, {})
    wait_for(lambda: subscriber.json(f"tigo/{BARCODE}/state")["energy_today"] == 0.0, "the reset")
    assert subscriber.json(f"tigo/{WEST_BARCODE}/state")["energy_today"] == 0.0
    # The replaced unit is out of the view, but its retained energy does not freeze at yesterday's.
    wait_for(lambda: subscriber.json(f"tigo/{NEW_BARCODE}/state")["energy_today"] == 0.0, "NEW's reset")
    assert subscriber.json(f"tigo/{NEW_BARCODE}/state")["measured_at"] == "2025-06-21T11:59:00.000+00:00"
    for group in ("array", "gateway/4609", "string/a1"):
        wait_for(lambda g=group: subscriber.json(f"tigo/{g}/state")["energy_today"] == 0.0, group)


def test_home_assistant_announcing_itself_gets_discovery_again(
    broker: LocalMosquitto, subscriber: Subscriber, running: list[MqttPublisher]
) -> None:
    view = View()
    view.feed(reading(1, 0, long_address=EAST))
    publisher = start(running, view.publisher(broker))
    everything = len(OPTIMIZER_FIELDS) + 2 * len(GROUP_FIELDS)  # the optimizer, the array and its gateway

    def config_messages() -> int:
        return subscriber.count(lambda topic: topic.endswith("/config"))

    wait_for(lambda: config_messages() == everything, "the first discovery")
    wait_for(lambda: publisher.passes >= 5, "more passes")
    assert config_messages() == everything  # described once, not at every pass
    subscriber.publish("homeassistant/status", "offline")  # Home Assistant stopping: nothing to do
    wait_for(lambda: publisher.passes >= 10, "more passes")
    assert config_messages() == everything
    subscriber.publish("homeassistant/status", "online")
    wait_for(lambda: config_messages() == 2 * everything, "discovery again")
    assert publisher.discovery_rounds == 2
    # States and availability come with it (Home Assistant may have lost them).
    assert subscriber.count(lambda topic: topic == f"tigo/{BARCODE}/state") == 2


def test_a_broker_restart_is_survived_and_everything_is_published_again(
    broker: LocalMosquitto,
    subscriber: Subscriber,
    running: list[MqttPublisher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="recorder.live.mqtt")
    view = View()
    view.feed(reading(1, 0, long_address=EAST))
    publisher = start(running, view.publisher(broker))
    wait_for(lambda: subscriber.text(f"tigo/{BARCODE}/availability") == "online", "online")
    before = set(subscriber.snapshot())
    broker.restart()  # no persistence: the broker comes back empty
    subscriber.clear()
    wait_for(lambda: subscriber.connects >= 2, "the subscriber to reconnect")
    wait_for(lambda: publisher.connects >= 2, "the publisher to reconnect")
    wait_for(lambda: set(subscriber.snapshot()) == before, "everything retained again")
    assert subscriber.text("tigo/status") == "online"
    assert subscriber.json(f"tigo/{BARCODE}/state")["power"] == 292.5
    assert publisher.discovery_rounds == 2
    messages = [record.getMessage() for record in caplog.records]
    assert any(message.startswith("MQTT: lost the connection to mqtt://127.0.0.1") for message in messages)
    assert any(message.endswith(" again") and "connected to" in message for message in messages)


def test_an_online_left_by_an_earlier_run_is_corrected(
    broker: LocalMosquitto, subscriber: Subscriber, running: list[MqttPublisher]
) -> None:
    # An earlier run left WEST online (retained); this run has not heard from WEST.
    subscriber.publish(f"tigo/{WEST_BARCODE}/availability", "online", retain=True)
    view = View()
    view.feed(reading(1, 0, long_address=EAST))
    start(running, view.publisher(broker))
    wait_for(lambda: subscriber.text(f"tigo/{WEST_BARCODE}/availability") == "offline", "WEST corrected")
    assert subscriber.text(f"tigo/{BARCODE}/availability") == "online"


def test_stopping_says_offline(broker: LocalMosquitto, subscriber: Subscriber) -> None:
    view = View()
    view.feed(reading(1, 0, long_address=EAST))
    publisher = view.publisher(broker, topic="home/solar", discovery_prefix="ha")
    publisher.start()
    wait_for(lambda: subscriber.text("home/solar/status") == "online", "online")
    publisher.stop()
    wait_for(lambda: subscriber.text("home/solar/status") == "offline", "offline after stop")
    found = configs(subscriber, "ha")
    assert found[f"tigo_{BARCODE}_power"]["availability"][0] == {"topic": "home/solar/status"}
    assert found["home_solar_array_power"]["device"]["identifiers"] == ["home_solar_array"]


CHILD = """
import sys, time
from datetime import date, timedelta
from recorder.energy import EnergyToday
from recorder.live.broker import parse_mqtt_url
from recorder.live.latest import LatestReadings
from recorder.live.mqtt import MqttPublisher
from recorder.live.snapshot import LiveData
from recorder.timestamps import from_millis
from tests.live.helpers import address, reading

latest = LatestReadings(timedelta(minutes=10))
latest.observe([reading(1, 0, long_address=address(0xC286CC))], from_millis(reading(1, 0)[3]))
MqttPublisher(parse_mqtt_url(sys.argv[1]), LiveData(latest, dict, dict), interval=0.2).start()
time.sleep(600)
"""


def test_the_will_says_offline_when_the_recorder_dies(broker: LocalMosquitto, subscriber: Subscriber) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, broker.url], cwd=ROOT)
    try:
        wait_for(lambda: subscriber.text(f"tigo/{BARCODE}/availability") == "online", "the child publishing")
        assert subscriber.text("tigo/status") == "online"
        child.kill()  # no goodbye: the broker publishes the will
        child.wait(10)
        wait_for(lambda: subscriber.text("tigo/status") == "offline", "the broker to publish the will")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def test_credentials_work_and_never_show(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    password = "s3cret-Pa55w0rd"
    server = LocalMosquitto(tmp_path / "auth", users={"recorder": password, "reader": "reader-pass"})
    try:
        server.start()
    except MosquittoUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    caplog.set_level(logging.DEBUG)
    reader = Subscriber(server.port, username="reader", password="reader-pass")
    view = View()
    view.feed(reading(1, 0, long_address=EAST))
    good = view.publisher(server, f"mqtt://recorder:{password}@127.0.0.1:{server.port}")
    bad = view.publisher(server, f"mqtt://recorder:wrong-{password}@127.0.0.1:{server.port}", topic="bad")
    try:
        good.start()
        bad.start()
        wait_for(lambda: reader.json(f"tigo/{BARCODE}/state") is not None, "the state, with credentials")
        wait_for(lambda: any("refused" in r.getMessage() for r in caplog.records), "the refusal")
        assert bad.connects == 0 and not bad.connected
        assert reader.text("bad/status") is None
    finally:
        good.stop()
        bad.stop()
        reader.close()
        server.stop()
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.ERROR  # once, not at every retry
    assert "mqtt://recorder@127.0.0.1" in refusals[0].getMessage()
    everything = "\n".join(record.getMessage() for record in caplog.records)
    assert password not in everything and "Pa55w0rd" not in everything
    assert "disconnected, not authorised" in server.log.read_text()  # the broker did refuse it


def test_no_broker_costs_the_recording_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    view = View()
    view.feed(reading(1, 0, long_address=EAST))
    publisher = view.publisher(LocalMosquitto.__new__(LocalMosquitto), f"mqtt://127.0.0.1:{free_ports(1)[0]}")
    publisher.start()
    wait_for(lambda: any("cannot connect" in r.getMessage() for r in caplog.records), "the warning", 15)
    # The view goes on being fed while nobody listens; stopping is prompt.
    view.feed(reading(1, 20, long_address=EAST))
    started = time.monotonic()
    publisher.stop()
    assert time.monotonic() - started < 5
    warnings = [r for r in caplog.records if "cannot connect" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert publisher.passes == 0
