"""The simulator as a source: `sim:?nodes=135&duration=2h&speed=60x&truth=/tmp/truth.jsonl`.

Options (all optional): gateways, nodes, start (ISO-8601), duration (90m, 3h, 7d), seed,
firmware (legacy|4x), noise (probability per frame), reassign (0|1), controller_restart (0|1),
aliases_last (0|1), quiet_replacement (0|1) (see `SimulationConfig`), identity (0|1: node tables,
topology reports and enumeration at all), silence (NODE@TIME[,...]: that node of the first
gateway stops reporting from then on), speed (max, realtime, 60x; default max), truth (write the
ground truth there).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from recorder.durations import parse_duration
from recorder.errors import SourceError, UsageError
from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig, parse_silence, parse_speed
from recorder.sim.outputs import Pacer, TruthWriter
from recorder.source_base import Chunk, Source

_KNOWN = {
    "gateways",
    "nodes",
    "start",
    "duration",
    "seed",
    "firmware",
    "noise",
    "reassign",
    "controller_restart",
    "identity",
    "aliases_last",
    "quiet_replacement",
    "silence",
    "speed",
    "truth",
}


def config_from_settings(settings: dict[str, str]) -> tuple[SimulationConfig, float | None, Path | None]:
    unknown = set(settings) - _KNOWN
    if unknown:
        raise SourceError(
            f"unknown simulator option(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_KNOWN))}"
        )
    config = SimulationConfig()
    changes: dict[str, object] = {}
    try:
        for key in ("gateways", "nodes", "seed"):
            if key in settings:
                changes[key] = int(settings[key])
        if "noise" in settings:
            changes["noise"] = float(settings["noise"])
    except ValueError as error:
        raise SourceError(f"simulator option: {error}") from None
    if "start" in settings:
        try:
            start = datetime.fromisoformat(settings["start"].replace("Z", "+00:00").replace(" ", "+"))
        except ValueError:
            raise SourceError(f"simulator option start: {settings['start']!r} is not ISO-8601") from None
        changes["start"] = start
    if "duration" in settings:
        try:
            changes["duration"] = parse_duration(settings["duration"])
        except ValueError as error:
            raise SourceError(f"simulator option duration: {error}") from None
    if "firmware" in settings:
        changes["firmware"] = settings["firmware"]
    try:
        if "silence" in settings:
            changes["silence"] = parse_silence(settings["silence"])
    except UsageError as error:
        raise SourceError(f"simulator option {error}") from None
    for flag in ("reassign", "controller_restart", "identity", "aliases_last", "quiet_replacement"):
        if flag in settings:
            changes[flag] = settings[flag].lower() in ("1", "true", "yes", "on")
    speed = parse_speed(settings.get("speed", "max"))
    truth = Path(settings["truth"]) if settings.get("truth") else None
    try:
        return config.with_changes(**changes).validate(), speed, truth
    except UsageError as error:
        raise SourceError(f"simulator: {error}") from None


class SimulatorSource(Source):
    def __init__(self, url: str, settings: dict[str, str]) -> None:
        super().__init__(url)
        self.config, self.speed, self.truth_path = config_from_settings(settings)

    def describe(self) -> str:
        config = self.config
        return f"simulator ({config.gateways} gateway(s) × {config.nodes} optimizers, {config.duration})"

    def chunks(self) -> Iterator[Chunk]:
        simulation = BusSimulation(self.config)
        truth = TruthWriter(self.truth_path) if self.truth_path else None
        pacer = Pacer(self.speed, self.stop_event)
        start = self.config.start
        self.status.state = "connected"
        try:
            for data, seconds in simulation.run(truth):
                if self.stop_event.is_set():
                    break
                pacer.wait_until(seconds)
                at = start + timedelta(seconds=seconds)
                self.status.bytes += len(data)
                self.status.last_data_at = at
                yield data, at
        finally:
            if truth is not None:
                truth.close()
            self.status.state = "finished"
