"""TFMA evaluation config from the experiment config, and the Evaluator component that uses it.

`build_eval_config` sets the metrics, blessing thresholds and slices. `Evaluator` is TFX's
Evaluator with an executor that logs which change thresholds a run without a baseline skips.
"""

import json
from typing import Any, Dict, List, Optional

import tensorflow_model_analysis as tfma
from absl import logging
from tfx import types
from tfx import v1 as tfx
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

from components import features
from pipeline.config import ConfigError, PipelineConfig

COMPONENT_ID = "Evaluator"
ACCURACY = "accuracy"
AUC = "auc"
EXAMPLE_COUNT = "example_count"
PRECISION = "precision"
RECALL = "recall"
F1_SCORE = "f1_score"
# TFMA's sub key of the per-class metrics that count the top-1 class as the prediction.
TOP_1_SUB_KEY = "classId:{class_id} topK:1"
# Class whose probability column is the score of binary metrics (AUC) on a 2-class model.
POSITIVE_CLASS_ID = 1


def _value_and_change_threshold(lower_bound: Optional[float],
                                max_drop: Optional[float]) -> Optional[tfma.MetricThreshold]:
    if lower_bound is None and max_drop is None:
        return None
    threshold = tfma.MetricThreshold()
    if lower_bound is not None:
        threshold.value_threshold.lower_bound.value = lower_bound
    if max_drop is not None:
        # The candidate may score at most `max_drop` below the baseline. Without a baseline
        # (the first run) TFX's Evaluator skips change thresholds.
        threshold.change_threshold.direction = tfma.MetricDirection.HIGHER_IS_BETTER
        threshold.change_threshold.absolute.value = -max_drop
    return threshold


def _metric(class_name: str, name: str, threshold: Optional[tfma.MetricThreshold],
            **config) -> tfma.MetricConfig:
    options = ", ".join([f'"name": "{name}"'] + [f'"{key}": {value}'
                                                 for key, value in config.items()])
    metric = tfma.MetricConfig(class_name=class_name, config=options)
    if threshold is not None:
        # Gate on the whole eval set only. TFMA applies a plain `threshold` to every slice,
        # so a text-length bucket of a dozen examples could veto a release on its own.
        metric.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)
    return metric


def _per_class_specs(config: PipelineConfig) -> List[tfma.MetricsSpec]:
    """Return the one-vs-rest metrics of each class, or [] when the labels are not listed.

    Every class gets precision and recall, which count an example as predicted for a class
    when that class has the highest probability (`top_k: 1`), and calibration with its plot
    on the class's probability, and F1. With two classes, AUC is that of class 1; with more,
    it is macro-averaged over the classes.
    """
    evaluation = config.evaluation
    labels: Optional[List[str]] = config.data.labels
    threshold = _value_and_change_threshold(evaluation.auc_lower_bound, None)
    if labels is None:
        if threshold is not None:
            raise ConfigError(
                f"{config.source}: evaluation.auc_lower_bound needs data.labels, because the "
                f"eval config is built before Transform computes the label vocabulary; list "
                f"the labels in data.labels or drop the AUC bound.")
        # NOTE: without data.labels the number of classes is unknown here, so only the
        # overall metrics and the confusion matrix are computed.
        logging.warning("%s: data.labels is not set, so the Evaluator computes no per-class "
                        "metrics, AUC or calibration; list the labels to get them.",
                        config.source)
        return []
    all_classes = tfma.BinarizationOptions(class_ids={"values": list(range(len(labels)))})
    per_class = tfma.MetricsSpec(
        metrics=[_metric("Precision", PRECISION, None, top_k=1),
                 _metric("Recall", RECALL, None, top_k=1),
                 _metric("F1Score", F1_SCORE, None, top_k=1),
                 tfma.MetricConfig(class_name="Calibration"),
                 tfma.MetricConfig(class_name="CalibrationPlot")],
        binarize=all_classes)
    auc = [_metric("AUC", AUC, threshold, num_thresholds=10000)]
    if len(labels) == 2:
        # TFMA flattens a [batch, 2] prediction into one binary example per column unless
        # it is binarized; binarizing on class 1 scores P(class 1) against label == 1.
        summary = tfma.MetricsSpec(
            metrics=auc,
            binarize=tfma.BinarizationOptions(class_ids={"values": [POSITIVE_CLASS_ID]}))
    else:
        # NOTE: TFMA applies the AUC bound to each class's one-vs-rest AUC as well as to
        # their macro average. TFMA 0.47.1 fails (KeyError on `_f1_score`) when it
        # macro-averages a `top_k` metric, so `macro_f1` averages the per-class F1 instead.
        # TFMA 0.47.1 needs explicit class weights to macro-average over all classes.
        summary = tfma.MetricsSpec(
            metrics=auc, binarize=all_classes,
            aggregate=tfma.AggregationOptions(
                macro_average=True,
                class_weights={class_id: 1.0 for class_id in range(len(labels))}))
    return [summary, per_class]


