"""The dashboards in dashboards/ (Grafana and Chronograf), checked query by query on a real InfluxDB.

A simulated array (30 optimizers in two strings, two hours, no noise) is recorded with the real
CLI after its optimizers have been given string and name labels. Every query of both dashboards,
panel and template-variable queries alike, is read from the JSON, its macros are filled in the way
Grafana or Chronograf fill them, and it is run on InfluxDB 1.6. Each answer must be non-empty and
equal to what the simulator's ground truth predicts for that query: per-panel means per interval,
string and array totals as sums of per-panel means, daily energy (the recorder's `tigo_energy`
points, summed per panel and per string) as the trapezoidal integral of each panel's power over the
recorder's days, series named by the labels. A query this file cannot interpret fails, so a
panel added later cannot go unchecked. Summing raw points instead (what the totals must not do) is
shown to overstate the power by the number of reports per panel in an interval.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from recorder.sim.bus import BusSimulation
from recorder.sim.config import SimulationConfig
from recorder.sim.truth import compare_points, load_truth, power_reports
from recorder.sinks.points import current_out_text, power_text
from tests.conftest import ROOT, run_recorder
from tests.influx import LocalInfluxDB

pytestmark = pytest.mark.influx

GRAFANA = ROOT / "dashboards" / "grafana-tigo.json"
CHRONOGRAF = ROOT / "dashboards" / "chronograf-tigo.json"

START = datetime(2025, 6, 21, 10, 0, tzinfo=UTC)
DURATION = timedelta(hours=2)
CONFIG = SimulationConfig(start=START, duration=DURATION, nodes=30, seed=7)
# The dashboards' time range: the simulated period plus a minute for the recorder's last health point.
RANGE_START = START
RANGE_END = START + DURATION + timedelta(minutes=1)
SHADED_NAME = "A1 chimney"  # given with `recorder nodes label`; the space is on purpose
SITE = "roof east"  # the recording's --site; another site's points share the database
OTHER_SITE = "barn"
# Observed differences are ~1e-15 (float summation order); 1e-6 would miss one reading off by
# 1e-5 among the hundreds a daily integral averages over, so the bound is much tighter.
RELATIVE = 1e-9
HOUR_MS = 3_600_000


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def sim(**options: object) -> str:
    settings = {"start": "2025-06-21T10:00:00%2B00:00", "nodes": 30, "seed": 7, "noise": 0, **options}
    return "sim:?" + "&".join(f"{key}={value}" for key, value in settings.items())


# --- the installation: strings from the simulator's model, names of our choosing ------------------


@dataclass(frozen=True)
class Panel:
    barcode: str
    string: str
    name: str  # the final name label
    imported_name: str  # the name given by `recorder nodes import` (the shaded one is renamed after)


def installed_panels() -> list[Panel]:
    panels = []
    for gateway in BusSimulation(CONFIG).model.gateways:
        positions: dict[str, int] = defaultdict(int)
        for optimizer in gateway.optimizers:
            positions[optimizer.string_name] += 1
            imported = f"{optimizer.string_name}-{positions[optimizer.string_name]:02d}"
            name = SHADED_NAME if optimizer.shaded else imported
            panels.append(Panel(optimizer.barcode, optimizer.string_name, name, imported))
    return panels


PANELS = installed_panels()
SHADED = next(panel for panel in PANELS if panel.name == SHADED_NAME)


# --- the dashboards' queries ------------------------------------------------------------------------


@dataclass(frozen=True)
class DashboardQuery:
    dashboard: str  # "grafana" or "chronograf"
    where: str  # panel or cell and query, or template variable
    text: str


def _nested_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _nested_panels(panel.get("panels", []))


def grafana_queries(document: dict[str, Any]) -> tuple[list[DashboardQuery], list[str]]:
    """Every raw InfluxQL query of a Grafana dashboard (panels, panels inside rows, query variables),
    and a list of problems: panels without a query, targets that are not raw InfluxQL."""
    queries, problems = [], []
    for panel in _nested_panels(document.get("panels", [])):
        title = panel.get("title") or f"panel {panel.get('id')}"
        if panel.get("type") in ("row", "text"):
            continue
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{title}: no query")
        for target in targets:
            text = target.get("query")
            if not target.get("rawQuery") or not isinstance(text, str) or not text.strip():
                problems.append(f"{title} {target.get('refId')}: not a raw InfluxQL query")
            else:
                queries.append(DashboardQuery("grafana", f"{title} {target.get('refId')}", text))
    for variable in document.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            text = variable.get("query")
            if isinstance(text, dict):
                text = text.get("query")
            if not isinstance(text, str) or not text.strip():
                problems.append(f"variable {variable.get('name')}: no query")
            else:
                queries.append(DashboardQuery("grafana", f"variable {variable['name']}", text))
    return queries, problems


def chronograf_queries(document: dict[str, Any]) -> tuple[list[DashboardQuery], list[str]]:
    """Every InfluxQL query of a Chronograf dashboard export (cells and template queries), and a
    list of problems: cells without a query, queries that are not InfluxQL or that the query
    editor would show differently."""
    queries, problems = [], []
    dashboard = document.get("dashboard", {})
    for cell in dashboard.get("cells", []):
        name = cell.get("name") or cell.get("i")
        if cell.get("type") == "note":
            continue
        if not cell.get("queries"):
            problems.append(f"{name}: no query")
        for number, query in enumerate(cell.get("queries") or [], 1):
            text = query.get("query")
            raw = (query.get("queryConfig") or {}).get("rawText")
            if query.get("type", "influxql") != "influxql" or not isinstance(text, str) or not text.strip():
                problems.append(f"{name} #{number}: not an InfluxQL query")
            elif raw != text:
                problems.append(f"{name} #{number}: queryConfig.rawText differs from the query")
            else:
                queries.append(DashboardQuery("chronograf", f"{name} #{number}", text))
    for template in dashboard.get("templates", []):
        query = template.get("query") or {}
        text = query.get("influxql")
        if not text:
            continue
        if template.get("type") != "influxql":  # as Chronograf fills in a built-in template's query
            text = (
                text.replace(":database:", f'"{query.get("db", "")}"')
                .replace(":measurement:", f'"{query.get("measurement", "")}"')
                .replace(":tagKey:", f'"{query.get("tagKey", "")}"')
            )
        queries.append(DashboardQuery("chronograf", f"template {template.get('tempVar')}", text))
    return queries, problems


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


GRAFANA_DOCUMENT = load(GRAFANA)
CHRONOGRAF_DOCUMENT = load(CHRONOGRAF)
GRAFANA_QUERIES, GRAFANA_PROBLEMS = grafana_queries(GRAFANA_DOCUMENT)
CHRONOGRAF_QUERIES, CHRONOGRAF_PROBLEMS = chronograf_queries(CHRONOGRAF_DOCUMENT)


# --- filling in the macros ------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """What the user picked: interval, time zone and template variables (None = All)."""

    name: str
    interval: timedelta
    timezone: str = "UTC"
    barcodes: tuple[str, ...] | None = None
    strings: tuple[str, ...] | None = None
    names: tuple[str, ...] | None = None
    sites: tuple[str, ...] | None = None
    bucket: timedelta = timedelta(minutes=5)  # Chronograf's :bucket:


def duration_text(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def grafana_regex(values: tuple[str, ...] | None, all_value: str) -> str:
    """A variable's value in a regex, formatted as Grafana's InfluxDB data source does."""
    if values is None:
        return all_value
    escaped = [re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), value) for value in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


class NotRecognised(AssertionError):
    pass


def grafana_text(query: str, setting: Setting) -> str:
    variables = {v["name"]: v for v in GRAFANA_DOCUMENT["templating"]["list"]}
    values = {
        "timeFilter": f"time >= {ms(RANGE_START)}ms and time <= {ms(RANGE_END)}ms",
        "__from": str(ms(RANGE_START)),
        "__to": str(ms(RANGE_END)),
        "__interval": duration_text(setting.interval),
        "barcode": grafana_regex(setting.barcodes, variables["barcode"].get("allValue")),
        "string": grafana_regex(setting.strings, variables["string"].get("allValue")),
        "name": grafana_regex(setting.names, variables["name"].get("allValue")),
        "site": grafana_regex(setting.sites, variables["site"].get("allValue")),
        "timezone": setting.timezone,
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values or values[name] is None:
            raise NotRecognised(f"Grafana macro or variable ${name} is not one this test fills in: {query}")
        return str(values[name])

    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", fill, query)


def chronograf_text(query: str, setting: Setting, database: str) -> str:
    assert setting.barcodes is not None and len(setting.barcodes) == 1
    values = {
        "dashboardTime": f"'{RANGE_START:%Y-%m-%dT%H:%M:%S}.000Z'",
        "upperDashboardTime": f"'{RANGE_END:%Y-%m-%dT%H:%M:%S}.000Z'",
        "interval": f"{int(setting.interval.total_seconds() * 1000)}ms",
        "db": f'"{database}"',
        "barcode": setting.barcodes[0],  # a custom meta query's value goes in as it is
        "bucket": duration_text(setting.bucket),
        "timezone": setting.timezone,
        "site": grafana_regex(setting.sites, ".*"),  # a text template: the user types a regex
    }

    def fill(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise NotRecognised(
                f"Chronograf template {match.group(0)} is not one this test fills in: {query}"
            )
        return values[match.group(1)]

    return re.sub(r":([A-Za-z]\w*):", fill, query)


GRAFANA_SETTINGS = [
    Setting("all-5m", timedelta(minutes=5)),
    Setting(
        "two-panels-1m-tongatapu",
        timedelta(minutes=1),
        timezone="Pacific/Tongatapu",  # UTC+13: local midnight falls at 11:00 UTC, mid-simulation
        barcodes=(SHADED.barcode, PANELS[20].barcode),
    ),
    Setting("string-A2-15m", timedelta(minutes=15), strings=("A2",)),
    Setting("names-20s", timedelta(seconds=20), names=(SHADED_NAME, "A2-03")),
    Setting("site-5m", timedelta(minutes=5), sites=(SITE,)),
]
SITE_SETTING = GRAFANA_SETTINGS[-1]
CHRONOGRAF_SETTINGS = [
    Setting("5m", timedelta(minutes=5), barcodes=(PANELS[0].barcode,), bucket=timedelta(minutes=5)),
    Setting(
        "14400ms-tongatapu",
        timedelta(milliseconds=14400),
        timezone="Pacific/Tongatapu",
        barcodes=(SHADED.barcode,),
        bucket=timedelta(minutes=1),
        sites=(SITE,),
    ),
]


# --- a small InfluxQL reader and the truth's answer --------------------------------------------------


@dataclass
class Row:
    time: int
    tags: dict[str, str]
    values: dict[str, float]


@dataclass(frozen=True)
class Item:
    function: str  # mean, sum or integral
    field: str
    alias: str


@dataclass
class Statement:
    measurement: str | None  # None: a subquery
    source: Statement | None
    items: list[Item]  # empty for the health queries, which are checked column by column
    lower: tuple[int, bool] | None = None  # (ms, inclusive)
    upper: tuple[int, bool] | None = None
    filters: list[tuple[str, str, str]] = field(default_factory=list)  # (tag, "=~" or "=", value)
    interval: int | None = None  # ms
    group_tags: list[str] = field(default_factory=list)
    fill: str | None = None
    timezone: str | None = None

    def in_range(self, at: int) -> bool:
        if self.lower and (at < self.lower[0] or (at == self.lower[0] and not self.lower[1])):
            return False
        return not (self.upper and (at > self.upper[0] or (at == self.upper[0] and not self.upper[1])))

    def matches(self, tags: dict[str, str]) -> bool:
        for tag, operator, value in self.filters:
            actual = tags.get(tag, "")
            if not (re.search(value, actual) if operator == "=~" else actual == value):
                return False
        return True

    def bucket(self, at: int) -> int | None:
        if self.interval is None:
            return None
        offset = 0
        if self.timezone:
            moment = datetime.fromtimestamp(at / 1000, UTC).astimezone(ZoneInfo(self.timezone))
            offset = int(moment.utcoffset().total_seconds() * 1000)  # type: ignore[union-attr]
        return (at + offset) // self.interval * self.interval - offset


STATEMENT = re.compile(
    r"SELECT (?P<items>.+?) FROM (?P<source>\(.+\)|\S+) WHERE (?P<where>.+?)"
    r"(?: GROUP BY (?P<group>.+?))?(?: fill\((?P<fill>\w+)\))?(?: tz\('(?P<tz>[^']+)'\))?",
    re.DOTALL,
)
ITEM = re.compile(r'(?P<function>mean|sum|integral)\("(?P<field>\w+)"(?P<unit>, 1h)?\) AS "(?P<alias>[^"]+)"')
MEASUREMENT = re.compile(r'(?:"[^"]+"\.\.)?"(?P<name>\w+)"')
UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": HOUR_MS, "d": 24 * HOUR_MS}


def parse(text: str) -> Statement:
    match = STATEMENT.fullmatch(text.strip())
    if match is None:
        raise NotRecognised(f"not a SELECT this test can read: {text}")
    source_text = match["source"]
    if source_text.startswith("("):
        statement = Statement(None, parse(source_text[1:-1]), [])
    else:
        measurement = MEASUREMENT.fullmatch(source_text)
        if measurement is None:
            raise NotRecognised(f"unknown measurement {source_text}: {text}")
        statement = Statement(measurement["name"], None, [])
    items = list(ITEM.finditer(match["items"]))
    if ", ".join(item.group(0) for item in items) == match["items"]:
        statement.items = [Item(item["function"], item["field"], item["alias"]) for item in items]
        if any(
            (item.function == "integral") != bool(unit["unit"])
            for item, unit in zip(statement.items, items, strict=True)
        ):
            raise NotRecognised(f"integral without a 1h unit, or a unit elsewhere: {text}")
    for condition in re.split(r"\s+AND\s+", match["where"], flags=re.IGNORECASE):
        if bound := re.fullmatch(
            r"time (?P<op>[<>]=?) (?:(?P<ms>\d+)ms|'(?P<iso>[^']+)')(?: - (?P<days>\d+)d)?", condition
        ):
            at = int(bound["ms"]) if bound["ms"] else ms(datetime.fromisoformat(bound["iso"]))
            at -= int(bound["days"] or 0) * 24 * HOUR_MS
            limit = (at, bound["op"].endswith("="))
            if bound["op"].startswith(">"):
                statement.lower = limit
            else:
                statement.upper = limit
        elif tag := re.fullmatch(
            r'"(?P<tag>\w+)" (?P<op>=~|=) (?:/(?P<regex>.*)/|\'(?P<value>[^\']*)\')', condition
        ):
            statement.filters.append(
                (tag["tag"], tag["op"], tag["regex"] if tag["op"] == "=~" else tag["value"])
            )
        else:
            raise NotRecognised(f"condition {condition!r} is not one this test can read: {text}")
    for part in match["group"].split(", ") if match["group"] else []:
        if interval := re.fullmatch(r"time\((?P<n>\d+)(?P<unit>ms|s|m|h|d)\)", part):
            statement.interval = int(interval["n"]) * UNITS[interval["unit"]]
        elif tag := re.fullmatch(r'"(\w+)"', part):
            statement.group_tags.append(tag[1])
        else:
            raise NotRecognised(f"GROUP BY {part!r} is not one this test can read: {text}")
    statement.fill, statement.timezone = match["fill"], match["tz"]
    return statement


Key = tuple[tuple[tuple[str, str], ...], int | None]


def expected_answer(statement: Statement, rows: list[Row]) -> dict[Key, dict[str, float]]:
    """What InfluxDB should answer to `statement` over `rows`, computed independently of it."""
    if statement.source is not None:
        # InfluxDB 1.6 does not filter a subquery's rows by the outer time range again (a first
        # bucket that starts before the range is kept), so neither does this.
        inner = expected_answer(statement.source, rows)
        rows = [Row(at, dict(tags), values) for (tags, at), values in inner.items() if at is not None]
    else:
        rows = [row for row in rows if statement.in_range(row.time)]
    groups: dict[tuple[tuple[str, str], ...], list[Row]] = defaultdict(list)
    for row in rows:
        if statement.matches(row.tags):
            groups[tuple((tag, row.tags.get(tag, "")) for tag in statement.group_tags)].append(row)
    answer: dict[Key, dict[str, float]] = {}
    for tags, members in groups.items():
        for item in statement.items:
            if item.function == "integral":
                for window, value in integral(statement, members, item.field).items():
                    answer.setdefault((tags, window), {})[item.alias] = value
                continue
            buckets: dict[int | None, list[float]] = defaultdict(list)
            for row in members:
                if item.field in row.values:
                    buckets[statement.bucket(row.time)].append(row.values[item.field])
            for window, values in buckets.items():
                total = math.fsum(values)
                answer.setdefault((tags, window), {})[item.alias] = (
                    total / len(values) if item.function == "mean" else total
                )
    return answer


def integral(statement: Statement, rows: list[Row], name: str) -> dict[int | None, float]:
    """Trapezoids between consecutive points, in watt-hours; a trapezoid across a window boundary
    is split there with the linearly interpolated value, as InfluxQL's integral() does."""
    points = sorted((row.time, row.values[name]) for row in rows if name in row.values)
    windows = {statement.bucket(at): 0.0 for at, _ in points}
    for (t1, p1), (t2, p2) in itertools.pairwise(points):
        start = t1
        while start < t2:
            window = statement.bucket(start)
            end = t2
            if window is not None and statement.interval is not None:
                end = min(t2, window + statement.interval)
            value_at_start = p1 + (p2 - p1) * (start - t1) / (t2 - t1)
            value_at_end = p1 + (p2 - p1) * (end - t1) / (t2 - t1)
            area = 0.5 * (value_at_start + value_at_end) * (end - start) / HOUR_MS
            windows[window] = windows.get(window, 0.0) + area
            start = end
    return windows


