"""TFMA eval config: metrics, thresholds, slices, and metric values on an exported model."""

import copy

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from apache_beam.options.pipeline_options import PipelineOptions

import module_helpers
from components import evaluation
from pipeline.config import ConfigError, config_from_dict


def _config(handle="/backbone", labels=("neg", "pos"), **evaluation_args):
    config = module_helpers.make_config(handle, labels=labels)
    for key, value in evaluation_args.items():
        setattr(config.evaluation, key, value)
    return config


def _metrics(eval_config):
    return {(metric.class_name, tuple(spec.binarize.class_ids.values)): metric
            for spec in eval_config.metrics_specs for metric in spec.metrics}


def _gate(metric: tfma.MetricConfig) -> tfma.MetricThreshold:
    """Return the blessing threshold of `metric`, checking that it covers the whole eval set only."""
    assert not metric.HasField("threshold"), "a plain threshold would gate every slice"
    assert len(metric.per_slice_thresholds) == 1
    assert list(metric.per_slice_thresholds[0].slicing_specs) == [tfma.SlicingSpec()]
    return metric.per_slice_thresholds[0].threshold


def test_model_spec_uses_transform_features():
    model_spec = evaluation.build_eval_config(_config()).model_specs[0]
    assert model_spec.signature_name == "serving_default"
    assert model_spec.label_key == "label_id"
    assert model_spec.prediction_key == "probabilities"
    assert list(model_spec.preprocessing_function_names) == ["transform_features"]


def test_thresholds_from_config():
    eval_config = evaluation.build_eval_config(
        _config(accuracy_lower_bound=0.8, auc_lower_bound=0.85, max_accuracy_drop=0.01))
    metrics = _metrics(eval_config)
    assert set(metrics) == {
        ("ExampleCount", ()), ("SparseCategoricalAccuracy", ()),
        ("MultiClassConfusionMatrixPlot", ()), ("AUC", (1,)), ("Precision", (0, 1)),
        ("Recall", (0, 1)), ("F1Score", (0, 1)), ("Calibration", (0, 1)),
        ("CalibrationPlot", (0, 1))}

    accuracy = _gate(metrics[("SparseCategoricalAccuracy", ())])
    assert accuracy.value_threshold.lower_bound.value == pytest.approx(0.8)
    assert accuracy.change_threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    assert accuracy.change_threshold.absolute.value == pytest.approx(-0.01)
    auc = _gate(metrics[("AUC", (1,))])
    assert auc.value_threshold.lower_bound.value == pytest.approx(0.85)
    assert not auc.HasField("change_threshold")
    assert not metrics[("ExampleCount", ())].HasField("threshold")
    assert not metrics[("ExampleCount", ())].per_slice_thresholds


def test_no_drop_means_no_change_threshold():
    eval_config = evaluation.build_eval_config(_config(accuracy_lower_bound=0.7))
    accuracy = _gate(_metrics(eval_config)[("SparseCategoricalAccuracy", ())])
    assert accuracy.value_threshold.lower_bound.value == pytest.approx(0.7)
    assert not accuracy.HasField("change_threshold")


def test_slices_overall_and_columns():
    eval_config = evaluation.build_eval_config(_config(slices=["genre", "source"]))
    keys = [list(spec.feature_keys) for spec in eval_config.slicing_specs]
    assert keys == [[], ["text_length_bucket"], ["genre"], ["source"]]


@pytest.mark.parametrize("has_baseline", [False, True])
def test_valid_with_and_without_baseline(has_baseline):
    eval_config = evaluation.build_eval_config(_config(max_accuracy_drop=0.02))
    updated = tfma.utils.update_eval_config_with_defaults(
        eval_config, has_baseline=has_baseline, rubber_stamp=True)
    tfma.utils.verify_eval_config(updated)
    baselines = [spec.is_baseline for spec in updated.model_specs]
    assert baselines == ([False, True] if has_baseline else [False])


