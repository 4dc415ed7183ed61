"""Report data: the Trainer's history and the Evaluator's TFMA output, read for the run report.

`collect_report_data` reads `history.json` from the Trainer's model run directory and the
metrics, plots, validation result and eval config that TFX's Evaluator writes, and returns a
`ReportData` that `components.report_html.render_report` turns into a page.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

OVERALL_SLICE = "Overall"
HISTORY_FILE = "history.json"
BASELINE_MODEL_NAME = "baseline"
# At threshold 0, TFMA's multi-class confusion matrix counts each example for its top-scoring
# class (its default threshold). A binary confusion matrix is read at the threshold closest to 0.5.
MULTI_CLASS_THRESHOLD = 0.0
BINARY_THRESHOLD = 0.5
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclasses.dataclass
class MetricRow:
    """One metric of one slice: the candidate's value, the baseline's and their difference."""

    slice_name: str
    metric: str
    candidate: Optional[float] = None
    baseline: Optional[float] = None
    diff: Optional[float] = None


@dataclasses.dataclass
class ThresholdCheck:
    """One blessing threshold: a value bound or a change bound against the baseline."""

    metric: str
    slice_name: str
    kind: str  # "value" or "change"
    bound: str
    value: Optional[float]
    status: str  # PASSED, FAILED or SKIPPED
    detail: str = ""


@dataclasses.dataclass
class ConfusionMatrix:
    """Example counts by true label (rows) and predicted label (columns)."""

    labels: List[str]
    counts: List[List[float]]
    threshold: Optional[float] = None


@dataclasses.dataclass
class CalibrationBucket:
    """Examples whose predicted probability falls in [lower, upper)."""

    lower: float
    upper: float
    count: float
    mean_label: float
    mean_prediction: float


@dataclasses.dataclass
class ReportData:
    """Everything the report page shows."""

    title: str
    pipeline_name: str = ""
    run_label: str = ""
    created: str = ""
    history: Dict = dataclasses.field(default_factory=dict)
    metrics: List[MetricRow] = dataclasses.field(default_factory=list)
    confusion: Optional[ConfusionMatrix] = None
    calibration: List[CalibrationBucket] = dataclasses.field(default_factory=list)
    has_baseline: bool = False
    blessed: Optional[bool] = None
    checks: List[ThresholdCheck] = dataclasses.field(default_factory=list)
    validation_messages: List[str] = dataclasses.field(default_factory=list)
    overall_slice_name: str = OVERALL_SLICE


def read_history(model_run_dir: str) -> Dict:
    """Return the Trainer's `history.json` from `model_run_dir`, or {} when it is missing."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    path = os.path.join(model_run_dir, HISTORY_FILE)
    if not tf.io.gfile.exists(path):
        return {}
    with tf.io.gfile.GFile(path) as history_file:
        return json.load(history_file)


def slice_name(slice_key) -> str:
    """Return `column = value, ...` for a TFMA SliceKey, or `Overall` for the whole eval set."""
    parts = []
    for key in slice_key.single_slice_keys:
        kind = key.WhichOneof("kind")
        value = getattr(key, kind) if kind else ""
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        parts.append(f"{key.column} = {value}")
    return ", ".join(parts) or OVERALL_SLICE


def metric_name(key) -> str:
    """Return a MetricKey's name with its class, top-k and aggregation, e.g. `auc (class 1)`."""
    qualifiers = []
    if key.sub_key.HasField("class_id"):
        qualifiers.append(f"class {key.sub_key.class_id.value}")
    if key.sub_key.HasField("k"):
        qualifiers.append(f"k={key.sub_key.k.value}")
    if key.sub_key.HasField("top_k"):
        qualifiers.append(f"top {key.sub_key.top_k.value}")
    if key.HasField("aggregation_type"):
        if key.aggregation_type.macro_average:
            qualifiers.append("macro")
        elif key.aggregation_type.micro_average:
            qualifiers.append("micro")
        elif key.aggregation_type.weighted_macro_average:
            qualifiers.append("weighted macro")
    return key.name + (f" ({', '.join(qualifiers)})" if qualifiers else "")