def actual_answer(series: list[dict[str, Any]], statement: Statement) -> dict[Key, dict[str, Any]]:
    aliases = [item.alias for item in statement.items]
    answer: dict[Key, dict[str, Any]] = {}
    for entry in series:
        assert entry["columns"] == ["time", *aliases], entry["columns"]
        tags = tuple((tag, entry["tags"].get(tag, "")) for tag in statement.group_tags)
        for row in entry["rows"]:
            values = {alias: row[alias] for alias in aliases}
            if all(value is None for value in values.values()):
                assert statement.fill != "none", f"a null row despite fill(none): {row}"
                continue
            key = (tags, row["time"] if statement.interval is not None else None)
            assert key not in answer, f"two rows for {key}"
            answer[key] = values
    return answer


def assert_same(actual: dict[Key, dict[str, Any]], expected: dict[Key, dict[str, float]], text: str) -> None:
    assert expected, f"the truth predicts nothing for this query (a bad test setting): {text}"
    assert actual, f"InfluxDB returned nothing: {text}"
    missing, extra = expected.keys() - actual.keys(), actual.keys() - expected.keys()
    assert not missing and not extra, (
        f"{len(missing)} expected rows missing, e.g. {sorted(missing, key=str)[:3]}; "
        f"{len(extra)} unexpected, e.g. {sorted(extra, key=str)[:3]}: {text}"
    )
    for key, values in expected.items():
        for alias, value in actual[key].items():
            want = values.get(alias)
            if want is None:
                assert value is None, f"{key} {alias}: {value}, expected no value: {text}"
            else:
                assert value is not None and math.isclose(value, want, rel_tol=RELATIVE, abs_tol=1e-9), (
                    f"{key} {alias}: InfluxDB {value}, truth {want}: {text}"
                )


