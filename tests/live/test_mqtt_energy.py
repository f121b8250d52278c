"""`recorder run --mqtt`: energy today, end to end, across local midnight.

One run: the simulator (`sim:` source, 30 optimizers in strings, 60x real time) from 23:48 to
00:13 in the site's zone, Asia/Tokyo (`--timezone`; UTC+9, so local midnight is 15:00 UTC with
the simulated sun still up and every panel producing). `recorder run` writes to the test InfluxDB
and publishes to a real Mosquitto; a paho subscriber keeps every message. Afterwards:

* every barcode has its `energy_today` entity (Wh, energy, total_increasing), and so do the
  strings and the array;
* each retained `energy_today` is, to the 0.01 Wh it is rounded to, the `tigo_energy` point the
  same run wrote for the new local day (the energy keeper's own total, not a second computation),
  and the string and array totals are the sums of those points;
* over the run, each optimizer's published values rise through the first day, drop once to
  about 0 when integration passes local midnight, and rise again: what Home Assistant's
  `total_increasing` reads as one reset a day. The last value of the first day is close to that
  day's `tigo_energy` point (it trails it by a publishing interval at most).
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import ROOT
from tests.influx import LocalInfluxDB
from tests.live.running import discovery_configs, fresh_database, influx_env, label_array, run_command
from tests.mosquitto import LocalMosquitto, MosquittoUnavailable, Subscriber, wait_for

pytestmark = [pytest.mark.influx, pytest.mark.slow]

NODES = 30
SEED = "11"
ZONE = "Asia/Tokyo"
START = "2025-06-21T14:48:00+00:00"  # 23:48 in Tokyo
DURATION = "25m"  # at 60x: 25 s of real time
FIRST_DAY, SECOND_DAY = date(2025, 6, 21), date(2025, 6, 22)
TOKEN = "recorder:influx-secret"


@dataclass
class EnergyRun:
    subscriber: Subscriber
    strings: dict[str, str]  # barcode -> string
    points: dict[tuple[str, date], float]  # (barcode, local day) -> tigo_energy energy_wh
    stderr: str
    returncode: int

    def history(self, barcode: str) -> list[float | None]:
        """Every energy_today the broker received for one optimizer, in order."""
        topic = f"tigo/{barcode}/state"
        return [
            json.loads(payload)["energy_today"]
            for seen, payload, _retained in list(self.subscriber.history)
            if seen == topic
        ]

    def configs(self) -> dict[str, dict[str, Any]]:
        return discovery_configs(self.subscriber)


@pytest.fixture(scope="module")
def energy_run(influxdb: LocalInfluxDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnergyRun]:
    work = tmp_path_factory.mktemp("mqtt-energy")
    broker = LocalMosquitto(work / "mosquitto")
    try:
        broker.start()
    except MosquittoUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    subscriber = Subscriber(broker.port)
    wait_for(lambda: subscriber.connects > 0, "the subscriber to connect")
    db = work / "state.db"
    # The array's strings, as labels (string devices and totals).
    mappings = label_array(work, db, start=START, seed=SEED, nodes=NODES)

    database = fresh_database(influxdb, "mqtt_energy")
    source = f"sim:?nodes={NODES}&seed={SEED}&start={START.replace('+', '%2B')}&duration={DURATION}&speed=60x"
    stderr_path = work / "recorder.stderr"
    try:
        with stderr_path.open("wb") as errors:
            completed = subprocess.run(
                run_command(
                    db,
                    source,
                    *("--exit-at-end", "--timezone", ZONE, "--mqtt", broker.url, "--mqtt-interval", "0.2"),
                ),
                stdout=subprocess.DEVNULL,
                stderr=errors,
                cwd=ROOT,
                env=influx_env(influxdb, database, TOKEN),
                timeout=300,
            )
        wait_for(lambda: subscriber.text("tigo/status") == "offline", "offline after the run")
        zone = ZoneInfo(ZONE)
        points = {
            (row["barcode"], datetime.fromtimestamp(row["time"] / 1000, zone).date()): row["energy_wh"]
            for row in influxdb.query("SELECT * FROM tigo_energy", database)
        }
        yield EnergyRun(
            subscriber=subscriber,
            strings={m["barcode"]: m["string"] for m in mappings},
            points=points,
            stderr=stderr_path.read_text(),
            returncode=completed.returncode,
        )
    finally:
        subscriber.close()
        broker.stop()
        influxdb.ensure_running()
        influxdb.drop_database(database)


def test_energy_today_is_the_tigo_energy_point_of_the_day(energy_run: EnergyRun) -> None:
    run = energy_run
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert {day for _, day in run.points} == {FIRST_DAY, SECOND_DAY}
    configs = run.configs()
    for barcode in run.strings:
        config = configs[f"tigo_{barcode}_energy_today"]
        assert config["unit_of_measurement"] == "Wh"
        assert config["device_class"] == "energy"
        assert config["state_class"] == "total_increasing"
        assert config["state_topic"] == f"tigo/{barcode}/state"
        assert config["value_template"] == "{{ value_json.energy_today }}"
        assert config["device"]["identifiers"] == [barcode]
        state = run.subscriber.json(f"tigo/{barcode}/state")
        want = run.points[(barcode, SECOND_DAY)]
        assert want > 1.0, barcode  # the sun is up: a real amount, not a coincidental zero
        assert abs(state["energy_today"] - want) <= 0.005 + 1e-9, barcode
    # String and array totals: the sums of the day's points.
    for string in set(run.strings.values()):
        want = math.fsum(run.points[(b, SECOND_DAY)] for b, s in run.strings.items() if s == string)
        state = run.subscriber.json(f"tigo/string/{string.lower()}/state")
        assert abs(state["energy_today"] - want) <= 0.005 + 1e-9, string
        assert configs[f"tigo_string_{string.lower()}_energy_today"]["state_class"] == "total_increasing"
    want = math.fsum(energy for (_, day), energy in run.points.items() if day == SECOND_DAY)
    array = run.subscriber.json("tigo/array/state")
    assert abs(array["energy_today"] - want) <= 0.005 + 1e-9
    assert configs["tigo_array_energy_today"]["unit_of_measurement"] == "Wh"


def test_energy_today_rises_and_starts_again_from_zero_after_local_midnight(energy_run: EnergyRun) -> None:
    run = energy_run
    for barcode in run.strings:
        values = [value for value in run.history(barcode) if value is not None]
        drops = [index for index in range(1, len(values)) if values[index] < values[index - 1]]
        assert len(drops) == 1, (barcode, values)  # one reset: local midnight
        before, after = values[: drops[0]], values[drops[0] :]
        assert before == sorted(before) and after == sorted(after), barcode
        first_day = run.points[(barcode, FIRST_DAY)]
        # The first day's last value trails its point by at most a publishing interval or so
        # (12 s of source time at 60x, plus the read loop's 10 s between advances).
        assert 0.9 * first_day <= before[-1] <= first_day + 0.005, (barcode, before[-1], first_day)
        assert after[0] < 0.1 * before[-1], (barcode, after[0], before[-1])  # from about 0
        assert after[-1] == pytest.approx(run.points[(barcode, SECOND_DAY)], abs=0.005 + 1e-9)
    # The totals too.
    totals = [
        json.loads(payload)["energy_today"]
        for topic, payload, _retained in list(run.subscriber.history)
        if topic == "tigo/array/state"
    ]
    totals = [value for value in totals if value is not None]
    drops = [index for index in range(1, len(totals)) if totals[index] < totals[index - 1]]
    assert len(drops) == 1 and totals[drops[0]] < 0.1 * totals[drops[0] - 1]