def metric_rows(metrics_for_slices: Iterable) -> Tuple[List[MetricRow], bool]:
    """Return the scalar metrics of every slice and whether a baseline model was evaluated."""
    rows: Dict[Tuple[str, str], MetricRow] = {}
    has_baseline = False
    for slice_metrics in metrics_for_slices:
        name_of_slice = slice_name(slice_metrics.slice_key)
        for entry in slice_metrics.metric_keys_and_values:
            if not entry.value.HasField("double_value"):
                continue
            key = entry.key
            value = entry.value.double_value.value
            row = rows.setdefault((name_of_slice, metric_name(key)), MetricRow(name_of_slice, metric_name(key)))
            if key.is_diff:
                row.diff = value
            elif key.model_name == BASELINE_MODEL_NAME:
                row.baseline = value
                has_baseline = True
            else:
                row.candidate = value
    return sorted(rows.values(), key=lambda row: (row.slice_name != OVERALL_SLICE, row.slice_name, row.metric)), has_baseline


def _label_names(labels: Optional[Sequence[str]], count: int) -> List[str]:
    labels = list(labels or [])
    return [labels[index] if index < len(labels) else f"class {index}" for index in range(count)]


def confusion_matrix(plots_for_slices: Iterable, labels: Optional[Sequence[str]]) -> Optional[ConfusionMatrix]:
    """Return the candidate's confusion matrix on the overall slice, or None when TFMA plotted none.

    A multi-class plot (MultiClassConfusionMatrixPlot) is read at threshold 0, where each
    example counts for its top class. A binary plot (ConfusionMatrixPlot) without a class
    sub key is read at the threshold closest to 0.5.
    """
    binary = None
    for slice_plots in plots_for_slices:
        if slice_name(slice_plots.slice_key) != OVERALL_SLICE:
            continue
        for entry in slice_plots.plot_keys_and_values:
            if entry.key.model_name == BASELINE_MODEL_NAME:
                continue
            multi_class = entry.value.multi_class_confusion_matrix_at_thresholds
            if multi_class.matrices:
                return _multi_class_matrix(multi_class.matrices, labels)
            at_thresholds = entry.value.confusion_matrix_at_thresholds
            if at_thresholds.matrices and not entry.key.HasField("sub_key"):
                binary = min(at_thresholds.matrices, key=lambda matrix: abs(matrix.threshold - BINARY_THRESHOLD))
    if binary is None:
        return None
    return ConfusionMatrix(
        labels=_label_names(labels, 2),
        counts=[[binary.true_negatives, binary.false_positives], [binary.false_negatives, binary.true_positives]],
        threshold=binary.threshold,
    )


def _multi_class_matrix(matrices, labels: Optional[Sequence[str]]) -> ConfusionMatrix:
    matrix = min(matrices, key=lambda item: abs(item.threshold - MULTI_CLASS_THRESHOLD))
    size = max([len(labels or [])] + [max(entry.actual_class_id, entry.predicted_class_id) + 1
                                      for entry in matrix.entries])
    counts = [[0.0] * size for _ in range(size)]
    for entry in matrix.entries:
        if entry.actual_class_id >= 0 and entry.predicted_class_id >= 0:
            counts[entry.actual_class_id][entry.predicted_class_id] += entry.num_weighted_examples
    return ConfusionMatrix(labels=_label_names(labels, size), counts=counts, threshold=matrix.threshold)


def calibration_buckets(plots_for_slices: Iterable) -> List[CalibrationBucket]:
    """Return the candidate's calibration histogram on the overall slice ([] when not plotted)."""
    for slice_plots in plots_for_slices:
        if slice_name(slice_plots.slice_key) != OVERALL_SLICE:
            continue
        for entry in slice_plots.plot_keys_and_values:
            buckets = entry.value.calibration_histogram_buckets.buckets
            if entry.key.model_name == BASELINE_MODEL_NAME or not buckets:
                continue
            result = []
            for bucket in buckets:
                count = bucket.num_weighted_examples.value
                if count <= 0:
                    continue
                result.append(CalibrationBucket(
                    lower=max(bucket.lower_threshold_inclusive, 0.0),
                    upper=min(bucket.upper_threshold_exclusive, 1.0),
                    count=count,
                    mean_label=bucket.total_weighted_label.value / count,
                    mean_prediction=bucket.total_weighted_refined_prediction.value / count,
                ))
            return result
    return []