def test_auc_bound_needs_labels():
    with pytest.raises(ConfigError, match="auc_lower_bound needs data.labels"):
        evaluation.build_eval_config(_config(labels=None, auc_lower_bound=0.8))
    without_auc = evaluation.build_eval_config(_config(labels=None, auc_lower_bound=None))
    assert ("AUC", (1,)) not in _metrics(without_auc)


def test_multiclass_auc_is_macro_averaged():
    eval_config = evaluation.build_eval_config(_config(labels=("a", "b", "c")))
    auc_spec = [spec for spec in eval_config.metrics_specs
                if any(metric.class_name == "AUC" for metric in spec.metrics)][0]
    assert list(auc_spec.binarize.class_ids.values) == [0, 1, 2]
    assert auc_spec.aggregate.macro_average
    assert dict(auc_spec.aggregate.class_weights) == {0: 1.0, 1: 1.0, 2: 1.0}


def _binary_auc(labels, scores, num_thresholds=10000):
    """Probability that a random positive scores above a random negative (ties count half).

    Scores are first put in the buckets between TFMA's `num_thresholds` evenly spaced
    thresholds, as its AUC sees them: a well-trained model puts many probabilities in the
    top bucket, where TFMA cannot order them.
    """
    scores = np.clip(np.ceil(scores * (num_thresholds - 1)), 0, num_thresholds - 1)
    positives = scores[labels == 1]
    negatives = scores[labels == 0]
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return (greater + 0.5 * ties) / (len(positives) * len(negatives))


# Held-out rows whose words mix both classes. "movie" appears with both labels, so no model
# scores 1.0 accuracy on them.
EVAL_TEXTS = ["good movie", "bad movie", "good bad movie", "bad good so", "movie", "movie good",
              "bad", "good so so", "movie", "bad bad good", "good good bad", "so bad"]
EVAL_LABELS = ["pos", "neg", "pos", "neg", "pos", "pos", "neg", "pos", "neg", "neg", "pos", "neg"]


@pytest.fixture(scope="module")
def trained(tiny_backbone, tmp_path_factory):
    """A model trained on the toy task, and eval tf.Examples: (config, model dir, data path)."""
    work_dir = tmp_path_factory.mktemp("evaluation")
    config, _, serving_dir, _ = module_helpers.train_tiny_classifier(
        tiny_backbone.path, str(work_dir / "model"), module_helpers.sentiment_rows(24),
        batch_size=4, phases=[{"train": "head", "steps": 20}, {"train": "all", "steps": 60}],
        learning_rate=3e-3, head_learning_rate=1e-2, warmup_fraction=0.0)
    data_path = str(work_dir / "eval.tfrecord")
    with tf.io.TFRecordWriter(data_path) as writer:
        for text, label in zip(EVAL_TEXTS, EVAL_LABELS):
            feature = {name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
                       for name, value in (("text", text), ("label", label))}
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())
    return config, serving_dir, data_path


def _analyze(eval_config, serving_dir, data_path, output_path):
    models = [tfma.default_eval_shared_model(serving_dir, model_name=spec.name,
                                             eval_config=eval_config)
              for spec in eval_config.model_specs]
    return tfma.run_model_analysis(
        eval_shared_model=models if len(models) > 1 else models[0],
        eval_config=eval_config,
        data_location=data_path,
        output_path=output_path,
        pipeline_options=PipelineOptions(runner="DirectRunner",
                                         direct_running_mode="in_memory"),
    )


def test_metric_values_match_predictions(trained, tmp_path):
    config, serving_dir, data_path = trained
    result = _analyze(evaluation.build_eval_config(config), serving_dir, data_path,
                      str(tmp_path))
    overall = dict(result.slicing_metrics)[()]

    predict = tf.saved_model.load(serving_dir).signatures["predict_text"]
    probabilities = predict(text=tf.constant(EVAL_TEXTS))["probabilities"].numpy()
    label_ids = np.array([0 if label == "neg" else 1 for label in EVAL_LABELS])
    expected_accuracy = float((probabilities.argmax(axis=1) == label_ids).mean())
    expected_auc = _binary_auc(label_ids, probabilities[:, 1])

    assert overall[""][""]["example_count"]["doubleValue"] == len(EVAL_TEXTS)
    assert overall[""][""]["accuracy"]["doubleValue"] == pytest.approx(expected_accuracy)
    # TFMA's AUC buckets scores into 10,000 thresholds, so it is close to the exact value
    # only when the scores are spread out.
    assert probabilities[:, 1].max() - probabilities[:, 1].min() > 0.01
    assert overall[""]["classId:1"]["auc"]["doubleValue"] == pytest.approx(expected_auc, abs=2e-3)


