"""Render a `ReportData` as one self-contained HTML page: inline CSS and SVG, no scripts, no URLs.

The page opens offline from a file, and the Kubeflow Pipelines UI shows it in an iframe.
"""

from __future__ import annotations

import html
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple

from components.report_content import (
    CalibrationBucket,
    ConfusionMatrix,
    MetricRow,
    ReportData,
    ThresholdCheck,
)

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 24px; color: #1f2933; background: #fff; max-width: 1100px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin-top: 32px; border-bottom: 1px solid #d9e2ec; padding-bottom: 4px; }
.meta { color: #52606d; font-size: 13px; }
.decision { padding: 12px 16px; border-radius: 6px; font-size: 16px; margin: 16px 0; }
.blessed { background: #e3f9e5; border: 1px solid #31c48d; }
.rejected { background: #ffe3e3; border: 1px solid #e12d39; }
.unknown { background: #fff3c4; border: 1px solid #f0b429; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #d9e2ec; padding: 4px 8px; text-align: right; }
th { background: #f0f4f8; }
td.name, th.name { text-align: left; }
td.failed { color: #ab091e; font-weight: 600; }
td.passed { color: #0e7c3a; }
td.skipped { color: #8d2b0b; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
svg text { font-size: 11px; fill: #334e68; }
.note { color: #52606d; font-size: 13px; }
"""

_SERIES_COLORS = ("#2680c2", "#e12d39", "#3ebd93", "#9446ed")
_PHASE_SHADES = ("#f0f4f8", "#ffffff")
_CHART_WIDTH = 500
_CHART_HEIGHT = 260
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 56, 16, 28, 36


def _escape(value) -> str:
    return html.escape(str(value), quote=True)


def _format_number(value: Optional[float], digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _format_count(value: Optional[float]) -> str:
    """Format an example count: whole numbers without decimals, weighted counts with two."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{int(value):d}" if float(value).is_integer() else f"{value:.2f}"


def _format_metric(name: str, value: Optional[float]) -> str:
    return _format_count(value) if "count" in name or name == "examples" else _format_number(value)


def _natural_key(text: str) -> list:
    """Sort key that orders the numbers inside `text` by value: `5-9` before `10-19`."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def _format_signed(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _ticks(low: float, high: float, count: int = 5) -> List[float]:
    """Return about `count` round tick values covering [low, high]."""
    if high <= low:
        return [low]
    raw_step = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = min((factor * magnitude for factor in (1, 2, 5, 10) if factor * magnitude >= raw_step),
               default=10 * magnitude)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def line_chart(title: str, series: Dict[str, Sequence[Tuple[float, float]]],
               phases: Sequence[Tuple[float, float, str]], x_label: str = "step",
               css_class: str = "chart") -> str:
    """Return an SVG line chart of `series` with the `phases` (start, end, name) as shaded bands.

    Each phase after the first starts at a dashed vertical line labelled with its name.
    """
    points = [point for values in series.values() for point in values]
    if not points:
        return ""
    x_values = [x for x, _ in points] + [edge for start, end, _ in phases for edge in (start, end)]
    y_values = [y for _, y in points]
    x_low, x_high = min(x_values), max(x_values)
    y_low, y_high = min(y_values), max(y_values)
    if x_high == x_low:
        x_high = x_low + 1
    if y_high == y_low:
        y_low, y_high = y_low - 0.5, y_high + 0.5
    padding = (y_high - y_low) * 0.05
    y_low, y_high = y_low - padding, y_high + padding
    plot_width = _CHART_WIDTH - _MARGIN_LEFT - _MARGIN_RIGHT
    plot_height = _CHART_HEIGHT - _MARGIN_TOP - _MARGIN_BOTTOM

    def x_pixel(x: float) -> float:
        return _MARGIN_LEFT + (x - x_low) / (x_high - x_low) * plot_width

    def y_pixel(y: float) -> float:
        return _MARGIN_TOP + (1 - (y - y_low) / (y_high - y_low)) * plot_height

    parts = [f'<svg class="{css_class}" width="{_CHART_WIDTH}" height="{_CHART_HEIGHT}" '
             f'viewBox="0 0 {_CHART_WIDTH} {_CHART_HEIGHT}" role="img" aria-label="{_escape(title)}">',
             f'<text x="{_MARGIN_LEFT}" y="16" font-weight="600">{_escape(title)}</text>']
    for index, (start, end, name) in enumerate(phases):
        left, right = x_pixel(start), x_pixel(end)
        parts.append(f'<rect class="phase" x="{left:.1f}" y="{_MARGIN_TOP}" width="{max(right - left, 0):.1f}" '
                     f'height="{plot_height}" fill="{_PHASE_SHADES[index % 2]}"><title>phase {_escape(name)}: '
                     f'steps {start:g}..{end:g}</title></rect>')
        if index > 0:
            parts.append(f'<line class="phase-boundary" x1="{left:.1f}" x2="{left:.1f}" y1="{_MARGIN_TOP}" '
                         f'y2="{_MARGIN_TOP + plot_height}" stroke="#627d98" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{left + 3:.1f}" y="{_MARGIN_TOP + 11}">{_escape(name)}</text>')
    for tick in _ticks(y_low, y_high):
        y = y_pixel(tick)
        parts.append(f'<line x1="{_MARGIN_LEFT}" x2="{_MARGIN_LEFT + plot_width}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#e4e7eb"/>')
        parts.append(f'<text x="{_MARGIN_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>')
    for tick in _ticks(x_low, x_high):
        x = x_pixel(tick)
        parts.append(f'<text x="{x:.1f}" y="{_MARGIN_TOP + plot_height + 16}" text-anchor="middle">{tick:g}</text>')
    parts.append(f'<text x="{_MARGIN_LEFT + plot_width / 2:.1f}" y="{_CHART_HEIGHT - 4}" '
                 f'text-anchor="middle">{_escape(x_label)}</text>')
    parts.append(f'<rect x="{_MARGIN_LEFT}" y="{_MARGIN_TOP}" width="{plot_width}" height="{plot_height}" '
                 f'fill="none" stroke="#9fb3c8"/>')
    for index, (name, values) in enumerate(series.items()):
        color = _SERIES_COLORS[index % len(_SERIES_COLORS)]
        path = " ".join(f"{x_pixel(x):.1f},{y_pixel(y):.1f}" for x, y in values)
        parts.append(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2" points="{path}">'
                     f'<title>{_escape(name)}</title></polyline>')
        if len(values) == 1:
            x, y = values[0]
            parts.append(f'<circle cx="{x_pixel(x):.1f}" cy="{y_pixel(y):.1f}" r="3" fill="{color}"/>')
        legend_x = _MARGIN_LEFT + plot_width - 140
        legend_y = _MARGIN_TOP + 30 + 14 * index
        parts.append(f'<line x1="{legend_x}" x2="{legend_x + 16}" y1="{legend_y - 4}" y2="{legend_y - 4}" '
                     f'stroke="{color}" stroke-width="2"/>')
        parts.append(f'<text x="{legend_x + 20}" y="{legend_y}">{_escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _training_section(data: ReportData) -> str:
    history = data.history
    if not history or not history.get("log"):
        return ('<h2>Training curves</h2><p class="note">The Trainer wrote no training history '
                '(history.json) in its model run directory.</p>')
    log = history["log"]
    phases = [(phase["start_step"], phase["end_step"], phase["name"]) for phase in history.get("phases", [])]
    charts = [
        line_chart("Training loss", {"loss": [(record["step"], record["loss"]) for record in log]}, phases),
        line_chart("Training accuracy", {"accuracy": [(record["step"], record["accuracy"]) for record in log]},
                   phases),
        line_chart("Learning rates", {
            "backbone": [(record["step"], record["learning_rate"]) for record in log],
            "head": [(record["step"], record["head_learning_rate"]) for record in log if "head_learning_rate" in record],
        }, phases),
    ]
    rows = "".join(
        f'<tr><td class="name">{_escape(phase["name"])}</td><td>{phase["start_step"]}</td>'
        f'<td>{phase["end_step"]}</td><td>{phase.get("trainable_variables", "-")}</td>'
        f'<td>{_format_number(phase.get("seconds_per_step"))}</td></tr>'
        for phase in history.get("phases", []))
    evaluation = history.get("evaluation") or {}
    evaluation_line = ""
    if evaluation:
        evaluation_line = '<p class="note">Trainer evaluation: ' + ", ".join(
            f"{_escape(name)} {_format_metric(name, value)}" for name, value in sorted(evaluation.items())) + "</p>"
    return ("<h2>Training curves</h2>"
            '<p class="note">Shaded bands are the freeze phases; a dashed line marks each phase boundary.</p>'
            f'<div class="charts">{"".join(charts)}</div>'
            '<table class="phases"><tr><th class="name">phase</th><th>first step</th><th>end step</th>'
            f'<th>trained variables</th><th>seconds per step</th></tr>{rows}</table>{evaluation_line}')


def _decision_section(data: ReportData) -> str:
    if data.blessed is None:
        css, headline = "unknown", "Blessing decision unknown: the Evaluator wrote no blessing."
    elif data.blessed:
        css, headline = "blessed", "Blessed: the model passed every threshold and may be pushed."
    else:
        css, headline = "rejected", "Not blessed: the model failed at least one threshold and is not pushed."
    baseline_line = ("compared with the latest blessed model (baseline)" if data.has_baseline
                     else "no baseline model: this is the first run, so change thresholds are skipped")
    rows = "".join(_check_row(check) for check in data.checks)
    table = ('<table class="checks"><tr><th class="name">metric</th><th class="name">slice</th>'
             '<th class="name">threshold</th><th>value</th><th class="name">result</th>'
             f'<th class="name">detail</th></tr>{rows}</table>') if data.checks else (
        '<p class="note">The evaluation config has no thresholds.</p>')
    messages = "".join(f"<li>{_escape(message)}</li>" for message in data.validation_messages)
    return (f'<div class="decision {css}" id="decision">{_escape(headline)}<br>'
            f'<span class="meta">{_escape(baseline_line)}</span></div>'
            f"<h2>Blessing thresholds</h2>{table}"
            + (f"<ul>{messages}</ul>" if messages else ""))


def _check_row(check: ThresholdCheck) -> str:
    return (f'<tr><td class="name">{_escape(check.metric)}</td><td class="name">{_escape(check.slice_name)}</td>'
            f'<td class="name">{_escape(check.bound)}</td><td>{_format_metric(check.metric, check.value)}</td>'
            f'<td class="name {check.status}">{_escape(check.status)}</td>'
            f'<td class="name">{_escape(check.detail)}</td></tr>')


def _baseline_section(data: ReportData) -> str:
    if not data.has_baseline:
        return ('<h2>Comparison with the baseline</h2><p class="note">No baseline model: '
                'there is no blessed model to compare with yet.</p>')
    rows = "".join(
        f'<tr><td class="name">{_escape(row.metric)}</td><td>{_format_metric(row.metric, row.candidate)}</td>'
        f'<td>{_format_metric(row.metric, row.baseline)}</td><td>{_format_signed(row.diff)}</td></tr>'
        for row in data.metrics if row.slice_name == data.overall_slice_name)
    return ('<h2>Comparison with the baseline</h2><table class="baseline"><tr><th class="name">metric '
            f'(overall)</th><th>candidate</th><th>baseline</th><th>change</th></tr>{rows}</table>')


def _slices_section(data: ReportData) -> str:
    metric_names = sorted({row.metric for row in data.metrics})
    by_slice: Dict[str, Dict[str, MetricRow]] = {}
    for row in data.metrics:
        by_slice.setdefault(row.slice_name, {})[row.metric] = row
    if not by_slice:
        return '<h2>Metrics per slice</h2><p class="note">The Evaluator wrote no metrics.</p>'
    header = "".join(f"<th>{_escape(name)}</th>" for name in metric_names)
    ordered = sorted(by_slice, key=lambda name: (name != data.overall_slice_name, _natural_key(name)))
    rows = "".join(
        f'<tr><td class="name">{_escape(slice_name)}</td>'
        + "".join(f"<td>{_format_metric(name, by_slice[slice_name][name].candidate) if name in by_slice[slice_name] else '-'}"
                  "</td>" for name in metric_names)
        + "</tr>"
        for slice_name in ordered)
    return (f'<h2>Metrics per slice</h2><table class="slices"><tr><th class="name">slice</th>{header}</tr>'
            f"{rows}</table>")


def _confusion_section(matrix: Optional[ConfusionMatrix]) -> str:
    if matrix is None:
        return ('<h2>Confusion matrix</h2><p class="note">The evaluation has no confusion matrix plot; '
                'add a confusion matrix plot to the eval config to see one here.</p>')
    largest = max((count for row in matrix.counts for count in row), default=0) or 1
    header = "".join(f"<th>{_escape(label)}</th>" for label in matrix.labels)
    rows = []
    for label, counts in zip(matrix.labels, matrix.counts):
        cells = []
        for count in counts:
            shade = int(255 - 160 * count / largest)
            cells.append(f'<td style="background: rgb({shade},{shade + (255 - shade) // 3},255)">'
                         f"{_format_count(count)}</td>")
        rows.append(f'<tr><th class="name">{_escape(label)}</th>{"".join(cells)}</tr>')
    caption = f" at threshold {matrix.threshold:g}" if matrix.threshold is not None else ""
    return (f"<h2>Confusion matrix</h2><p class=\"note\">Rows: true label; columns: predicted label{caption} "
            f"(overall slice, candidate model).</p><table class=\"confusion\"><tr><th class=\"name\">true \\ "
            f"predicted</th>{header}</tr>{''.join(rows)}</table>")


def _calibration_section(buckets: Sequence[CalibrationBucket]) -> str:
    filled = [bucket for bucket in buckets if bucket.count > 0]
    if not filled:
        return ""
    predicted = [(bucket.mean_prediction, bucket.mean_label) for bucket in filled]
    chart = line_chart("Calibration: observed positive rate by mean prediction", {
        "model": predicted,
        "perfectly calibrated": [(0.0, 0.0), (1.0, 1.0)],
    }, [], x_label="mean predicted probability", css_class="chart calibration")
    return f"<h2>Calibration</h2>{chart}"


def render_report(data: ReportData) -> str:
    """Return the report page for `data` as an HTML string."""
    subtitle = " · ".join(_escape(part) for part in (data.pipeline_name, data.run_label, data.created) if part)
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_escape(data.title)}</title><style>{_CSS}</style></head><body>",
        f'<h1>{_escape(data.title)}</h1><div class="meta">{subtitle}</div>',
        _decision_section(data),
        _baseline_section(data),
        _training_section(data),
        _confusion_section(data.confusion),
        _slices_section(data),
        _calibration_section(data.calibration),
        "</body></html>",
    ])