# Health: every column the dashboards show, and what the recorder's own points must say about this
# run (no noise, every node known from the start, InfluxDB always up).
HEALTH: dict[str, Callable[[list[Any]], bool]] = {
    "frames": lambda values: min(values) >= 0 and max(values) > 0,
    "checksum errors": lambda values: set(values) == {0},
    "noise bytes": lambda values: set(values) == {0},
    "power reports": lambda values: min(values) >= 0 and max(values) > 0,
    "points written": lambda values: min(values) >= 0 and max(values) > 0,
    "outbox ready": lambda values: min(values) >= 0,
    "outbox held": lambda values: set(values) == {0},
    "unresolved nodes": lambda values: set(values) == {0},
    "source connected": lambda values: all(isinstance(v, bool) for v in values) and True in values,
    "decode stalled": lambda values: all(v is False for v in values),
    "latency p50": lambda values: min(values) > 0,
    "latency p99": lambda values: min(values) > 0,
}


# --- the recorded simulation -----------------------------------------------------------------------


@dataclass
class Recorded:
    server: LocalInfluxDB
    database: str
    rows: list[Row]
    energy_rows: list[Row]

    def series(self, text: str) -> list[dict[str, Any]]:
        return self.server.query_series(text, self.database)


def energy_rows(rows: list[Row]) -> list[Row]:
    """The `tigo_energy` points the truth predicts: each panel's integral per UTC day (the
    recorder runs with --timezone UTC here), at the day's midnight, with the panel's tags."""
    days = Statement(None, None, [], interval=24 * HOUR_MS)
    by_barcode: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_barcode[row.tags["barcode"]].append(row)
    return [
        Row(midnight, dict(members[0].tags), {"energy_wh": energy})
        for members in by_barcode.values()
        for midnight, energy in integral(days, members, "power").items()
        if midnight is not None
    ]