@pytest.mark.parametrize("accuracy_lower_bound, blessed", [(0.0, True), (1.0, False)])
def test_validation_with_baseline(trained, tmp_path, accuracy_lower_bound, blessed):
    config, serving_dir, data_path = trained
    config = copy.deepcopy(config)
    config.evaluation.accuracy_lower_bound = accuracy_lower_bound
    config.evaluation.auc_lower_bound = None
    config.evaluation.max_accuracy_drop = 0.01
    # As TFX's Evaluator does when the resolver found a blessed model: the candidate is
    # compared with itself, so the change threshold passes and the bound decides.
    eval_config = tfma.utils.update_eval_config_with_defaults(
        evaluation.build_eval_config(config), has_baseline=True, rubber_stamp=True)
    _analyze(eval_config, serving_dir, data_path, str(tmp_path))
    validation = tfma.load_validation_result(str(tmp_path))
    assert validation.validation_ok == blessed


# Three-class predictions with known per-class counts. Rows: (label id, probabilities, words).
SCORED = [
    (0, [0.7, 0.2, 0.1], "a"), (0, [0.5, 0.4, 0.1], "a b c d e f"), (0, [0.2, 0.6, 0.2], "a"),
    (1, [0.1, 0.8, 0.1], "a b c d e f"), (1, [0.3, 0.3, 0.4], "a"), (1, [0.2, 0.7, 0.1], "a"),
    (2, [0.1, 0.1, 0.8], "a b c d e f"), (2, [0.6, 0.1, 0.3], "a"), (2, [0.1, 0.2, 0.7], "a"),
    (2, [0.2, 0.2, 0.6], "a"),
]


def _scored_metrics(tmp_path, config):
    """Run TFMA on SCORED through `config`'s metrics and slices, without a model."""
    from components.transform import text_length_buckets

    eval_config = evaluation.build_eval_config(config)
    # Model-agnostic: the predictions are features of the examples.
    del eval_config.model_specs[:]
    eval_config.model_specs.add(label_key="label_id", prediction_key="probabilities")
    buckets = text_length_buckets([tf.constant([words for _, _, words in SCORED])]).numpy()
    data_path = str(tmp_path / "scored.tfrecord")
    with tf.io.TFRecordWriter(data_path) as writer:
        for (label, probabilities, _), bucket in zip(SCORED, buckets):
            feature = {
                "label_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "probabilities": tf.train.Feature(
                    float_list=tf.train.FloatList(value=probabilities)),
                "text_length_bucket": tf.train.Feature(
                    bytes_list=tf.train.BytesList(value=[bucket])),
            }
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString())
    result = tfma.run_model_analysis(
        eval_config=eval_config, data_location=data_path, output_path=str(tmp_path / "out"),
        pipeline_options=PipelineOptions(runner="DirectRunner", direct_running_mode="in_memory"))
    return dict(result.slicing_metrics), str(tmp_path / "out")


