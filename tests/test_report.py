"""The run report: TFMA output read into report data, the HTML page, and the page in headless Chromium.

The TFMA records here are built by hand in the layout TFX's Evaluator writes; the whole
component runs in tests/test_pipeline_e2e.py on a real pipeline run.
"""

import os
import re

import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import metrics_for_slice_pb2, validation_result_pb2

import headless_chromium
from components.report import ReportHTML, blessing_decision, write_report
from components.report_content import (
    FAILED,
    OVERALL_SLICE,
    PASSED,
    SKIPPED,
    CalibrationBucket,
    ConfusionMatrix,
    MetricRow,
    ReportData,
    ThresholdCheck,
    calibration_buckets,
    confusion_matrix,
    metric_rows,
    slice_name,
    threshold_checks,
)
from components.report_html import render_report

LABELS = ["negative", "neutral", "positive"]
HISTORY = {
    "log": [
        {"step": step, "phase": phase, "loss": 1.1 - 0.01 * step, "accuracy": 0.3 + 0.005 * step,
         "learning_rate": 1e-5 * step, "head_learning_rate": 1e-4 * step}
        for step, phase in [(10, "0:head"), (20, "0:head"), (30, "1:top:2"), (40, "1:top:2"), (50, "2:all"),
                            (60, "2:all")]
    ],
    "phases": [
        {"name": "0:head", "start_step": 0, "end_step": 20, "trainable_variables": 2, "seconds_per_step": 0.1},
        {"name": "1:top:2", "start_step": 20, "end_step": 40, "trainable_variables": 34, "seconds_per_step": 0.4},
        {"name": "2:all", "start_step": 40, "end_step": 60, "trainable_variables": 105, "seconds_per_step": 1.2},
    ],
    "evaluation": {"accuracy": 0.61, "loss": 0.82, "examples": 300},
}


def _slice_key(column=None, value=None):
    key = metrics_for_slice_pb2.SliceKey()
    if column is not None:
        key.single_slice_keys.add(column=column, bytes_value=value.encode())
    return key


def _metrics_for_slice(slice_key, values):
    """values: (name, model_name, is_diff, value, class_id or None)."""
    metrics = metrics_for_slice_pb2.MetricsForSlice(slice_key=slice_key)
    for name, model_name, is_diff, value, class_id in values:
        entry = metrics.metric_keys_and_values.add()
        entry.key.name = name
        entry.key.model_name = model_name
        entry.key.is_diff = is_diff
        if class_id is not None:
            entry.key.sub_key.class_id.value = class_id
        entry.value.double_value.value = value
    return metrics


def _eval_config():
    return tfma.EvalConfig(metrics_specs=[tfma.MetricsSpec(metrics=[
        tfma.MetricConfig(class_name="ExampleCount"),
        tfma.MetricConfig(
            class_name="SparseCategoricalAccuracy", config='"name": "accuracy"',
            threshold=tfma.MetricThreshold(
                value_threshold=tfma.GenericValueThreshold(lower_bound={"value": 0.7}),
                change_threshold=tfma.GenericChangeThreshold(
                    direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -0.01}))),
    ])])


def _candidate_and_baseline():
    return [
        _metrics_for_slice(_slice_key(), [
            ("accuracy", "candidate", False, 0.62, None),
            ("accuracy", "baseline", False, 0.75, None),
            ("accuracy", "candidate", True, -0.13, None),
            ("example_count", "candidate", False, 300.0, None),
            ("auc", "candidate", False, 0.8, 1),
        ]),
        _metrics_for_slice(_slice_key("text_length_bucket", "long"), [
            ("accuracy", "candidate", False, 0.55, None),
            ("example_count", "candidate", False, 120.0, None),
        ]),
    ]


def _failed_validation(metrics):
    result = validation_result_pb2.ValidationResult(validation_ok=False)
    per_slice = result.metric_validations_per_slice.add(slice_key=metrics[0].slice_key)
    for is_diff, value in ((False, 0.62), (True, -0.13)):
        failure = per_slice.failures.add(message=f"accuracy {'change' if is_diff else 'value'} below bound")
        failure.metric_key.name = "accuracy"
        failure.metric_key.model_name = "candidate"
        failure.metric_key.is_diff = is_diff
        failure.metric_value.double_value.value = value
    return result


def test_slice_names():
    assert slice_name(_slice_key()) == OVERALL_SLICE
    assert slice_name(_slice_key("genre", "drama")) == "genre = drama"


