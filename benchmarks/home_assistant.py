"""A real Home Assistant shows what `recorder run --mqtt` publishes: entities by barcode, right values.

    python benchmarks/home_assistant.py [--nodes 12] [--seconds 45] [--stale-after 45|120]
                                        [--venv DIR] [--keep DIR]

Not part of the test suite: the first run installs Home Assistant (`homeassistant==2024.3.3`,
the last release that installs on Python 3.11, with the requirements of the integrations used
here) into its own virtual environment, `~/.cache/recorder/home-assistant-2024.3.3` (or
`--venv`), never into the project's `.venv`: it pins hundreds of packages. That takes minutes;
later runs reuse it and take about two.

What it does, printing each step:

1. starts a Mosquitto (Debian `mosquitto`) on a free loopback port, with a password file;
2. starts Home Assistant on a free loopback port with a minimal `configuration.yaml` (`http`,
   `api`, `config`, `onboarding`; no `default_config`), onboards a user through
   `/api/onboarding/users` and gets an access token from `/auth/token`;
3. sets up the MQTT integration through the config-flow REST API
   (`/api/config/config_entries/flow`, handler `mqtt`), pointed at the broker: Home Assistant
   2024.x no longer takes the broker from YAML;
4. runs `recorder simulate --listen` (real time, midday, `--nodes` optimizers, a few labelled
   with a name and a string) and `recorder run --mqtt ...` reading it over TCP. InfluxDB is
   deliberately absent: readings wait in the outbox, and MQTT is unaffected;
5. when the simulator is done, reads `/api/states` and compares every optimizer's sensors with
   the simulator's ground truth (the last report of each optimizer), and checks, through
   `/api/template`, that each optimizer is a device named by its label or barcode, connected via
   its TAP; the string and array totals are checked against the same truth; every entity's unit,
   device class and state class are the discovery's; energy today trails the readings by the
   five-minute reorder window, so with `--seconds` above 330 each optimizer's "Energy today"
   must be above 0 Wh and between the trapezoid integral of its truth reports measured up to
   5.5 minutes before the last one and the integral of them all (a shorter run only checks
   its unit and classes: it is 0 Wh then);
6. waits, with the recorder still running, until `--stale-after` (45 s; 120 s above a 330 s run)
   has passed since the last report: every optimizer's measurements must turn `unavailable`
   (per-optimizer availability), while its "Last report" stays shown and the array total falls
   to 0 W, 0 reporting;
7. stops the recorder (SIGTERM): now "Last report" turns `unavailable` too (the recorder's own
   `tigo/status`).

Exit status 0 when everything matched; 1 with the differences otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.proc import MIDDAY, start_simulator  # noqa: E402
from recorder.live.discovery import OPTIMIZER_FIELDS  # noqa: E402
from recorder.sim.truth import load_truth, power_reports  # noqa: E402
from tests.influx import free_ports  # noqa: E402
from tests.mosquitto import LocalMosquitto, Subscriber, wait_for  # noqa: E402

HA_VERSION = "2024.3.3"
# Requirements of the integrations Home Assistant always sets up (frontend, backup, hardware...,
# their dependencies) and of those configured below, which it would otherwise pip-install at
# start-up: it runs with --skip-pip here, so nothing is fetched behind our back.
HA_EXTRAS = (
    "fnv-hash-fast==0.5.0",
    "home-assistant-frontend==20240307.0",
    "ifaddr==0.2.0",
    "janus==1.0.0",
    "josepy<2",  # acme (for the cloud integration) still uses josepy 1's ComparableX509
    "paho-mqtt==1.6.1",
    "numpy==1.26.0",  # the camera integration, which MQTT sets up beside sensor
    "Pillow==10.2.0",
    "psutil-home-assistant==0.0.1",
    "securetar==2024.2.1",
    "SQLAlchemy==2.0.27",
)
DEFAULT_VENV = Path.home() / ".cache" / "recorder" / f"home-assistant-{HA_VERSION}"
SEED = "5"
LABELLED = 4  # optimizers given a name and a string, to show both kinds of device name
MQTT_PASSWORD = "ha-Broker-pw-7"
HA_USER, HA_PASSWORD = "recorder", "recorder-ha-test"

CONFIGURATION = """\
homeassistant:
  name: recorder test
  latitude: 52.37
  longitude: 4.89
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: NL
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
config:
onboarding:
logger:
  default: warning
  logs:
    homeassistant.components.mqtt: info
