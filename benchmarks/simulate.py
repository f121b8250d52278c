"""Simulator speed, and a larger decode-against-ground-truth run than the tests afford.

    python benchmarks/simulate.py [--days 1] [--nodes 135] [--gateways 1] [--noise 0.01]

Prints how long one simulated day of the array takes to generate (target: well under a minute
for 135 optimizers, ~15-20 MB of bus bytes), then decodes the same traffic and compares every
reading with the ground truth (exactness, measurement time error).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recorder.pipeline import DecodePipeline
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.sim.truth import compare
from recorder.sinks.jsonl import reading_json


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--nodes", type=int, default=135)
    parser.add_argument("--gateways", type=int, default=1)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--firmware", default="legacy")
    args = parser.parse_args()
    config = SimulationConfig(
        start=datetime(2025, 6, 21, tzinfo=UTC),
        duration=timedelta(days=args.days),
        nodes=args.nodes,
        gateways=args.gateways,
        noise=args.noise,
        firmware=args.firmware,
        reassign=True,
    )

    started = time.perf_counter()
    size = 0
    for data, _ in BusSimulation(config.with_changes(noise=0.0)).run():
        size += len(data)
    generation = time.perf_counter() - started
    per_day = generation / args.days
    print(
        f"generation: {args.days:g} day(s) of {args.gateways}×{args.nodes} optimizers = "
        f"{size / 1e6:.1f} MB of bus bytes in {generation:.1f} s "
        f"({per_day:.1f} s per simulated day; target: well under 60 s)"
    )

    started = time.perf_counter()
    truth: list[dict[str, Any]] = []
    pipeline = DecodePipeline()
    decoded = []
    for data, seconds in BusSimulation(config).run(truth.append):
        readings = pipeline.feed(data, config.start + timedelta(seconds=seconds)).readings
        decoded.extend(reading_json(reading) for reading in readings)
    elapsed = time.perf_counter() - started
    result = compare(truth, decoded, check_barcodes=True)
    print(f"generate + decode with noise {args.noise}: {elapsed:.1f} s")
    print(f"  {result.summary()}")
    print(f"  exact: {result.exact}")


if __name__ == "__main__":
    main()