def truth_rows(truth: list[dict[str, Any]], points: list[dict[str, Any]]) -> list[Row]:
    """The truth's values, each at the time the recorder stored that report.

    The recorder reconstructs measurement times from the gateways' slot counters, up to a few
    hundred milliseconds off the truth (test_run checks the bound). Window membership and the
    integral's trapezoid widths must use the stored times: with the truth's, a report near a window
    boundary can land in the neighbouring window, and daily energy differs by ~1e-7.
    """
    labels = {panel.barcode: panel for panel in PANELS}
    reports: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in power_reports(truth):
        if not record["destroyed"]:
            reports[record["barcode"]].append(record)
    stored: dict[str, list[int]] = defaultdict(list)
    for point in points:
        stored[point["barcode"]].append(point["time"])
    assert reports.keys() == stored.keys() == labels.keys()
    rows = []
    for barcode, records in reports.items():
        records.sort(key=lambda record: record["measured_at"])
        times = sorted(stored[barcode])
        assert len(records) == len(times)
        for record, at in zip(records, times, strict=True):
            assert abs(ms(datetime.fromisoformat(record["measured_at"])) - at) < 1000
            # The derived fields as the recorder writes them (rounded from the wire's integers).
            vin_raw, iin_raw = round(record["voltage_in"] * 20), round(record["current_in"] * 200)
            values = {
                "power": _field(power_text(vin_raw, iin_raw)),
                "voltage_in": record["voltage_in"],
                "voltage_out": record["voltage_out"],
                "current_in": record["current_in"],
                "duty_cycle": record["duty_cycle"],
                "temperature": record["temperature"],
            }
            if record["duty_cycle"] > 0:
                values["current_out"] = _field(current_out_text(iin_raw, round(record["duty_cycle"] * 255)))
            panel = labels[barcode]
            tags = {"barcode": barcode, "string": panel.string, "name": panel.name, "site": SITE}
            rows.append(Row(at, tags, values))
    return rows


