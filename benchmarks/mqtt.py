"""What the MQTT publisher costs.

    python benchmarks/mqtt.py [--nodes 135] [--rounds 50] [--minutes 3]

1. A publishing pass, in this process, for a simulated array of `--nodes` optimizers (real
   readings from the simulator through the decoder; every optimizer labelled with a name and a
   string) to a real Mosquitto on loopback: the first pass (every discovery config, every state),
   a pass where every optimizer has a new reading (states only), and a pass with nothing new.
   Messages and bytes per pass, wall and CPU milliseconds.
2. Live CPU at real time: one simulator (`recorder simulate --listen`, midday) serves two
   `recorder run` processes at once, each writing to its own database of a throwaway InfluxDB,
   both without the HTTP face: one without MQTT, one with `--mqtt` (every 10 s) to the broker,
   where a subscriber takes everything. Side by side for `--minutes`, so a shared machine's
   noise falls on both alike.

CPU comes from /proc for each recorder process alone.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.proc import MIDDAY, cpu_seconds, peak_rss_mb, start_simulator  # noqa: E402
from recorder.live.broker import MqttBroker  # noqa: E402
from recorder.live.latest import LatestReadings  # noqa: E402
from recorder.live.mqtt import MqttPublisher  # noqa: E402
from recorder.live.snapshot import LiveData  # noqa: E402
from recorder.pipeline import DecodePipeline  # noqa: E402
from recorder.sim.bus import BusSimulation  # noqa: E402
from recorder.sim.config import SimulationConfig  # noqa: E402
from recorder.storage.state import Labels  # noqa: E402
from tests.influx import LocalInfluxDB  # noqa: E402
from tests.mosquitto import LocalMosquitto, Subscriber, wait_for  # noqa: E402


def simulated_batches(nodes: int, minutes: int) -> list[tuple[list[Any], datetime]]:
    config = SimulationConfig(
        start=datetime.fromisoformat(MIDDAY), duration=timedelta(minutes=minutes), nodes=nodes, seed=1
    )
    pipeline = DecodePipeline()
    batches = []
    for data, seconds in BusSimulation(config).run():
        at = config.start + timedelta(seconds=seconds)
        readings = pipeline.feed(data, at).readings
        if readings:
            batches.append((readings, at))
    return batches


def pass_phase(nodes: int, rounds: int, work: Path) -> None:
    # Enough simulated time for every optimizer to report `rounds` times (each every 20 s).
    batches = simulated_batches(nodes, minutes=(rounds + 2) // 3 + 2)
    latest = LatestReadings(timedelta(minutes=10))
    # Feed the first minute; then a round is "20 s more of readings, then a pass".
    position = 0

    def feed_until(limit: datetime) -> int:
        nonlocal position
        fed = 0
        while position < len(batches) and batches[position][1] <= limit:
            outputs, at = batches[position]
            latest.observe(outputs, at)
            fed += len(outputs)
            position += 1
        return fed

    start = datetime.fromisoformat(MIDDAY)
    feed_until(start + timedelta(minutes=1))
    labels: dict[bytes, Labels] = {}
    for index, optimizer in enumerate(latest.snapshot().optimizers):
        if optimizer.reading.long_address is not None:
            labels[optimizer.reading.long_address] = Labels(f"panel {index + 1}", f"S{index // 15 + 1}")
    data = LiveData(latest, health=dict, labels=lambda: labels)
    broker = LocalMosquitto(work / "mosquitto")
    broker.start()
    subscriber = Subscriber(broker.port)
    publisher = MqttPublisher(MqttBroker("127.0.0.1", broker.port), data, interval=3600, version="bench")
    try:
        wait_for(lambda: subscriber.connects > 0, "the subscriber")
        publisher.start()
        wait_for(lambda: publisher.connected and publisher.passes > 0, "the first pass")  # discovery, at once
        time.sleep(1)
        first = subscriber.count(lambda topic: True)
        first_bytes = sum(len(payload) for payload in subscriber.snapshot().values())

        def one_pass() -> tuple[float, float, int]:
            before = subscriber.count(lambda topic: True)
            started, cpu = time.perf_counter(), time.process_time()
            publisher.publish_once()
            wall, used = time.perf_counter() - started, time.process_time() - cpu
            time.sleep(0.3)  # let the subscriber catch up before counting
            return wall * 1000, used * 1000, subscriber.count(lambda topic: True) - before

        publisher.publish_once()  # settle
        time.sleep(0.5)
        fresh = [one_pass() for _ in range(min(rounds, 10))]  # nothing new since the last pass
        fed: list[int] = []
        busy = []
        at = start + timedelta(minutes=1)
        for _ in range(rounds):
            at += timedelta(seconds=20)
            fed.append(feed_until(at))
            busy.append(one_pass())
    finally:
        publisher.stop()
        subscriber.close()
        broker.stop()
    count = len(latest.snapshot().optimizers)
    strings = len({label.string for label in labels.values()})
    print(f"publishing passes, {count} optimizers, labelled in {strings} strings:")
    print(
        f"  first pass (discovery and every state): {first} messages, {first_bytes / 1024:.0f} KiB retained"
    )
    for name, samples, note in (
        ("every optimizer reported", busy, f"{statistics.median(fed):.0f} readings fed per round"),
        ("nothing new", fresh, ""),
    ):
        walls = sorted(sample[0] for sample in samples)
        cpus = [sample[1] for sample in samples]
        messages = statistics.median(sample[2] for sample in samples)
        print(
            f"  {name:<26} median {statistics.median(walls):6.2f} ms wall, "
            f"{statistics.median(cpus):6.2f} ms CPU, "
            f"max {walls[-1]:6.2f} ms; {messages:.0f} messages{'; ' + note if note else ''}"
        )
    print("  at the default --mqtt-interval 10: one pass every 10 s")


def start_recorder(
    influx: LocalInfluxDB, work: Path, name: str, port: int, mqtt: str | None
) -> subprocess.Popen[str]:
    database = f"bench_{name}"
    influx.create_database(database)
    environment = {
        **os.environ,
        "INFLUX_URL": influx.url,
        "INFLUX_TOKEN": "bench:bench",
        "INFLUX_ORG": "-",
        "INFLUX_BUCKET": database,
        "RECORDER_LOG_LEVEL": "WARNING",
    }
    if mqtt:
        environment["RECORDER_MQTT"] = mqtt
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "recorder.cli.app", "run", "--db", str(work / f"{name}.db")),
            *(
                "--source",
                f"tcp://127.0.0.1:{port}",
                "--archive",
                str(work / f"{name}-archive"),
                "--http",
                "",
            ),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=environment,
    )


def live_phase(nodes: int, minutes: float, work: Path) -> None:
    influx = LocalInfluxDB(work / "influx")
    influx.start()
    broker = LocalMosquitto(work / "mosquitto-live")
    broker.start()
    subscriber = Subscriber(broker.port)
    simulator: subprocess.Popen[str] | None = None
    recorders: list[subprocess.Popen[str]] = []
    try:
        simulator, port = start_simulator(speed="realtime", duration=f"{minutes + 1}m", nodes=nodes)
        without = start_recorder(influx, work, "without", port, None)
        with_mqtt = start_recorder(influx, work, "with", port, broker.url)
        recorders = [without, with_mqtt]
        time.sleep(10)  # imports, start-up and the first node table are not what we measure
        started = time.monotonic()
        messages = subscriber.count(lambda topic: True)
        before = [cpu_seconds(r.pid) for r in recorders]
        time.sleep(minutes * 60)
        elapsed = time.monotonic() - started
        used = [cpu_seconds(r.pid) - b for r, b in zip(recorders, before, strict=True)]
        rss = [peak_rss_mb(r.pid) for r in recorders]
        messages = subscriber.count(lambda topic: True) - messages
    finally:
        for process in recorders:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
        if simulator is not None and simulator.poll() is None:
            simulator.kill()
            simulator.wait(10)
        subscriber.close()
        broker.stop()
        influx.stop()
    print(f"real time, {nodes} optimizers, {elapsed:.0f} s side by side:")
    for label, cpu, peak in (("without MQTT", used[0], rss[0]), ("with --mqtt (10 s)", used[1], rss[1])):
        print(
            f"  {label:<20} CPU {cpu:6.2f} s = {100 * cpu / elapsed:5.2f} % of one core, "
            f"peak RSS {peak:4.0f} MB"
        )
    print(
        f"  difference: {100 * (used[1] - used[0]) / elapsed:+.2f} % of one core; "
        f"{messages} messages published"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=135)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the live phase (0: skip it)")
    args = parser.parse_args()
    print(
        f"benchmarks/mqtt.py at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs "
        "(noisy if shared)"
    )
    with tempfile.TemporaryDirectory(prefix="recorder-bench-mqtt-") as scratch:
        pass_phase(args.nodes, args.rounds, Path(scratch))
        if args.minutes > 0:
            live_phase(args.nodes, args.minutes, Path(scratch))


if __name__ == "__main__":
    main()
