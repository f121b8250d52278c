"""What the end-to-end `recorder run` tests set up alike around the simulator and InfluxDB.

`label_array` writes the simulated array's strings (and names) as labels, the way the quickstart
imports them; `fresh_database` and `influx_env` give a run its own InfluxDB database and the
environment that points the recorder at it, `run_command` its command line; `last_reports` and `discovery_configs` read back
what the ground truth and the broker hold.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recorder.sim.truth import load_truth, power_reports
from tests.conftest import run_recorder
from tests.influx import LocalInfluxDB
from tests.mosquitto import Subscriber


def label_array(
    work: Path,
    db: Path,
    *,
    start: str,
    seed: str,
    nodes: int,
    name: Callable[[dict[str, Any]], str | None] = lambda mapping: None,
) -> list[dict[str, Any]]:
    """Import the simulated array's strings (and `name(mapping)`) as labels into `db`.

    Returns the array's mapping records (barcode, long address, string, node ID).
    """
    array = work / "array.jsonl"
    run_recorder(
        *("simulate", "--duration", "1m", "--start", start, "--seed", seed),
        *("--nodes", str(nodes), "--truth", str(array)),
    )
    mappings = [record for record in load_truth(array) if record["type"] == "mapping"]
    labels = [
        {
            "long_address": m["long_address"],
            "barcode": m["barcode"],
            "name": name(m),
            "string": m["string"],
            "note": None,
        }
        for m in mappings
    ]
    (work / "labels.json").write_text(
        json.dumps({"format": "recorder-nodes", "version": 1, "optimizers": labels})
    )
    run_recorder("nodes", "import", str(work / "labels.json"), "--db", str(db))
    return mappings


def fresh_database(influxdb: LocalInfluxDB, prefix: str) -> str:
    """A new, empty InfluxDB database named `<prefix>_<random>` (the caller drops it)."""
    database = f"{prefix}_{uuid.uuid4().hex[:10]}"
    influxdb.ensure_running()
    influxdb.create_database(database)
    return database


def run_command(db: Path, source: str, *flags: str) -> list[str]:
    """`recorder run` on `db` and `source` without a raw archive, as a child process runs it."""
    return [
        *(sys.executable, "-m", "recorder.cli.app", "run", "--db", str(db)),
        *("--source", source, "--archive-days", "0", *flags),
    ]


def influx_env(influxdb: LocalInfluxDB, database: str, token: str) -> dict[str, str]:
    """The environment of a `recorder run` that writes to `database` with `token`."""
    return {
        **os.environ,
        "INFLUX_URL": influxdb.url,
        "INFLUX_TOKEN": token,
        "INFLUX_ORG": "-",
        "INFLUX_BUCKET": database,
    }


def last_reports(truth: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each optimizer's last report that reached the listener, by barcode."""
    last: dict[str, dict[str, Any]] = {}
    for report in power_reports(truth):
        if report["destroyed"]:
            continue
        seen = last.get(report["barcode"])
        if seen is None or report["measured_at"] > seen["measured_at"]:
            last[report["barcode"]] = report
    return last


def discovery_configs(subscriber: Subscriber) -> dict[str, dict[str, Any]]:
    """The retained Home Assistant discovery configs, by unique_id."""
    return {
        topic.split("/")[2]: json.loads(payload)
        for topic, payload in subscriber.snapshot().items()
        if topic.startswith("homeassistant/sensor/")
    }