def test_multiclass_metrics_match_counts(tmp_path):
    config = _config(labels=("a", "b", "c"))
    slices, output_path = _scored_metrics(tmp_path, config)
    overall = slices[()][""]

    labels = np.array([label for label, _, _ in SCORED])
    predicted = np.array([np.argmax(probabilities) for _, probabilities, _ in SCORED])
    assert overall[""]["accuracy"]["doubleValue"] == pytest.approx((labels == predicted).mean())
    f1_scores = []
    for class_id in range(3):
        true_positives = np.sum((predicted == class_id) & (labels == class_id))
        precision = true_positives / np.sum(predicted == class_id)
        recall = true_positives / np.sum(labels == class_id)
        f1_scores.append(2 * precision * recall / (precision + recall))
        per_class = overall[evaluation.TOP_1_SUB_KEY.format(class_id=class_id)]
        assert per_class["precision"]["doubleValue"] == pytest.approx(precision), class_id
        assert per_class["recall"]["doubleValue"] == pytest.approx(recall), class_id
        mean_probability = np.mean([p[class_id] for _, p, _ in SCORED])
        assert overall[f"classId:{class_id}"]["calibration"]["doubleValue"] == pytest.approx(
            mean_probability / np.mean(labels == class_id), rel=1e-4), class_id
        assert per_class["f1_score"]["doubleValue"] == pytest.approx(f1_scores[-1]), class_id
    assert evaluation.macro_f1(overall, 3) == pytest.approx(np.mean(f1_scores))

    plots = tfma.load_plots(output_path)
    overall_plot = [plot for plot in plots if not plot.slice_key.single_slice_keys][0]
    matrix = overall_plot.plot_keys_and_values[0].value.multi_class_confusion_matrix_at_thresholds
    counts = {(entry.actual_class_id, entry.predicted_class_id): entry.num_weighted_examples
              for entry in matrix.matrices[0].entries}
    for actual in range(3):
        for guess in range(3):
            expected = np.sum((labels == actual) & (predicted == guess))
            assert counts.get((actual, guess), 0) == expected, (actual, guess)


def test_metrics_sliced_by_text_length(tmp_path):
    slices, _ = _scored_metrics(tmp_path, _config(labels=("a", "b", "c")))
    short = slices[(("text_length_bucket", "0-4"),)][""][""]
    longer = slices[(("text_length_bucket", "5-9"),)][""][""]
    assert short["example_count"]["doubleValue"] == 7
    assert longer["example_count"]["doubleValue"] == 3
    # The three 6-word rows are all predicted right.
    assert longer["accuracy"]["doubleValue"] == pytest.approx(1.0)


def test_change_threshold_metrics_named():
    eval_config = evaluation.build_eval_config(_config(max_accuracy_drop=0.05))
    assert evaluation.change_threshold_metrics(eval_config) == ["accuracy"]
    assert evaluation.change_threshold_metrics(evaluation.build_eval_config(_config())) == []


def test_config_without_thresholds_rejected():
    with pytest.raises(ConfigError, match="set accuracy_lower_bound or auc_lower_bound"):
        config_from_dict(dict(module_helpers.make_config("/backbone").to_dict(), evaluation={}))


def test_text_length_buckets_ranges():
    from components.transform import text_length_buckets

    texts = tf.constant(["", "a b c d", "a b c d e", " ".join(["w"] * 19), " ".join(["w"] * 20),
                         " ".join(["w"] * 45)])
    assert text_length_buckets([texts]).numpy().tolist() == [
        b"0-4", b"0-4", b"5-9", b"10-19", b"20-39", b"40+"]
    # A text pair counts the words of both texts.
    pairs = text_length_buckets([tf.constant(["a b c", "x"]), tf.constant(["d e", ""])])
    assert pairs.numpy().tolist() == [b"5-9", b"0-4"]


def test_executor_logs_skipped_change_thresholds(monkeypatch, caplog):
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    # Only the logging is under test: TFX's own Do (the TFMA run) does nothing here.
    monkeypatch.setattr(evaluation.evaluator_executor.Executor, "Do",
                        lambda self, input_dict, output_dict, exec_properties: None)
    eval_config = evaluation.build_eval_config(_config(max_accuracy_drop=0.05))
    properties = {"eval_config": proto_utils.proto_to_json(eval_config)}

    with caplog.at_level("WARNING"):
        evaluation.Executor().Do({}, {}, properties)
    assert "skipping the change thresholds on accuracy" in caplog.text

    caplog.clear()
    with caplog.at_level("WARNING"):
        evaluation.Executor().Do({"baseline_model": [standard_artifacts.Model()]}, {}, properties)
    assert "skipping the change thresholds" not in caplog.text