def test_metric_rows_pair_candidate_and_baseline():
    rows, has_baseline = metric_rows(_candidate_and_baseline())
    assert has_baseline
    by_key = {(row.slice_name, row.metric): row for row in rows}
    overall = by_key[(OVERALL_SLICE, "accuracy")]
    assert (overall.candidate, overall.baseline, overall.diff) == (0.62, 0.75, -0.13)
    assert by_key[(OVERALL_SLICE, "auc (class 1)")].candidate == 0.8
    assert by_key[("text_length_bucket = long", "example_count")].candidate == 120.0
    assert rows[0].slice_name == OVERALL_SLICE


def test_metric_rows_without_baseline():
    metrics = [_metrics_for_slice(_slice_key(), [("accuracy", "", False, 0.9, None)])]
    rows, has_baseline = metric_rows(metrics)
    assert not has_baseline
    assert rows == [MetricRow(OVERALL_SLICE, "accuracy", candidate=0.9)]


def test_checks_name_failed_thresholds():
    metrics = _candidate_and_baseline()
    checks = threshold_checks(_eval_config(), metrics, _failed_validation(metrics), has_baseline=True)
    assert [(check.kind, check.status) for check in checks] == [("value", FAILED), ("change", FAILED)]
    value_check, change_check = checks
    assert value_check.bound == ">= 0.7"
    assert value_check.value == pytest.approx(0.62)
    assert value_check.detail == "accuracy value below bound"
    assert change_check.bound == "change >= -0.01"
    assert change_check.value == pytest.approx(-0.13)
    assert all(check.slice_name == OVERALL_SLICE for check in checks)


def test_checks_skip_change_without_baseline():
    metrics = [_metrics_for_slice(_slice_key(), [("accuracy", "", False, 0.8, None)])]
    result = validation_result_pb2.ValidationResult(validation_ok=True, rubber_stamp=True)
    checks = threshold_checks(_eval_config(), metrics, result, has_baseline=False)
    assert [(check.kind, check.status) for check in checks] == [("value", PASSED), ("change", SKIPPED)]
    assert checks[0].value == pytest.approx(0.8)
    assert checks[1].value is None
    assert checks[1].detail == "no baseline model to compare with"


def _plots(plot_data, model_name="candidate"):
    plots = metrics_for_slice_pb2.PlotsForSlice(slice_key=_slice_key())
    entry = plots.plot_keys_and_values.add()
    entry.key.model_name = model_name
    entry.value.CopyFrom(plot_data)
    return plots


def test_multi_class_confusion_matrix_at_argmax():
    plot = metrics_for_slice_pb2.PlotData()
    for threshold, scale in ((0.5, 100), (0.0, 1)):
        matrix = plot.multi_class_confusion_matrix_at_thresholds.matrices.add(threshold=threshold)
        for actual, predicted, count in ((0, 0, 5), (0, 2, 1), (1, 1, 3), (2, 0, 2), (2, 2, 4)):
            matrix.entries.add(actual_class_id=actual, predicted_class_id=predicted,
                               num_weighted_examples=count * scale)
    baseline_plot = metrics_for_slice_pb2.PlotData()
    baseline_plot.multi_class_confusion_matrix_at_thresholds.matrices.add(threshold=0.0).entries.add(
        actual_class_id=0, predicted_class_id=0, num_weighted_examples=99)
    matrix = confusion_matrix([_plots(baseline_plot, "baseline"), _plots(plot)], LABELS)
    assert matrix.labels == LABELS
    assert matrix.threshold == 0.0
    assert matrix.counts == [[5, 0, 1], [0, 3, 0], [2, 0, 4]]


def test_binary_confusion_matrix_near_half():
    plot = metrics_for_slice_pb2.PlotData()
    for threshold, true_positives in ((0.3, 9), (0.5, 7), (0.7, 4)):
        plot.confusion_matrix_at_thresholds.matrices.add(
            threshold=threshold, true_positives=true_positives, false_positives=2, true_negatives=8,
            false_negatives=3)
    matrix = confusion_matrix([_plots(plot)], None)
    assert matrix.labels == ["class 0", "class 1"]
    assert matrix.counts == [[8, 2], [3, 7]]


def test_no_confusion_matrix_without_plot():
    assert confusion_matrix([_plots(metrics_for_slice_pb2.PlotData())], LABELS) is None


def test_calibration_means_per_bucket():
    plot = metrics_for_slice_pb2.PlotData()
    buckets = plot.calibration_histogram_buckets.buckets
    buckets.add(lower_threshold_inclusive=float("-inf"), upper_threshold_exclusive=0.0)
    bucket = buckets.add(lower_threshold_inclusive=0.2, upper_threshold_exclusive=0.3)
    bucket.num_weighted_examples.value = 4
    bucket.total_weighted_label.value = 1
    bucket.total_weighted_refined_prediction.value = 1.0
    assert calibration_buckets([_plots(plot)]) == [
        CalibrationBucket(lower=0.2, upper=0.3, count=4, mean_label=0.25, mean_prediction=0.25)]


