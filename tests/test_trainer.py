"""Trainer module code: freeze phases, optimizer groups, schedule, export and signatures."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

import module_helpers
from components import dataset as dataset_lib
from components import freeze, optimization, trainer
from components.backbone.loading import resolve_backbone
from components.model import Classifier
from components.training_loop import History, PhasedTrainer
from pipeline.config import PhaseConfig


@pytest.fixture(scope="module")
def transformed(tiny_backbone, tmp_path_factory):
    """Transformed toy sentiment rows: (config, transform dir, file patterns)."""
    work_dir = str(tmp_path_factory.mktemp("transformed"))
    config = module_helpers.make_config(tiny_backbone.path, batch_size=4)
    _, transform_dir = module_helpers.analyze_and_transform(
        config, module_helpers.sentiment_rows(24), work_dir, read_back=False)
    return config, transform_dir, [os.path.join(work_dir, "transformed", "part*")]


@pytest.fixture(scope="module")
def exported(tiny_backbone, tmp_path_factory):
    """A classifier trained for a few steps on every kind of phase, then exported."""
    phases = [{"train": "head", "steps": 10}, {"train": "top: 1", "steps": 5},
              {"train": "all", "steps": 60}]
    return module_helpers.train_tiny_classifier(
        tiny_backbone.path, str(tmp_path_factory.mktemp("exported")),
        module_helpers.sentiment_rows(24), phases=phases, batch_size=4,
        learning_rate=1e-2, head_learning_rate=1e-2, warmup_fraction=0.0)


def _snapshot(variables):
    return {variable.name: variable.numpy().copy() for variable in variables}


def _run_phases(config, files, tmp_path, phase_configs):
    """Train phase by phase; return the classifier and variable snapshots around each phase."""
    backbone = resolve_backbone(config.backbone.handle)
    classifier = Classifier(backbone.path, 2, config.training.dropout, config.training.seed)
    phases = freeze.plan_phases(phase_configs, classifier.backbone_variables,
                                classifier.head_variables, backbone.num_layers)
    step = tf.Variable(0, dtype=tf.int64)
    optimizer = optimization.GroupedAdamW(config.training, phases[-1].end_step,
                                          backbone.num_layers, step)
    optimizer.build(freeze.tagged_variables(phases, classifier.backbone_variables))
    loop = PhasedTrainer(classifier, optimizer, step, config.training.clip_norm, str(tmp_path))
    batches = iter(dataset_lib.train_dataset(files, 4, config.backbone.max_seq_length, 0))
    everything = classifier.backbone_variables + classifier.head_variables
    snapshots = [_snapshot(everything)]
    for phase in phases:
        loop.run_phase(phase, batches, History(), log_every=1)
        snapshots.append(_snapshot(everything))
    return classifier, snapshots


def _changed(before, after):
    return {name for name in before if not np.array_equal(before[name], after[name])}


def test_phases_change_only_their_variables(transformed, tmp_path):
    config, _, files = transformed
    phase_configs = [PhaseConfig("head", 2), PhaseConfig("top: 1", 2), PhaseConfig("all", 2)]
    classifier, snapshots = _run_phases(config, files, tmp_path, phase_configs)
    head = {variable.name for variable in classifier.head_variables}
    backbone = {variable.name for variable in classifier.backbone_variables}
    top = {name for name in backbone if "transformer/layer_1/" in name or "pooler" in name}
    assert len(top) > 2
    # Softmax is invariant to the key bias (it adds the same value to every logit of a
    # query), so its gradient is exactly zero; biases get no weight decay, so it never moves.
    key_biases = {name for name in backbone if name.endswith("self_attention/key/bias:0")}
    assert len(key_biases) == 2

    # Head only: every backbone variable stays bit-identical.
    assert _changed(snapshots[0], snapshots[1]) == head
    # top: 1 changes exactly the top layer, the pooler and the head.
    assert _changed(snapshots[1], snapshots[2]) == (top | head) - key_biases
    # all changes every trainable variable.
    assert _changed(snapshots[2], snapshots[3]) == (backbone | head) - key_biases


def test_top_phase_beyond_depth_raises(tiny_backbone):
    backbone = resolve_backbone(tiny_backbone.path)
    classifier = Classifier(backbone.path, 2, 0.1, 0)
    with pytest.raises(ValueError, match="'top: 3' but the backbone has 2 layers"):
        freeze.plan_phases([PhaseConfig("top: 3", 1)], classifier.backbone_variables,
                           classifier.head_variables, backbone.num_layers)


def test_layer_decay_and_head_rates(tiny_backbone):
    config = module_helpers.make_config(tiny_backbone.path, learning_rate=1e-4,
                                        head_learning_rate=1e-3, layer_lr_decay=0.5,
                                        phases=[{"train": "all", "steps": 10}])
    backbone = resolve_backbone(tiny_backbone.path)
    classifier = Classifier(backbone.path, 2, 0.1, 0)
    phases = freeze.plan_phases(config.training.phases, classifier.backbone_variables,
                                classifier.head_variables, backbone.num_layers)
    optimizer = optimization.GroupedAdamW(config.training, 10, backbone.num_layers,
                                          tf.Variable(0, dtype=tf.int64))
    peaks = optimizer.build(freeze.tagged_variables(phases, classifier.backbone_variables))
    assert peaks == pytest.approx({"head": 1e-3, "pooler": 1e-4, "layer_1": 1e-4,
                                   "layer_0": 5e-5, "embeddings": 2.5e-5})


@pytest.mark.parametrize("decay, middle", [("linear", 0.5), ("cosine", 0.5)])
def test_schedule_warmup_then_decay(decay, middle):
    step = tf.Variable(0, dtype=tf.int64)
    schedule = optimization.WarmupDecaySchedule(step, peak=2.0, total_steps=110,
                                                warmup_steps=10, decay=decay)
    rates = {}
    for value in (0, 4, 9, 10, 60, 110):
        step.assign(value)
        rates[value] = float(schedule())
    assert rates[0] == pytest.approx(0.2)
    assert rates[4] == pytest.approx(1.0)
    assert rates[9] == pytest.approx(2.0)
    assert rates[10] == pytest.approx(2.0)
    assert rates[60] == pytest.approx(2.0 * middle)
    assert rates[110] == pytest.approx(0.0, abs=1e-6)


def test_schedule_cosine_differs_from_linear():
    step = tf.Variable(35, dtype=tf.int64)
    linear = optimization.WarmupDecaySchedule(step, 1.0, 110, 10, "linear")
    cosine = optimization.WarmupDecaySchedule(step, 1.0, 110, 10, "cosine")
    # A quarter through the decay: linear 0.75, cosine (1 + cos(pi / 4)) / 2.
    assert float(linear()) == pytest.approx(0.75)
    assert float(cosine()) == pytest.approx((1 + np.cos(np.pi / 4)) / 2)


def test_weight_decay_skips_bias_and_layer_norm():
    assert optimization.uses_weight_decay("transformer/layer_0/intermediate/kernel:0")
    assert not optimization.uses_weight_decay("transformer/layer_0/intermediate/bias:0")
    assert not optimization.uses_weight_decay("transformer/layer_0/output_layer_norm/gamma:0")
    assert not optimization.uses_weight_decay("embeddings/layer_norm/beta:0")


def test_history_records_phases(exported):
    _, _, serving_dir, history = exported
    run_dir = os.path.join(os.path.dirname(serving_dir), "run")
    with open(os.path.join(run_dir, trainer.HISTORY_FILE), encoding="utf-8") as history_file:
        written = json.load(history_file)
    assert [(phase["start_step"], phase["end_step"]) for phase in written["phases"]] == [
        (0, 10), (10, 15), (15, 75)]
    assert written["phases"][0]["groups"] == {"head": 2}
    assert written["phases"][1]["lowest_layer"] == 1
    assert written["phases"][1]["groups"]["layer_1"] == 16
    assert [record["step"] for record in written["log"]] == list(range(1, 76))
    assert {record["phase"] for record in written["log"]} == {"0:head", "1:top:1", "2:all"}
    assert written["log"][-1]["learning_rate"] == pytest.approx(0.0, abs=1e-9)
    assert written["evaluation"]["examples"] == 24
    assert written == json.loads(json.dumps(history.__dict__))
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run_dir))


def _example(text: str, label: str = None) -> bytes:
    feature = {"text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode()]))}
    if label is not None:
        feature["label"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_signatures_agree_for_one_example(exported):
    _, _, serving_dir, _ = exported
    loaded = tf.saved_model.load(serving_dir)
    text = "good movie so"
    from_text = loaded.signatures["predict_text"](text=tf.constant([text]))
    from_example = loaded.signatures["serving_default"](examples=tf.constant([_example(text)]))

    probabilities = from_text["probabilities"].numpy()
    assert probabilities.shape == (1, 2)
    assert probabilities.dtype == np.float32
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(from_example["probabilities"].numpy(), probabilities, atol=1e-6)
    assert from_text["label"].numpy()[0] in (b"neg", b"pos")
    assert from_text["label"].numpy()[0] == from_example["label"].numpy()[0]
    assert from_text["label"].numpy()[0] == [b"neg", b"pos"][int(probabilities.argmax())]


def test_padding_does_not_change_predictions(exported):
    _, _, serving_dir, _ = exported
    predict = tf.saved_model.load(serving_dir).signatures["predict_text"]
    alone = predict(text=tf.constant(["bad movie"]))["probabilities"].numpy()
    batched = predict(text=tf.constant(["bad movie", "good movie so so so so so"]))
    np.testing.assert_allclose(batched["probabilities"].numpy()[:1], alone, atol=1e-5)


def test_model_learns_toy_task(exported):
    _, _, serving_dir, _ = exported
    predict = tf.saved_model.load(serving_dir).signatures["predict_text"]
    labels = predict(text=tf.constant(["good movie", "bad movie so"]))["label"].numpy()
    assert labels.tolist() == [b"pos", b"neg"]


def test_transform_features_returns_label_id(exported):
    _, _, serving_dir, _ = exported
    transform = tf.saved_model.load(serving_dir).signatures["transform_features"]
    outputs = transform(examples=tf.constant([_example("good movie", "pos"),
                                              _example("bad movie", "neg")]))
    assert outputs["label_id"].numpy().tolist() == [1, 0]
    assert outputs["input_word_ids"].shape == (2, 16)


def test_pair_model_predicts_text_pairs(tiny_backbone, tmp_path):
    rows = [{"text": [b"good"], "text_pair": [b"movie"], "label": [b"pos"]},
            {"text": [b"bad"], "text_pair": [b"movie"], "label": [b"neg"]}] * 4
    _, _, serving_dir, _ = module_helpers.train_tiny_classifier(
        tiny_backbone.path, str(tmp_path), rows, text_pair=True, batch_size=2)
    predict = tf.saved_model.load(serving_dir).signatures["predict_text"]
    assert set(predict.structured_input_signature[1]) == {"text", "text_pair"}
    outputs = predict(text=tf.constant(["good"]), text_pair=tf.constant(["movie"]))
    assert outputs["probabilities"].shape == (1, 2)


def test_fixed_shape_schema_serves(tiny_backbone, tmp_path):
    _, _, serving_dir, _ = module_helpers.train_tiny_classifier(
        tiny_backbone.path, str(tmp_path), module_helpers.sentiment_rows(8), fixed_shape=True,
        batch_size=2)
    loaded = tf.saved_model.load(serving_dir)
    from_text = loaded.signatures["predict_text"](text=tf.constant(["good movie"]))
    from_example = loaded.signatures["serving_default"](
        examples=tf.constant([_example("good movie")]))
    np.testing.assert_allclose(from_example["probabilities"].numpy(),
                               from_text["probabilities"].numpy(), atol=1e-6)
    transformed = loaded.signatures["transform_features"](
        examples=tf.constant([_example("bad movie", "neg")]))
    assert transformed["label_id"].numpy().tolist() == [0]


def test_reloads_in_fresh_process(exported):
    _, _, serving_dir, _ = exported
    in_process = tf.saved_model.load(serving_dir).signatures["predict_text"](
        text=tf.constant(["good movie"]))
    expected_label = in_process["label"].numpy()[0].decode()
    script = (
        "import sys, tensorflow as tf, tensorflow_text\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = m.signatures['predict_text'](text=tf.constant(['good movie']))\n"
        "print(out['label'].numpy()[0].decode(), out['probabilities'].shape)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", script, serving_dir], capture_output=True,
                            text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == f"{expected_label} (1, 2)"


def test_run_fn_rejects_step_mismatch(tiny_backbone):
    config = module_helpers.make_config(tiny_backbone.path)
    fn_args = types.SimpleNamespace(custom_config={"config": config.to_dict()}, train_steps=99)
    with pytest.raises(ValueError, match="TrainArgs.num_steps is 99"):
        trainer.run_fn(fn_args)
