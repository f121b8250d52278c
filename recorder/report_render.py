"""`recorder report` output: a terminal table, JSON, a self-contained HTML page, a PNG picture.

The picture (HTML's inline SVG and the PNG alike) shows panels as rows, grouped by string, against
the hours of the day as columns; each cell is the panel's mean power in that hour (dark = little,
bright = much), a hatched grey cell means the panel sent no report in an hour when others of its
string did (not the same as producing nothing; hours when none reported, the night, stay blank),
and flagged panels are marked in red with their flags beside the row. The PNG
needs matplotlib (`pip install 'recorder[report]'`), imported only when a PNG is asked for.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from recorder.errors import UsageError
from recorder.panel_health import Panel, Report

# A perceptual dark-to-bright scale (viridis' end points and middle), as (r, g, b) stops.
_SCALE = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
_NO_REPORT = "#d0d0d0"
_FLAG = "#d62728"


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _cells(panel: Panel, empty: str) -> list[str]:
    """One panel's row, as the table and the HTML page show it (`empty`: no name, no flags)."""
    return [
        panel.group,
        panel.label,
        panel.name or empty,
        _number(panel.energy_wh, 1),
        _number(panel.median_ratio, 2),
        _number(panel.peak_w, 1),
        str(panel.hours_not_reporting),
        _number(panel.rssi_mean),
        _number(panel.temperature_max, 1),
        ", ".join(panel.flags) or empty,
    ]


def table(report: Report) -> str:
    headers = [
        "STRING",
        "PANEL",
        "NAME",
        "ENERGY Wh",
        "RATIO",
        "PEAK W",
        "NO REPORT h",
        "RSSI",
        "MAX °C",
        "FLAGS",
    ]
    rows = [_cells(panel, empty="-") for panel in report.panels]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = [
        f"Panel health {report.period} ({report.zone_name}); underperforming below "
        f"{report.threshold:.0%} of the string's median"
    ]
    for line in [headers, *rows]:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    totals = [
        f"{group} {sum(p.energy_wh or 0 for p in members) / 1000:,.2f} kWh"
        for group, members in report.groups().items()
    ]
    lines.append(f"strings: {'; '.join(totals)}; array {report.total_wh / 1000:,.2f} kWh")
    flagged = [p for p in report.panels if p.flags]
    lines.append(f"{len(flagged)} of {len(report.panels)} panels flagged" if flagged else "no panel flagged")
    return "\n".join(lines)


def as_json(report: Report) -> str:
    return json.dumps([panel.as_json() for panel in report.panels], indent=2)