def _config_metric_name(metric_config) -> str:
    """Return the name TFMA gives a MetricConfig's metric: its `name` option or the snake-case class name."""
    options = metric_config.config.strip()
    if options:
        try:
            parsed = json.loads(options if options.startswith("{") else "{" + options + "}")
        except json.JSONDecodeError:
            parsed = {}
        if parsed.get("name"):
            return parsed["name"]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", metric_config.class_name).lower()


def _slice_matches(slicing_spec, name_of_slice: str, slice_key) -> bool:
    columns = {key.column: key for key in slice_key.single_slice_keys}
    wanted = set(slicing_spec.feature_keys) | set(slicing_spec.feature_values)
    if not wanted:
        return name_of_slice == OVERALL_SLICE
    if set(columns) != wanted:
        return False
    for column, value in slicing_spec.feature_values.items():
        kind = columns[column].WhichOneof("kind")
        actual = getattr(columns[column], kind) if kind else ""
        if isinstance(actual, bytes):
            actual = actual.decode("utf-8", errors="replace")
        if str(actual) != value:
            return False
    return True


def _bound_text(threshold, kind: str) -> str:
    if kind == "value":
        bounds = []
        if threshold.value_threshold.HasField("lower_bound"):
            bounds.append(f">= {threshold.value_threshold.lower_bound.value:g}")
        if threshold.value_threshold.HasField("upper_bound"):
            bounds.append(f"<= {threshold.value_threshold.upper_bound.value:g}")
        return " and ".join(bounds)
    from tensorflow_model_analysis.proto import config_pb2  # pylint: disable=import-outside-toplevel

    change = threshold.change_threshold
    sign = ">=" if change.direction == config_pb2.MetricDirection.HIGHER_IS_BETTER else "<="
    bounds = []
    if change.HasField("absolute"):
        bounds.append(f"change {sign} {change.absolute.value:+g}")
    if change.HasField("relative"):
        bounds.append(f"relative change {sign} {change.relative.value:+g}")
    return " and ".join(bounds)


def _thresholds(eval_config) -> List[Tuple[str, object, Optional[object]]]:
    """Return (metric name, MetricThreshold, slicing spec or None for the overall slice) of `eval_config`."""
    found = []
    for spec in eval_config.metrics_specs:
        for metric in spec.metrics:
            name = _config_metric_name(metric)
            if metric.HasField("threshold"):
                found.append((name, metric.threshold, None))
            for per_slice in metric.per_slice_thresholds:
                for slicing_spec in per_slice.slicing_specs:
                    found.append((name, per_slice.threshold, slicing_spec))
        for name, threshold in spec.thresholds.items():
            found.append((name, threshold, None))
        for name, per_slice_list in spec.per_slice_thresholds.items():
            for per_slice in per_slice_list.thresholds:
                for slicing_spec in per_slice.slicing_specs:
                    found.append((name, per_slice.threshold, slicing_spec))
    return found


def threshold_checks(eval_config, metrics_for_slices: Sequence, validation_result,
                     has_baseline: bool) -> List[ThresholdCheck]:
    """Return one check per configured threshold, metric variant (class, aggregation) and slice.

    A check failed when TFMA's validation result lists it, was skipped when it is a change
    threshold and there was no baseline (TFX then evaluates the candidate alone), and passed
    otherwise.
    """
    failures = {}
    for per_slice in validation_result.metric_validations_per_slice:
        for failure in per_slice.failures:
            failures[(slice_name(per_slice.slice_key), metric_name(failure.metric_key),
                      failure.metric_key.is_diff)] = failure
    baseline_missing = not has_baseline or validation_result.rubber_stamp

    checks = []
    for base_name, threshold, slicing_spec in _thresholds(eval_config):
        kinds = [kind for kind, field in (("value", "value_threshold"), ("change", "change_threshold"))
                 if threshold.HasField(field)]
        for slice_metrics in metrics_for_slices:
            name_of_slice = slice_name(slice_metrics.slice_key)
            if slicing_spec is None and name_of_slice != OVERALL_SLICE:
                continue
            if slicing_spec is not None and not _slice_matches(slicing_spec, name_of_slice, slice_metrics.slice_key):
                continue
            values = {}
            for entry in slice_metrics.metric_keys_and_values:
                if entry.key.name != base_name or entry.key.model_name == BASELINE_MODEL_NAME:
                    continue
                if entry.value.HasField("double_value"):
                    values[(metric_name(entry.key), entry.key.is_diff)] = entry.value.double_value.value
            for name in sorted({name for name, _ in values}):
                for kind in kinds:
                    checks.append(_check(name, name_of_slice, kind, threshold, values, failures, baseline_missing))
    return checks


