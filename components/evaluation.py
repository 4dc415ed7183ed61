"""TFMA evaluation config: metrics, blessing thresholds and slices from the experiment config."""

from typing import List, Optional

import tensorflow_model_analysis as tfma

from components import features
from pipeline.config import ConfigError, PipelineConfig

ACCURACY = "accuracy"
AUC = "auc"
EXAMPLE_COUNT = "example_count"
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
        metric.threshold.CopyFrom(threshold)
    return metric


def _auc_spec(config: PipelineConfig) -> Optional[tfma.MetricsSpec]:
    """Return the AUC spec: on class 1's probability for 2 classes, else one-vs-rest."""
    evaluation = config.evaluation
    labels: Optional[List[str]] = config.data.labels
    threshold = _value_and_change_threshold(evaluation.auc_lower_bound, None)
    if labels is None:
        if threshold is not None:
            raise ConfigError(
                f"{config.source}: evaluation.auc_lower_bound needs data.labels, because the "
                f"eval config is built before Transform computes the label vocabulary; list "
                f"the labels in data.labels or drop the AUC bound.")
        return None
    auc = _metric("AUC", AUC, threshold, num_thresholds=10000)
    if len(labels) == 2:
        # TFMA flattens a [batch, 2] prediction into one binary example per column unless
        # it is binarized; binarizing on class 1 scores P(class 1) against label == 1.
        class_ids = [POSITIVE_CLASS_ID]
        aggregate = None
    else:
        # NOTE: TFMA applies the bound to each class's one-vs-rest AUC as well as to their
        # macro average.
        class_ids = list(range(len(labels)))
        aggregate = tfma.AggregationOptions(macro_average=True)
    spec = tfma.MetricsSpec(metrics=[auc],
                            binarize=tfma.BinarizationOptions(class_ids={"values": class_ids}))
    if aggregate is not None:
        spec.aggregate.CopyFrom(aggregate)
    return spec


def build_eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Build the Evaluator's config: example count, accuracy and AUC, with blessing thresholds.

    The model is called through `serving_default` on serialized tf.Examples; TFMA gets the
    label id from the model's `transform_features` signature. Accuracy is top-1 over the
    `probabilities` output. Slices: the whole eval set plus each `evaluation.slices` column.
    """
    evaluation = config.evaluation
    accuracy_threshold = _value_and_change_threshold(evaluation.accuracy_lower_bound,
                                                     evaluation.max_accuracy_drop)
    metrics_specs = [tfma.MetricsSpec(metrics=[
        tfma.MetricConfig(class_name="ExampleCount"),
        _metric("SparseCategoricalAccuracy", ACCURACY, accuracy_threshold),
    ])]
    auc_spec = _auc_spec(config)
    if auc_spec is not None:
        metrics_specs.append(auc_spec)

    slicing_specs = [tfma.SlicingSpec()]
    slicing_specs += [tfma.SlicingSpec(feature_keys=[column]) for column in evaluation.slices]
    model_spec = tfma.ModelSpec(
        signature_name=features.SERVING_DEFAULT,
        label_key=features.LABEL_ID,
        prediction_key=features.PROBABILITIES,
        preprocessing_function_names=[features.TRANSFORM_FEATURES],
    )
    return tfma.EvalConfig(model_specs=[model_spec], metrics_specs=metrics_specs,
                           slicing_specs=slicing_specs)
