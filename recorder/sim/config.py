"""Simulation settings, shared by `recorder simulate` and `sim:` source URLs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from recorder.errors import UsageError

DEFAULT_START = datetime(2025, 6, 21, 9, 0, tzinfo=UTC)
FIRMWARES = ("legacy", "4x")


@dataclass(frozen=True)
class SimulationConfig:
    gateways: int = 1
    nodes: int = 135  # per gateway
    start: datetime = DEFAULT_START
    duration: timedelta = timedelta(hours=1)
    seed: int = 1
    firmware: str = "legacy"
    noise: float = 0.0  # probability that a frame is hit by a noise event
    reassign: bool = False
    reassign_at: datetime | None = None  # default: the middle of the run
    controller_restart: bool = True  # enumeration and a node table at the start
    identity: bool = True  # False: no node tables, topology reports or enumeration, ever
    # Node table order: False lists entries by raw ID (bit-15 aliases at the end of the table);
    # True lists each page's plain IDs, then their aliases (`..., 0x000A, 0x800A`), and the
    # controller asks next for the highest plain ID + 1 (`0x000B`), as some gateways do.
    aliases_last: bool = False
    # The replacement never announces itself with topology reports (it joined while nobody
    # listened): the node table the controller reads after commissioning it is the only news.
    quiet_replacement: bool = False
    silence: tuple[tuple[int, datetime], ...] = ()  # (node ID on the first gateway, from): it stops reporting
    report_period_slots: int = 4000  # 20 s at 5 ms per slot
    poll_interval: float = 0.3  # seconds between polls of one gateway

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    @property
    def reassignment_time(self) -> datetime | None:
        if not self.reassign:
            return None
        return self.reassign_at or self.start + self.duration / 2

    def validate(self) -> SimulationConfig:
        if not 1 <= self.gateways <= 16:
            raise UsageError(f"--gateways: {self.gateways} is out of range, expected 1 to 16")
        if not 1 <= self.nodes <= 1000:
            raise UsageError(f"--nodes: {self.nodes} is out of range, expected 1 to 1000 per gateway")
        if self.duration <= timedelta(0):
            raise UsageError("--duration must be positive, e.g. 90m, 3h or 7d")
        if self.firmware not in FIRMWARES:
            raise UsageError(f"--firmware: {self.firmware!r} is not one of {', '.join(FIRMWARES)}")
        if not 0.0 <= self.noise <= 0.5:
            raise UsageError(f"--noise: {self.noise} is out of range, expected a probability 0 to 0.5")
        if self.start.tzinfo is None:
            raise UsageError("--start needs a UTC offset, e.g. 2025-06-21T09:00:00+00:00")
        if not 400 <= self.report_period_slots <= 48000 or 48000 % self.report_period_slots:
            raise UsageError("the report period must divide 48000 slots (e.g. 2000 or 4000)")
        for node_id, since in self.silence:
            if not 2 <= node_id < 2 + self.nodes:
                raise UsageError(
                    f"silence: node {node_id} is not one of the simulated nodes (2 to {self.nodes + 1})"
                )
            if since.tzinfo is None:
                raise UsageError("silence: the time needs a UTC offset, e.g. 7@2025-06-21T12:00:00+00:00")
        at = self.reassignment_time
        if at is not None and not self.start < at < self.end:
            raise UsageError("--reassign-at must fall inside the simulated period")
        return self

    def with_changes(self, **changes: object) -> SimulationConfig:
        return replace(self, **changes)  # type: ignore[arg-type]


def parse_speed(text: str) -> float | None:
    """`realtime` (1.0), `60x` or `60` (N× real time), `max` (None: as fast as possible)."""
    cleaned = text.strip().lower()
    if cleaned in ("max", "fast", "asap"):
        return None
    if cleaned in ("realtime", "real-time", "1x"):
        return 1.0
    try:
        value = float(cleaned[:-1] if cleaned.endswith("x") else cleaned)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise UsageError(f"--speed: {text!r} is not a speed (expected realtime, 60x or max)")
    return value


def parse_silence(text: str) -> tuple[tuple[int, datetime], ...]:
    """`7@2025-06-21T12:00:00+00:00[,9@...]`: node 7 of the first gateway stops reporting then."""
    found = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        node, _, since = item.partition("@")
        try:
            at = datetime.fromisoformat(since.strip().replace("Z", "+00:00").replace(" ", "+"))
            found.append((int(node), at))
        except ValueError:
            raise UsageError(
                f"silence: {item!r} is not NODE@TIME (e.g. 7@2025-06-21T12:00:00+00:00)"
            ) from None
    return tuple(found)