def _full_report(blessed=False) -> ReportData:
    return ReportData(
        title="sentiment: run report",
        pipeline_name="sentiment",
        run_label="pipeline run 2026-12-04",
        created="2026-12-04 12:00 UTC",
        history=HISTORY,
        metrics=metric_rows(_candidate_and_baseline())[0],
        confusion=ConfusionMatrix(labels=LABELS, counts=[[50, 3, 7], [4, 40, 6], [9, 2, 79]], threshold=0.0),
        calibration=[CalibrationBucket(0.1 * index, 0.1 * index + 0.1, 20, 0.1 * index + 0.02, 0.1 * index + 0.05)
                     for index in range(10)],
        has_baseline=True,
        blessed=blessed,
        checks=[
            ThresholdCheck("accuracy", OVERALL_SLICE, "value", ">= 0.7", 0.62, FAILED, "accuracy below 0.7"),
            ThresholdCheck("accuracy", OVERALL_SLICE, "change", "change >= -0.01", -0.13, FAILED, "dropped"),
            ThresholdCheck("auc (class 1)", OVERALL_SLICE, "value", ">= 0.5", 0.8, PASSED),
        ],
    )


def test_page_is_self_contained():
    page = render_report(_full_report())
    assert page.startswith("<!DOCTYPE html>")
    assert "://" not in page
    for external in ("<script", "<link", "<img", "<iframe", "@import", "url("):
        assert external not in page, external


def test_page_shows_decision_and_reasons():
    page = render_report(_full_report(blessed=False))
    assert "Not blessed" in page
    assert page.count('class="name failed"') == 2
    assert "accuracy below 0.7" in page
    assert "-0.1300" in page
    blessed_page = render_report(_full_report(blessed=True))
    assert "Blessed: the model passed every threshold" in blessed_page


def test_page_marks_phase_boundaries():
    page = render_report(_full_report())
    # Three training charts, each with a dashed line at the start of phases 2 and 3.
    assert page.count('class="phase-boundary"') == 3 * 2
    assert len(re.findall(r'<line class="phase-boundary" x1="([\d.]+)"', page)) == 6
    assert page.count('<rect class="phase"') == 3 * 3


def test_first_run_page_says_no_baseline():
    data = _full_report(blessed=True)
    data.has_baseline = False
    data.checks = [ThresholdCheck("accuracy", OVERALL_SLICE, "change", "change >= -0.01", None, SKIPPED,
                                  "no baseline model to compare with")]
    page = render_report(data)
    assert "no baseline model: this is the first run" in page
    assert "there is no blessed model to compare with yet" in page
    assert 'class="name skipped"' in page


def test_page_without_history_or_plots():
    page = render_report(ReportData(title="bare", blessed=None))
    assert "Blessing decision unknown" in page
    assert "wrote no training history" in page
    assert "has no confusion matrix plot" in page


def test_write_report_replaces_folder(tmp_path):
    uri = tmp_path / "report" / "7"
    uri.mkdir(parents=True)
    write_report("<!DOCTYPE html><p>page</p>", str(uri))
    assert uri.is_file()
    assert uri.read_text() == "<!DOCTYPE html><p>page</p>"


def test_write_report_creates_parent(tmp_path):
    uri = tmp_path / "Report_123" / "report"
    write_report("<!DOCTYPE html>", str(uri))
    assert uri.read_text() == "<!DOCTYPE html>"


def test_blessing_decision_from_artifact():
    from tfx.types import standard_artifacts

    assert blessing_decision(None) is None
    blessing = standard_artifacts.ModelBlessing()
    assert blessing_decision(blessing) is None
    blessing.set_int_custom_property("blessed", 0)
    assert blessing_decision(blessing) is False
    blessing.set_int_custom_property("blessed", 1)
    assert blessing_decision(blessing) is True


def test_report_artifact_type_is_kfp_html():
    assert ReportHTML.TYPE_NAME == "system.HTML"


def test_full_report_renders_in_chromium(tmp_path):
    html_path = tmp_path / "report.html"
    html_path.write_text(render_report(_full_report(blessed=False)), encoding="utf-8")
    _, image = headless_chromium.assert_report_renders(str(html_path), str(tmp_path / "report.png"))
    # The red "not blessed" box (#ffe3e3) is on the page.
    assert headless_chromium.color_share(image, (0xff, 0xe3, 0xe3), tolerance=2) > 0.002