def other_site_rows() -> list[Row]:
    """Another site's recorder in the same database: three panels, one string, every 30 s, with
    values far from the simulation's (a leak through the site filter could not go unnoticed)."""
    rows = []
    for number in range(1, 4):
        for step in range(0, int(DURATION.total_seconds()), 30):
            at = ms(START) + step * 1000 + number * 7  # never at the same instant as another panel
            power = 1000.0 * number + step / 60
            values = {
                "power": power,
                "voltage_in": 80.0,
                "voltage_out": 80.0,
                "current_in": power / 80.0,
                "current_out": power / 80.0,
                "duty_cycle": 1.0,
                "temperature": 40.0 + number,
            }
            tags = {
                "barcode": f"4-BARN{number}",
                "string": "B1",
                "name": f"barn {number}",
                "site": OTHER_SITE,
            }
            rows.append(Row(at, tags, values))
    return rows


def line_of(row: Row) -> str:
    tags = ",".join(f"{key}={value.replace(' ', chr(92) + ' ')}" for key, value in sorted(row.tags.items()))
    fields = ",".join(f"{key}={value!r}" for key, value in row.values.items())
    return f"tigo_optimizer,{tags} {fields} {row.time}"


def _field(text: str) -> float:
    """The value of one `name=value,` field text."""
    return float(text.split("=", 1)[1].rstrip(","))