def _colour(fraction: float) -> str:
    fraction = min(max(fraction, 0.0), 1.0) * (len(_SCALE) - 1)
    index = min(int(fraction), len(_SCALE) - 2)
    share = fraction - index
    low, high = _SCALE[index], _SCALE[index + 1]
    r, g, b = (round(a + (b - a) * share) for a, b in zip(low, high, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _grid(report: Report) -> tuple[list[int], list[tuple[str, list[Panel]]], float]:
    hours = report.hours()
    groups = list(report.groups().items())
    peak = max(
        (value for panel in report.panels for hour in hours if (value := report.hourly_power(panel, hour))),
        default=0.0,
    )
    return hours, groups, peak or 1.0


def svg(report: Report) -> str:
    hours, groups, peak = _grid(report)
    cell_w, cell_h, left, top, right = 30, 14, 190, 40, 260
    rows = sum(len(members) for _, members in groups) + len(groups)
    width = left + cell_w * max(len(hours), 1) + right
    height = top + cell_h * rows + 60
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        '<defs><pattern id="none" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{_NO_REPORT}"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#888" stroke-width="1.5"/></pattern></defs>',
    ]
    for column, hour in enumerate(hours):
        x = left + column * cell_w
        label = report.hour_label(hour)
        label = label[:2] if label.endswith(":00") else label  # the hour; a half-hour zone keeps :30
        out.append(f'<text x="{x + cell_w / 2}" y="{top - 8}" text-anchor="middle">{label}</text>')
    y = top
    for group, members in groups:
        out.append(f'<text x="4" y="{y + cell_h - 3}" font-weight="bold">{html.escape(group)}</text>')
        y += cell_h
        for panel in members:
            colour = _FLAG if panel.flags else "#000"
            name = panel.label + (f" {panel.name}" if panel.name else "")
            out.append(f'<text x="14" y="{y + cell_h - 3}" fill="{colour}">{html.escape(name)}</text>')
            for column, hour in enumerate(hours):
                value = report.hourly_power(panel, hour)
                if value is None and not report.anyone_reported(members, hour):
                    continue  # nobody reported: the night
                fill = "url(#none)" if value is None else _colour(value / peak)
                title = "no report" if value is None else f"{value:.0f} W"
                out.append(
                    f'<rect x="{left + column * cell_w}" y="{y}" width="{cell_w}" height="{cell_h}" '
                    f'fill="{fill}" stroke="#fff" stroke-width="0.5"><title>{html.escape(panel.label)} '
                    f"{report.hour_label(hour)}: {title}</title></rect>"
                )
            if panel.flags:
                x = left + cell_w * len(hours) + 6
                out.append(
                    f'<text x="{x}" y="{y + cell_h - 3}" fill="{_FLAG}">◀ {", ".join(panel.flags)}</text>'
                )
            y += cell_h
    legend_y = y + 20
    for step in range(11):
        out.append(
            f'<rect x="{left + step * 20}" y="{legend_y}" width="20" height="10" '
            f'fill="{_colour(step / 10)}"/>'
        )
    out.append(f'<text x="{left}" y="{legend_y + 24}">0 W</text>')
    out.append(
        f'<text x="{left + 220}" y="{legend_y + 24}" text-anchor="end">'
        f"{peak:.0f} W (mean power in the hour)</text>"
    )
    out.append(f'<rect x="{left + 240}" y="{legend_y}" width="20" height="10" fill="url(#none)"/>')
    out.append(f'<text x="{left + 266}" y="{legend_y + 9}">no report</text>')
    out.append("</svg>")
    return "\n".join(out)


def html_page(report: Report) -> str:
    rows = "\n".join(
        "<tr{}>{}</tr>".format(
            ' class="flagged"' if panel.flags else "",
            "".join(f"<td>{html.escape(cell)}</td>" for cell in _cells(panel, empty="")),
        )
        for panel in report.panels
    )
    title = f"Panel health {report.period}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: right; }}
td:nth-child(-n+3), th:nth-child(-n+3) {{ text-align: left; }}
tr.flagged td {{ color: {_FLAG}; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Days in {html.escape(report.zone_name)}; array {report.total_wh / 1000:,.2f} kWh;
a panel is underperforming below {report.threshold:.0%} of its string's median energy.</p>
{svg(report)}
<table><thead><tr><th>String</th><th>Panel</th><th>Name</th><th>Energy Wh</th><th>Ratio</th><th>Peak W</th>
<th>No report h</th><th>RSSI</th><th>Max °C</th><th>Flags</th></tr></thead>
<tbody>
{rows}
</tbody></table>
</body></html>
"""


def png(report: Report, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        raise UsageError(
            "a PNG report needs matplotlib: pip install 'recorder[report]' (or choose report.html)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    hours, groups, peak = _grid(report)
    labels: list[tuple[str, bool, str]] = []  # (text, flagged, flags)
    values: list[list[float]] = []
    separators: list[int] = []
    blank: set[tuple[int, int]] = set()  # (row, column) where nobody of the string reported
    for group, members in groups:
        separators.append(len(labels))
        labels.append((group, False, ""))
        values.append([float("nan")] * len(hours))
        quiet = [column for column, hour in enumerate(hours) if not report.anyone_reported(members, hour)]
        for panel in members:
            blank.update((len(labels), column) for column in quiet)
            labels.append(
                (
                    "  " + panel.label + (f" {panel.name}" if panel.name else ""),
                    bool(panel.flags),
                    ", ".join(panel.flags),
                )
            )
            powers = [report.hourly_power(panel, hour) for hour in hours]
            values.append([float("nan") if v is None else v for v in powers])
    figure_height = max(3.0, 0.22 * len(labels) + 1.6)
    figure, axes = plt.subplots(figsize=(4 + 0.42 * max(len(hours), 1) + 2.2, figure_height), dpi=110)
    colours = matplotlib.colormaps["viridis"]
    image = axes.imshow(
        [[v if v == v else 0.0 for v in row] for row in values],
        aspect="auto",
        cmap=colours,
        vmin=0,
        vmax=peak,
        interpolation="nearest",
    )
    for y, row in enumerate(values):
        if y in separators:
            axes.add_patch(Rectangle((-0.5, y - 0.5), len(hours), 1, facecolor="white", edgecolor="none"))
            continue
        for x, value in enumerate(row):
            if (y, x) in blank:
                axes.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor="white", edgecolor="none"))
            elif value != value:  # no report in that hour while others of its string reported
                axes.add_patch(
                    Rectangle(
                        (x - 0.5, y - 0.5), 1, 1, facecolor=_NO_REPORT, edgecolor="#888", hatch="////", lw=0
                    )
                )
    axes.set_xticks(range(len(hours)), [report.hour_label(hour) for hour in hours], rotation=90, fontsize=8)
    axes.set_yticks(range(len(labels)), [text for text, _, _ in labels], fontsize=7)
    for tick, (_, flagged, _) in zip(axes.get_yticklabels(), labels, strict=True):
        if flagged:
            tick.set_color(_FLAG)
            tick.set_fontweight("bold")
    for index in separators:
        axes.get_yticklabels()[index].set_fontweight("bold")
        axes.axhline(index - 0.5, color="black", lw=0.8)
    for y, (_, flagged, flags) in enumerate(labels):
        if flagged:
            axes.annotate(
                f"◀ {flags}",
                xy=(len(hours) - 0.5, y),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
                color=_FLAG,
                annotation_clip=False,
            )
    axes.set_title(
        f"Mean power per hour, {report.period} ({report.zone_name}); red: flagged; "
        "hatched: no report while its string reported",
        fontsize=9,
    )
    bar = figure.colorbar(image, ax=axes, pad=0.11, fraction=0.04)
    bar.set_label("mean power in the hour (W)", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write(report: Report, path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise UsageError(f"--out {path}: expected a file name ending in .png or .html")
    if path.is_dir() or not path.parent.exists():
        raise UsageError(f"--out {path}: not a file in an existing directory")
    try:
        if suffix == ".png":
            png(report, path)
        else:
            path.write_text(html_page(report), encoding="utf-8")
    except OSError as error:
        raise UsageError(f"--out {path}: {error.strerror}") from None