"""


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def ensure_home_assistant(venv: Path) -> Path:
    hass = venv / "bin" / "hass"
    if hass.exists():
        version = subprocess.run([str(hass), "--version"], capture_output=True, text=True).stdout.strip()
        if version == HA_VERSION:
            return hass
    say(f"installing Home Assistant {HA_VERSION} into {venv} (once; a few minutes)")
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"homeassistant=={HA_VERSION}", *HA_EXTRAS], check=True
    )
    return hass


class HomeAssistant:
    def __init__(self, hass: Path, directory: Path) -> None:
        self.hass = hass
        self.directory = directory
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = ""
        self.log = directory / "home-assistant.out"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "configuration.yaml").write_text(CONFIGURATION.format(port=self.port))
        with self.log.open("ab") as output:
            self._process = subprocess.Popen(
                [str(self.hass), "-c", str(self.directory), "--skip-pip", "--log-no-color"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/api/onboarding", timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.HTTPError):
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"Home Assistant did not come up; its log:\n{tail(self.log)}")
            time.sleep(0.5)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def request(self, method: str, path: str, body: Any = None, *, form: bool = False) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = None
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        request = urllib.request.Request(f"{self.url}{path}", data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            raise SystemExit(f"{method} {path}: HTTP {error.code}: {error.read().decode()[:500]}") from None
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    def onboard(self) -> None:
        client_id = f"{self.url}/"
        answer = self.request(
            "POST",
            "/api/onboarding/users",
            {
                "client_id": client_id,
                "name": "Recorder Test",
                "username": HA_USER,
                "password": HA_PASSWORD,
                "language": "en",
            },
        )
        tokens = self.request(
            "POST",
            "/auth/token",
            {"grant_type": "authorization_code", "code": answer["auth_code"], "client_id": client_id},
            form=True,
        )
        self.token = tokens["access_token"]

    def add_mqtt(self, port: int, username: str, password: str) -> dict[str, Any]:
        flow = self.request(
            "POST", "/api/config/config_entries/flow", {"handler": "mqtt", "show_advanced_options": False}
        )
        while flow.get("type") == "form":
            if flow["step_id"] != "broker":
                raise SystemExit(f"unexpected MQTT config step: {flow}")
            flow = self.request(
                "POST",
                f"/api/config/config_entries/flow/{flow['flow_id']}",
                {"broker": "127.0.0.1", "port": port, "username": username, "password": password},
            )
            if flow.get("errors"):
                raise SystemExit(f"the MQTT config flow refused the broker: {flow['errors']}")
        if flow.get("type") != "create_entry":
            raise SystemExit(f"the MQTT config flow ended with {flow}")
        return dict(flow)

    def states(self) -> dict[str, dict[str, Any]]:
        return {state["entity_id"]: state for state in self.request("GET", "/api/states")}

    def template(self, text: str) -> str:
        return str(self.request("POST", "/api/template", {"template": text}))


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not written)"


def recorder(*arguments: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recorder.cli.app", *arguments],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        **kwargs,
    )


def entity_slug(text: str) -> str:
    """How Home Assistant turns "4-C286CCZ Power" into the object id of an entity."""
    out = []
    for character in text.lower():
        out.append(character if character.isalnum() else "_")
    return "_".join(part for part in "".join(out).split("_") if part)


def energy_bounds(
    truth: list[dict[str, Any]], window_s: float = 300.0, slack_s: float = 30.0
) -> dict[str, tuple[float, float]]:
    """barcode -> (lowest, highest) Wh its "Energy today" may show: the trapezoid integral of its
    reports (power to 0.01 W, as the points carry it) measured up to the reorder window plus
    `slack_s` before the newest report anywhere, and the integral of all of them."""
    series: dict[str, list[tuple[float, float]]] = {}
    for report in power_reports(truth):
        if not report["destroyed"]:
            at = datetime.fromisoformat(report["measured_at"]).timestamp()
            power = round(report["voltage_in"] * report["current_in"], 2)
            series.setdefault(report["barcode"], []).append((at, power))
    newest = max(at for points in series.values() for at, _ in points)
    bounds = {}
    for barcode, points in series.items():
        points.sort()
        low = high = 0.0
        for (t1, p1), (t2, p2) in pairwise(points):
            area = (p1 + p2) / 2 * (t2 - t1) / 3600
            high += area
            if t2 <= newest - window_s - slack_s:
                low += area
        bounds[barcode] = (low, high)
    return bounds


def expected_states(report: dict[str, Any]) -> dict[str, str]:
    """What Home Assistant must show for an optimizer whose last report is `report`."""
    duty = report["duty_cycle"]
    power = round(report["voltage_in"] * report["current_in"], 5)
    return {
        "Power": str(power),
        "Input voltage": str(report["voltage_in"]),
        "Output voltage": str(report["voltage_out"]),
        "Input current": str(report["current_in"]),
        "Output current": str(round(report["current_in"] / duty, 3)) if duty else "unknown",
        "Temperature": str(report["temperature"]),
        "Duty cycle": str(round(duty * 100, 1)),
        "RSSI": str(report["rssi"]),
    }


def label_some(work: Path, db: Path, nodes: int) -> dict[str, str]:
    """Name the first few optimizers (string "E"), as a user would; barcode -> name."""
    array = work / "array.jsonl"
    recorder(
        "simulate",
        "--duration",
        "1m",
        "--start",
        MIDDAY,
        "--seed",
        SEED,
        "--nodes",
        str(nodes),
        "--truth",
        str(array),
    )
    mappings = [record for record in load_truth(array) if record["type"] == "mapping"][:LABELLED]
    names = {m["barcode"]: f"east {n + 1}" for n, m in enumerate(mappings)}
    optimizers = [
        {
            "long_address": m["long_address"],
            "barcode": m["barcode"],
            "name": names[m["barcode"]],
            "string": "E",
            "note": None,
        }
        for m in mappings
    ]
    labels = work / "labels.json"
    labels.write_text(json.dumps({"format": "recorder-nodes", "version": 1, "optimizers": optimizers}))
    recorder("nodes", "import", str(labels), "--db", str(db))
    return names


def start_recorder(
    db: Path, source_port: int, broker: LocalMosquitto, log: Path, stale_after: int
) -> subprocess.Popen[str]:
    with log.open("w") as errors:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "recorder.cli.app", "run", "--db", str(db)),
                *("--source", f"tcp://127.0.0.1:{source_port}", "--archive-days", "0", "--http", ""),
                *("--mqtt-interval", "2", "--stale-after", f"{stale_after}s"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=errors,
            text=True,
            cwd=ROOT,
            env={
                **os.environ,
                "RECORDER_MQTT": f"mqtt://recorder:{MQTT_PASSWORD}@127.0.0.1:{broker.port}",
                # No InfluxDB: readings wait in the outbox; MQTT must not care.
                "INFLUX_URL": f"http://127.0.0.1:{free_ports(1)[0]}",
                "INFLUX_TOKEN": "nobody:nothing",
            },
        )


def last_reports(truth: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    last: dict[str, dict[str, Any]] = {}
    for report in power_reports(truth):
        if not report["destroyed"] and report["measured_at"] > last.get(report["barcode"], {}).get(
            "measured_at", ""
        ):
            last[report["barcode"]] = report
    return last


DEVICE_TEMPLATE = (
    "{%% set d = device_id('%s') %%}{{ device_attr(d, 'name') }}|{{ device_attr(d, 'model') }}|"
    "{{ device_attr(d, 'identifiers') | list }}|{{ device_attr(device_attr(d, 'via_device_id'), 'name') }}"
)


class Check:
    """Compares Home Assistant's entities with the ground truth; prints a sample, keeps failures."""

    def __init__(self, home: HomeAssistant, names: dict[str, str], labelled: set[str]) -> None:
        self.home = home
        self.names = names
        self.labelled = labelled
        self.failures: list[str] = []
        self.shown = 0

    def entity(self, barcode: str, field_name: str) -> str:
        return f"sensor.{entity_slug(f'{self.names[barcode]} {field_name}')}"

    def optimizers(self, sensors: dict[str, dict[str, Any]], last: dict[str, dict[str, Any]]) -> None:
        print(f"    {'entity':<40} {'state':>10} {'unit':<4} {'device_class':<12} {'expected':>10}")
        for barcode, report in sorted(last.items()):
            expected = expected_states(report)
            sample = self.shown < len(OPTIMIZER_FIELDS) or (
                barcode in self.labelled and self.shown < 2 * len(OPTIMIZER_FIELDS)
            )
            for field in OPTIMIZER_FIELDS:
                entity_id = self.entity(barcode, field.name)
                state = sensors.get(entity_id)
                if state is None:
                    self.failures.append(f"{entity_id}: missing")
                    continue
                unit = state["attributes"].get("unit_of_measurement")
                device_class = state["attributes"].get("device_class")
                state_class = state["attributes"].get("state_class")
                if (unit, device_class, state_class) != (field.unit, field.device_class, field.state_class):
                    self.failures.append(
                        f"{entity_id}: unit {unit}, device class {device_class}, state class {state_class}"
                    )
                if field.name in expected and state["state"] != expected[field.name]:
                    self.failures.append(f"{entity_id}: {state['state']} != {expected[field.name]}")
                if sample:
                    unchecked = "(a time)" if field.device_class == "timestamp" else "-"
                    self.row(
                        entity_id, state["state"], unit, device_class, expected.get(field.name, unchecked)
                    )
                    self.shown += 1
            device = self.home.template(DEVICE_TEMPLATE % self.entity(barcode, "Power"))
            want = f"{self.names[barcode]}|TS4 optimizer|[('mqtt', '{barcode}')]|Tigo TAP 4609"
            if device != want:
                self.failures.append(f"device of {barcode}: {device!r}, expected {want!r}")

    def total(self, sensors: dict[str, dict[str, Any]], entity_id: str, power: float) -> None:
        state = sensors.get(entity_id, {}).get("state")
        self.row(entity_id, str(state), "W", "power", str(round(power, 1)))
        if state is None or abs(float(state) - power) > 0.06:
            self.failures.append(f"{entity_id}: {state} != {power:.1f}")

    @staticmethod
    def row(entity_id: str, state: str, unit: str | None, device_class: str | None, expected: str) -> None:
        print(f"    {entity_id:<40} {state[:25]:>10} {unit or '':<4} {device_class or '':<12} {expected:>10}")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=12)
    parser.add_argument("--seconds", type=int, default=45, help="real-time simulation length")
    parser.add_argument(
        "--stale-after",
        type=int,
        default=None,
        help="the recorder's --stale-after in seconds (longer than the simulator's 20 s between "
        "reports); default 45, or 120 for a run above 330 s, whose simulator went on for more "
        "than 45 s after its last report in one run, so the values were stale before the check",
    )
    parser.add_argument(
        "--venv", type=Path, default=DEFAULT_VENV, help="Home Assistant's virtual environment"
    )
    parser.add_argument("--keep", type=Path, help="keep the working directory (logs, HA config) here")
    options = parser.parse_args()
    if options.stale_after is None:
        options.stale_after = 120 if options.seconds > 330 else 45
    if shutil.which("mosquitto", path="/usr/sbin:/usr/bin") is None:
        raise SystemExit("mosquitto not found: apt-get install mosquitto")
    hass = ensure_home_assistant(options.venv)
    work = options.keep or Path(tempfile.mkdtemp(prefix="recorder-ha-"))
    work.mkdir(parents=True, exist_ok=True)
    users = {"recorder": MQTT_PASSWORD, "homeassistant": MQTT_PASSWORD, "reader": "reader"}
    broker = LocalMosquitto(work / "mosquitto", users=users)
    home = HomeAssistant(hass, work / "home-assistant")
    processes: list[subprocess.Popen[str]] = []
    try:
        broker.start()
        say(f"Mosquitto {broker.url} (password file; anonymous clients refused)")
        started = time.monotonic()
        home.start()
        say(f"Home Assistant {HA_VERSION} up at {home.url} after {time.monotonic() - started:.0f} s")
        home.onboard()
        say(f"onboarded user {HA_USER!r}; access token from /auth/token ({len(home.token)} characters)")
        entry = home.add_mqtt(broker.port, "homeassistant", MQTT_PASSWORD)
        say(
            f"MQTT integration set up by the config flow: entry {entry['result']['entry_id']} "
            f"for {entry['title']}"
        )
        reader = Subscriber(broker.port, username="reader", password="reader")
        wait_for(
            lambda: reader.text("homeassistant/status") == "online", "Home Assistant's birth message", 60
        )
        say("Home Assistant announced itself on homeassistant/status: online")

        db = work / "state.db"
        labels = label_some(work, db, options.nodes)
        truth_file = work / "truth.jsonl"
        simulator, source_port = start_simulator(
            "--seed",
            SEED,
            "--truth",
            str(truth_file),
            speed="realtime",
            duration=f"{options.seconds}s",
            nodes=options.nodes,
        )
        processes.append(simulator)
        run = start_recorder(db, source_port, broker, work / "recorder.stderr", options.stale_after)
        processes.append(run)
        say(
            f"recorder run --mqtt mqtt://recorder:***@127.0.0.1:{broker.port} reading a simulator of "
            f"{options.nodes} optimizers ({options.seconds} s, real time); no InfluxDB"
        )
        simulator.wait(timeout=options.seconds + 120)
        truth = load_truth(truth_file)
        last = last_reports(truth)
        say(f"simulation over: {len(power_reports(truth))} reports from {len(last)} optimizers")
        check = Check(home, {barcode: labels.get(barcode, barcode) for barcode in last}, set(labels))

        def settled() -> bool:
            states = home.states()
            return all(
                states.get(check.entity(barcode, "Power"), {}).get("state")
                == expected_states(report)["Power"]
                and states.get(check.entity(barcode, "RSSI"), {}).get("state") == str(report["rssi"])
                for barcode, report in last.items()
            )

        try:
            wait_for(settled, "Home Assistant to show every optimizer's last report", 60)
        except AssertionError:
            states = home.states()
            for barcode, report in sorted(last.items()):
                shown = [
                    states.get(check.entity(barcode, name), {}).get("state")
                    for name in ("Power", "RSSI", "Last report")
                ]
                print(
                    f"    {barcode}: Power {shown[0]} (truth {expected_states(report)['Power']}), RSSI "
                    f"{shown[1]} (truth {report['rssi']}), Last report {shown[2]} "
                    f"(truth {report['measured_at']})"
                )
            raise
        time.sleep(3)  # and one more publication interval: nothing changes any more
        sensors = {key: value for key, value in home.states().items() if key.startswith("sensor.")}
        say(f"/api/states: {len(sensors)} sensor entities; a sample, and the totals:")
        check.optimizers(sensors, last)
        check.total(
            sensors, "sensor.tigo_array_power", sum(r["voltage_in"] * r["current_in"] for r in last.values())
        )
        check.total(
            sensors,
            "sensor.string_e_power",
            sum(r["voltage_in"] * r["current_in"] for b, r in last.items() if b in labels),
        )
        if options.seconds > 330:
            bounds = energy_bounds(truth)
            shown = []
            for barcode in sorted(last):
                entity_id = check.entity(barcode, "Energy today")
                state = sensors.get(entity_id, {}).get("state")
                low, high = bounds[barcode]
                try:
                    value = float(state)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    value = float("nan")
                shown.append(value)
                if not (value > 0 and low - 0.01 <= value <= high + 0.01):
                    check.failures.append(
                        f"{entity_id}: {state} Wh, expected above 0 and in [{low:.2f}, {high:.2f}]"
                    )
            sample = sorted(last)[0]
            say(
                f"energy today: every optimizer's between {min(shown):.2f} and {max(shown):.2f} Wh; "
                f"e.g. {check.entity(sample, 'Energy today')} {shown[0]:.2f} Wh, expected in "
                f"[{bounds[sample][0]:.2f}, {bounds[sample][1]:.2f}] from the truth; array total "
                f"{sensors.get('sensor.tigo_array_energy_today', {}).get('state')} Wh"
            )
        else:
            say("energy today: not checked (a run of 330 s or less ends inside the five-minute window)")
        reporting = sensors.get("sensor.tigo_array_optimizers_reporting", {}).get("state")
        if reporting != str(len(last)):
            check.failures.append(f"sensor.tigo_array_optimizers_reporting: {reporting} != {len(last)}")
        say(
            "devices (/api/template): "
            + home.template(DEVICE_TEMPLATE % check.entity(next(iter(labels)), "Power"))
        )

        say(f"the bus is quiet: waiting --stale-after ({options.stale_after} s) with the recorder running")
        quiet = time.monotonic()

        def unavailable(field_name: str) -> int:
            states = home.states()
            return sum(1 for b in last if states[check.entity(b, field_name)]["state"] == "unavailable")

        wait_for(lambda: unavailable("Power") == len(last), "stale optimizers", options.stale_after + 60)
        states = home.states()
        stale_total = (
            states["sensor.tigo_array_power"]["state"],
            states["sensor.tigo_array_optimizers_reporting"]["state"],
        )
        last_report = states[check.entity(sorted(last)[0], "Last report")]["state"]
        say(
            f"{time.monotonic() - quiet:.0f} s later: {unavailable('Power')} of {len(last)} optimizers' "
            f"Power unavailable, {len(last) - unavailable('Last report')} still show their Last report "
            f"(e.g. {last_report}); array {stale_total[0]} W, {stale_total[1]} reporting"
        )
        if unavailable("Last report") != 0 or stale_total != ("0.0", "0"):
            check.failures.append(f"after --stale-after: last report {last_report}, array {stale_total}")

        say("stopping the recorder (SIGTERM): now every entity of an optimizer is unavailable")
        run.send_signal(signal.SIGTERM)
        run.wait(60)
        wait_for(lambda: unavailable("Last report") == len(last), "unavailable", 30)
        say(
            f"after the recorder stopped: {unavailable('Last report')} of {len(last)} optimizers' "
            "Last report entities unavailable"
        )
        log = (work / "recorder.stderr").read_text()
        if MQTT_PASSWORD in log or "Traceback" in log:
            check.failures.append("the recorder's log holds the password or a traceback")
        reader.close()
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        home.stop()
        broker.stop()
        if options.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if check.failures:
        print("MISMATCHES:\n  " + "\n  ".join(check.failures[:50]))
        return 1
    say("every optimizer's sensors in Home Assistant match the simulator's ground truth")
    return 0


if __name__ == "__main__":
    sys.exit(main())