def _check(name: str, name_of_slice: str, kind: str, threshold, values: Dict, failures: Dict,
           baseline_missing: bool) -> ThresholdCheck:
    is_diff = kind == "change"
    value = values.get((name, is_diff))
    failure = failures.get((name_of_slice, name, is_diff))
    if failure is not None:
        status, detail = FAILED, failure.message or "below the threshold"
        if failure.metric_value.HasField("double_value"):
            value = failure.metric_value.double_value.value
    elif is_diff and baseline_missing:
        status, detail = SKIPPED, "no baseline model to compare with"
    else:
        status, detail = PASSED, ""
    return ThresholdCheck(metric=name, slice_name=name_of_slice, kind=kind, bound=_bound_text(threshold, kind),
                          value=value, status=status, detail=detail)


def validation_messages(validation_result) -> List[str]:
    """Return TFMA's notes on thresholds or slices that it could not check."""
    messages = []
    for slicing_spec in validation_result.missing_slices:
        messages.append(f"slice {dict(slicing_spec.feature_values) or list(slicing_spec.feature_keys)} "
                        "has a threshold but no examples in the eval data")
    if validation_result.missing_thresholds:
        messages.append("TFMA found thresholds for metrics that it did not compute")
    return messages


def collect_report_data(*, evaluation_dir: str, model_run_dir: Optional[str], blessed: Optional[bool],
                        labels: Optional[Sequence[str]] = None, eval_config=None, title: str = "Run report",
                        pipeline_name: str = "", run_label: str = "", created: str = "") -> ReportData:
    """Read the Trainer history and the Evaluator's TFMA output into a `ReportData`.

    Args:
      evaluation_dir: the Evaluator's `evaluation` artifact directory.
      model_run_dir: the Trainer's `model_run` artifact directory (history.json), or None.
      blessed: the Evaluator's blessing decision; None when it is unknown.
      labels: class names by class id, for the confusion matrix.
      eval_config: the `tfma.EvalConfig` given to the Evaluator. Without a baseline, TFX
        drops the change thresholds from the config it writes to `evaluation_dir`, so only the
        given config lists them as skipped; None reads the written one.
    """
    import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel
    from tensorflow_model_analysis.writers import eval_config_writer  # pylint: disable=import-outside-toplevel

    metrics_for_slices = list(tfma.load_metrics(evaluation_dir))
    plots_for_slices = list(tfma.load_plots(evaluation_dir))
    validation_result = tfma.load_validation_result(evaluation_dir)
    if eval_config is None:
        eval_config = eval_config_writer.load_eval_run(evaluation_dir)[0]
    rows, has_baseline = metric_rows(metrics_for_slices)
    if blessed is None:
        blessed = validation_result.validation_ok
    return ReportData(
        title=title,
        pipeline_name=pipeline_name,
        run_label=run_label,
        created=created,
        history=read_history(model_run_dir) if model_run_dir else {},
        metrics=rows,
        confusion=confusion_matrix(plots_for_slices, labels),
        calibration=calibration_buckets(plots_for_slices),
        has_baseline=has_baseline,
        blessed=blessed,
        checks=(threshold_checks(eval_config, metrics_for_slices, validation_result, has_baseline)
                if eval_config is not None else []),
        validation_messages=validation_messages(validation_result),
    )