@pytest.fixture(scope="module")
def recorded(influxdb: LocalInfluxDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """The simulation, labelled and recorded by the real CLI into a database of this module's own."""
    influxdb.ensure_running()
    directory = tmp_path_factory.mktemp("dashboards")
    database = f"dashboards_{uuid.uuid4().hex[:12]}"
    influxdb.create_database(database)
    try:
        state = str(directory / "state.db")
        # Learn the identities (enumeration at the controller's start), then label every optimizer
        # before recording: labels become tags only on points written after them. All 30 go through
        # export, edit and import (one command instead of thirty); `nodes label` renames one.
        run_recorder("observe", "--db", state, "--source", sim(duration="1m"))
        exported = directory / "nodes.json"
        run_recorder("nodes", "export", "--db", state, "--out", str(exported))
        document = json.loads(exported.read_text())
        panels = {panel.barcode: panel for panel in PANELS}
        for optimizer in document["optimizers"]:
            panel = panels[optimizer["barcode"]]
            optimizer["string"], optimizer["name"] = panel.string, panel.imported_name
        exported.write_text(json.dumps(document))
        run_recorder("nodes", "import", str(exported), "--db", state)
        run_recorder("nodes", "label", SHADED.barcode, "--name", SHADED_NAME, "--db", state)
        truth_file = directory / "truth.jsonl"
        env = {
            "INFLUX_URL": influxdb.url,
            "INFLUX_TOKEN": "recorder:recorder",
            "INFLUX_ORG": "-",
            "INFLUX_BUCKET": database,
        }
        run_recorder(
            "run",
            "--db",
            state,
            "--source",
            sim(duration="2h", truth=truth_file),
            "--archive-days",
            "0",
            "--timezone",
            "UTC",
            "--exit-at-end",
            "--site",
            SITE,
            env=env,
        )
        truth = load_truth(truth_file)
        points = influxdb.query("SELECT * FROM tigo_optimizer", database)
        comparison = compare_points(truth, points)
        assert comparison.exact and comparison.matched == comparison.expected, comparison.summary()
        assert {(p["barcode"], p.get("string"), p.get("name"), p.get("site")) for p in points} == {
            (panel.barcode, panel.string, panel.name, SITE) for panel in PANELS
        }
        assert all(ms(RANGE_START) < p["time"] < ms(RANGE_END) for p in points)
        rows = truth_rows(truth, points)
        stored = influxdb.query("SELECT * FROM tigo_energy", database)
        assert len(stored) == len(PANELS) and {p["time"] for p in stored} == {ms(START.replace(hour=0))}
        assert {p.get("site") for p in stored} == {SITE}
        others = other_site_rows()  # readings only: the other site's energy is not ours to predict
        influxdb.write_v1(database, "\n".join(line_of(row) for row in others).encode())
        yield Recorded(influxdb, database, rows + others, energy_rows(rows))
    finally:
        influxdb.ensure_running()
        influxdb.drop_database(database)


# --- the tests -------------------------------------------------------------------------------------


def check(recorded: Recorded, text: str) -> None:
    """Run one filled-in query and compare its answer with the truth's."""
    if variable := re.fullmatch(
        r'SHOW TAG VALUES (?:ON "[^"]+" )?FROM "tigo_optimizer" WITH KEY = "(\w+)"', text
    ):
        values = {row["value"] for entry in recorded.series(text) for row in entry["rows"]}
        assert values == {row.tags[variable[1]] for row in recorded.rows}, text
        return
    if text == "SHOW DATABASES":
        assert recorded.database in {row["name"] for entry in recorded.series(text) for row in entry["rows"]}
        return
    statement = parse(text)
    if statement.measurement == "tigo_recorder":
        series = recorded.series(text)
        assert series, f"no health rows: {text}"
        assert {entry["tags"].get("site") for entry in series} == {SITE}, text
        for column in series[0]["columns"][1:]:
            if column not in HEALTH:
                raise NotRecognised(f"health column {column!r} has no expectation here: {text}")
            seen = [row[column] for entry in series for row in entry["rows"] if row[column] is not None]
            assert seen and HEALTH[column](seen), f"{column}: {seen}: {text}"
        return
    inner = statement.source or statement
    if inner.measurement not in ("tigo_optimizer", "tigo_energy") or not statement.items:
        raise NotRecognised(f"not a query this test recognises: {text}")
    if statement.source and (inner.source or [i.function for i in statement.items] != ["sum"]):
        raise NotRecognised(f"a subquery that is not summed: {text}")
    rows = recorded.rows if inner.measurement == "tigo_optimizer" else recorded.energy_rows
    assert_same(actual_answer(recorded.series(text), statement), expected_answer(statement, rows), text)


GRAFANA_CASES = [
    pytest.param(query, setting, id=f"{setting.name}: {query.where}")
    for setting in GRAFANA_SETTINGS
    for query in GRAFANA_QUERIES
]
CHRONOGRAF_CASES = [
    pytest.param(query, setting, id=f"{setting.name}: {query.where}")
    for setting in CHRONOGRAF_SETTINGS
    for query in CHRONOGRAF_QUERIES
]


@pytest.mark.parametrize(("query", "setting"), GRAFANA_CASES)
def test_grafana_query_equals_the_truth(recorded: Recorded, query: DashboardQuery, setting: Setting) -> None:
    check(recorded, grafana_text(query.text, setting))


@pytest.mark.parametrize(("query", "setting"), CHRONOGRAF_CASES)
def test_chronograf_query_equals_the_truth(
    recorded: Recorded, query: DashboardQuery, setting: Setting
) -> None:
    check(recorded, chronograf_text(query.text, setting, recorded.database))


def with_placeholders(text: str) -> str:
    """A query with its macros replaced by anything well-formed, to read its shape."""
    text = text.replace("$timeFilter", "time >= 0ms").replace(":db:", '"tigo"')
    text = text.replace("${__from}", "0").replace("${__to}", "0")
    text = re.sub(r":(?:dashboardTime|upperDashboardTime):", "'2025-01-01T00:00:00Z'", text)
    return re.sub(r"\$\w+|:[A-Za-z]\w*:", "1m", text)


def kinds(queries: list[DashboardQuery]) -> set[str]:
    """What the queries compute, in words: 'mean power by barcode', 'string total', ..."""
    found = set()
    for query in queries:
        if query.text.startswith("SHOW "):
            continue
        statement = parse(with_placeholders(query.text))
        if statement.measurement == "tigo_recorder":
            found.add("health")
        elif statement.source is not None:
            found.add("string total" if "string" in statement.group_tags else "array total")
        else:
            for item in statement.items:
                found.add(f"{item.function} {item.field} by {', '.join(statement.group_tags) or 'nothing'}")
    return found


def test_every_panel_and_cell_has_a_query_this_test_reads() -> None:
    assert not GRAFANA_PROBLEMS and not CHRONOGRAF_PROBLEMS, GRAFANA_PROBLEMS + CHRONOGRAF_PROBLEMS
    assert len(GRAFANA_QUERIES) >= 15 and len(CHRONOGRAF_QUERIES) >= 12
    kinds(GRAFANA_QUERIES + CHRONOGRAF_QUERIES)  # raises NotRecognised for a query it cannot read


def test_both_dashboards_cover_the_required_content() -> None:
    required = {
        "mean power by barcode",
        "mean power by name",
        "mean voltage_in by barcode",
        "mean voltage_out by barcode",
        "mean current_in by barcode",
        "mean temperature by barcode",
        "string total",
        "array total",
        "sum energy_wh by barcode, name",
        "health",
    }
    assert required <= kinds(GRAFANA_QUERIES), required - kinds(GRAFANA_QUERIES)
    assert required <= kinds(CHRONOGRAF_QUERIES), required - kinds(CHRONOGRAF_QUERIES)
    assert {"mean current_out by barcode", "mean power by string, name", "sum energy_wh by string"} <= kinds(
        GRAFANA_QUERIES
    )
    # Days must be the user's days, not UTC's: every daily energy query names its time zone, and
    # reaches back a day so that the point at the first day's midnight is in range.
    for query in GRAFANA_QUERIES + CHRONOGRAF_QUERIES:
        if "integral(" in query.text or "tigo_energy" in query.text:
            assert parse(with_placeholders(query.text)).timezone, query.where
        if "tigo_energy" in query.text:
            assert re.search(r"time > \S+ - 1d", query.text), query.where


def test_grafana_dashboard_is_importable_and_tidy() -> None:
    document = GRAFANA_DOCUMENT
    assert GRAFANA.read_text(encoding="utf-8") == json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    assert any(i["name"] == "DS_INFLUXDB" and i["pluginId"] == "influxdb" for i in document["__inputs"])
    assert document["schemaVersion"] >= 36 and document["id"] is None
    source = {"type": "influxdb", "uid": "${DS_INFLUXDB}"}
    for panel in _nested_panels(document["panels"]):
        if panel["type"] != "row":
            assert panel["datasource"] == source, panel["title"]
            assert all(target["datasource"] == source for target in panel["targets"]), panel["title"]
    variables = {v["name"]: v for v in document["templating"]["list"]}
    for name in ("site", "barcode", "string", "name"):
        variable = variables[name]
        assert variable["datasource"] == source
        assert variable["query"] == f'SHOW TAG VALUES FROM "tigo_optimizer" WITH KEY = "{name}"'
        assert variable["multi"] and variable["includeAll"] and variable["allValue"] == ".*"
    for query in GRAFANA_QUERIES:
        if '"tigo_energy" WHERE' in query.text:
            assert "${__from}ms - 1d" in query.text and "${__to}ms" in query.text, query.where
        if '"tigo_optimizer" WHERE' in query.text or '"tigo_energy" WHERE' in query.text:
            if '"tigo_optimizer" WHERE' in query.text:
                assert "$timeFilter" in query.text, query.where
            for name in ("site", "barcode", "string", "name"):
                assert f'"{name}" =~ /^${name}$/' in query.text, f"{query.where} ignores ${name}"
        if '"tigo_recorder" WHERE' in query.text:
            assert '"site" =~ /^$site$/' in query.text and '"site", "source"' in query.text, query.where
        if "GROUP BY time(" in query.text and "time(1d)" not in query.text:
            assert "$__interval" in query.text, query.where


def test_chronograf_export_has_the_expected_shape() -> None:
    document = CHRONOGRAF_DOCUMENT
    assert CHRONOGRAF.read_text(encoding="utf-8") == json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    assert document["meta"]["chronografVersion"] and isinstance(document["meta"]["sources"], dict)
    dashboard = document["dashboard"]
    assert dashboard["name"] and dashboard["cells"] and "id" in dashboard
    assert len({cell["i"] for cell in dashboard["cells"]}) == len(dashboard["cells"])
    assert {t["tempVar"] for t in dashboard["templates"]} == {
        ":db:",
        ":site:",
        ":barcode:",
        ":bucket:",
        ":timezone:",
    }
    site = next(t for t in dashboard["templates"] if t["tempVar"] == ":site:")
    assert site["type"] == "text" and [v["value"] for v in site["values"]] == [".*"]
    for query in CHRONOGRAF_QUERIES:
        if not query.text.startswith("SHOW "):
            assert ":dashboardTime:" in query.text and ":upperDashboardTime:" in query.text, query.where
            assert '"site" =~ /^:site:$/' in query.text, query.where
    assert any(":interval:" in query.text for query in CHRONOGRAF_QUERIES)


def test_label_panels_name_their_series_by_the_labels(recorded: Recorded) -> None:
    query = next(q for q in GRAFANA_QUERIES if q.where.startswith("Power per panel, by label"))
    series = recorded.series(grafana_text(query.text, SITE_SETTING))
    assert {entry["tags"]["name"] for entry in series} == {panel.name for panel in PANELS}
    assert SHADED_NAME in {entry["tags"]["name"] for entry in series}
    everywhere = recorded.series(grafana_text(query.text, GRAFANA_SETTINGS[0]))
    assert {entry["tags"]["name"] for entry in everywhere} == {panel.name for panel in PANELS} | {
        f"barn {number}" for number in range(1, 4)
    }


def test_summing_raw_points_overstates_the_total(recorded: Recorded) -> None:
    """Why the totals average each panel per interval first: with a report every 20 s, a 5-minute
    interval holds about 15 reports per panel, and summing them all counts each panel ~15 times."""
    setting = SITE_SETTING
    query = next(q for q in GRAFANA_QUERIES if q.where.startswith("Array total"))
    totals = {
        row["time"]: row["power"] for row in recorded.series(grafana_text(query.text, setting))[0]["rows"]
    }
    naive_text = (
        f'SELECT sum("power") AS "power" FROM "tigo_optimizer" WHERE time >= {ms(RANGE_START)}ms '
        f"and time <= {ms(RANGE_END)}ms AND site = '{SITE}' GROUP BY time(5m) fill(none)"
    )
    naive = {row["time"]: row["power"] for row in recorded.series(naive_text)[0]["rows"]}
    interval = int(setting.interval.total_seconds() * 1000)
    full_buckets = range(ms(START), ms(START + DURATION), interval)
    for bucket in full_buckets:
        rows = [
            row
            for row in recorded.rows
            if bucket <= row.time < bucket + interval and row.tags["site"] == SITE
        ]
        per_panel: dict[str, list[float]] = defaultdict(list)
        for row in rows:
            per_panel[row.tags["barcode"]].append(row.values["power"])
        counts = [len(values) for values in per_panel.values()]
        assert len(per_panel) == len(PANELS) and min(counts) >= 14
        assert math.isclose(naive[bucket], math.fsum(row.values["power"] for row in rows), rel_tol=RELATIVE)
        means = math.fsum(math.fsum(values) / len(values) for values in per_panel.values())
        assert math.isclose(totals[bucket], means, rel_tol=RELATIVE)
        # naive = Σ panels (reports × mean), so it lies between min and max reports × the total.
        assert min(counts) * totals[bucket] * (1 - RELATIVE) <= naive[bucket]
        assert naive[bucket] <= max(counts) * totals[bucket] * (1 + RELATIVE)
        assert naive[bucket] > 10 * totals[bucket]