def build_eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Build the Evaluator's config: metrics, blessing thresholds and slices.

    The model is called through `serving_default` on serialized tf.Examples; TFMA gets the
    label id and the `text_length_bucket` slice key from the model's `transform_features`
    signature. Overall metrics: example count, top-1 accuracy over the `probabilities`
    output and the confusion matrix. With `data.labels`: AUC (of class 1 for 2 classes,
    macro-averaged for more), and per class precision, recall, F1, calibration and a
    calibration plot. Slices: the whole eval set, each text-length bucket and each
    `evaluation.slices` column.
    """
    evaluation = config.evaluation
    accuracy_threshold = _value_and_change_threshold(evaluation.accuracy_lower_bound,
                                                     evaluation.max_accuracy_drop)
    metrics_specs = [tfma.MetricsSpec(metrics=[
        tfma.MetricConfig(class_name="ExampleCount"),
        _metric("SparseCategoricalAccuracy", ACCURACY, accuracy_threshold),
        tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
    ])]
    metrics_specs += _per_class_specs(config)

    slicing_specs = [tfma.SlicingSpec(),
                     tfma.SlicingSpec(feature_keys=[features.TEXT_LENGTH_BUCKET])]
    slicing_specs += [tfma.SlicingSpec(feature_keys=[column]) for column in evaluation.slices]
    model_spec = tfma.ModelSpec(
        signature_name=features.SERVING_DEFAULT,
        label_key=features.LABEL_ID,
        prediction_key=features.PROBABILITIES,
        preprocessing_function_names=[features.TRANSFORM_FEATURES],
    )
    return tfma.EvalConfig(model_specs=[model_spec], metrics_specs=metrics_specs,
                           slicing_specs=slicing_specs)


def macro_f1(slice_metrics: Dict[str, Dict[str, Any]], num_classes: int) -> float:
    """Return the mean of the per-class F1 scores in one slice of a TFMA result.

    `slice_metrics` maps sub keys (`classId:0 topK:1`, ...) to metric names to values: the
    value of `dict(tfma.EvalResult.slicing_metrics)[slice_key][output_name]`.
    """
    scores = []
    for class_id in range(num_classes):
        sub_key = TOP_1_SUB_KEY.format(class_id=class_id)
        value = slice_metrics.get(sub_key, {}).get(F1_SCORE)
        if value is None:
            raise KeyError(f"no {F1_SCORE} for {sub_key!r} in the slice metrics "
                           f"(found {sorted(slice_metrics)}); was the eval config built with "
                           f"data.labels?")
        scores.append(value["doubleValue"])
    return sum(scores) / num_classes


def change_threshold_metrics(eval_config: tfma.EvalConfig) -> List[str]:
    """Return the names of the metrics in `eval_config` that have a change threshold."""
    names = []
    for spec in eval_config.metrics_specs:
        for metric in spec.metrics:
            thresholds = [metric.threshold] + [item.threshold for item in metric.per_slice_thresholds]
            if any(threshold.HasField("change_threshold") for threshold in thresholds):
                options = json.loads("{" + metric.config + "}") if metric.config else {}
                names.append(options.get("name", metric.class_name))
    return names


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator executor, logging the change thresholds it skips without a baseline."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        eval_config_json = exec_properties.get(standard_component_specs.EVAL_CONFIG_KEY)
        has_baseline = bool(input_dict.get(standard_component_specs.BASELINE_MODEL_KEY))
        if eval_config_json and not has_baseline:
            eval_config = tfma.EvalConfig()
            proto_utils.json_to_proto(eval_config_json, eval_config)
            skipped = change_threshold_metrics(eval_config)
            if skipped:
                # TFX drops change thresholds when no baseline model was resolved.
                logging.warning(
                    "No baseline model was resolved (before the first blessed model there "
                    "is none): skipping the change thresholds on %s; only the value "
                    "thresholds decide the blessing.", ", ".join(skipped))
        super().Do(input_dict, output_dict, exec_properties)


class Evaluator(tfx.components.Evaluator):
    """TFX's Evaluator that logs the change thresholds it skips on a run without a baseline.

    Give it the id `Evaluator` with `.with_id(COMPONENT_ID)`, like the stock component.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
