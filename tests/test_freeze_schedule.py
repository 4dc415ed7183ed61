"""Freeze schedule: what each phase changes, effective learning rates, TensorBoard records,
resuming from a checkpoint, distribution strategies and mixed precision."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import module_helpers
from components import dataset as dataset_lib
from components import freeze, optimization, trainer
from components.backbone import checkpoint as checkpoint_lib
from components.backbone.export import export_backbone
from components.backbone.loading import resolve_backbone
from components.backbone.tiny import write_tiny_checkpoint
from components.model import Classifier
from components.training_loop import History, PhasedTrainer
from pipeline.config import ConfigError, PhaseConfig

# The variable names of the official TF Hub BERT encoders (TF Model Garden's `BertEncoder`,
# e.g. bert_en_uncased_L-12_H-768_A-12), without the `:0` suffix.
OFFICIAL_EMBEDDING_NAMES = {
    "word_embeddings/embeddings", "position_embedding/embeddings",
    "type_embeddings/embeddings", "embeddings/layer_norm/gamma", "embeddings/layer_norm/beta",
}
OFFICIAL_LAYER_NAMES = {
    f"{block}/{kind}"
    for block in ("self_attention/query", "self_attention/key", "self_attention/value",
                  "self_attention/attention_output", "intermediate", "output")
    for kind in ("kernel", "bias")
} | {f"{norm}/{kind}" for norm in ("self_attention_layer_norm", "output_layer_norm")
     for kind in ("gamma", "beta")}
OFFICIAL_POOLER_NAMES = {"pooler_transform/kernel", "pooler_transform/bias"}


def _export_tiny(target_dir: str, *, num_layers: int, dropout: float):
    """Export a random tiny BERT with `num_layers` layers and the given dropout rates."""
    checkpoint_dir = f"{target_dir}-checkpoint"
    write_tiny_checkpoint(checkpoint_dir, num_layers=num_layers)
    config_path = os.path.join(checkpoint_dir, checkpoint_lib.CONFIG_FILE)
    with open(config_path, encoding="utf-8") as config_file:
        config = json.load(config_file)
    config["hidden_dropout_prob"] = dropout
    config["attention_probs_dropout_prob"] = dropout
    with open(config_path, "w", encoding="utf-8") as config_file:
        json.dump(config, config_file)
    return export_backbone(checkpoint_dir, target_dir)


@pytest.fixture(scope="module")
def three_layer_backbone(tmp_path_factory):
    """A tiny 3-layer backbone, so that `top: 2` leaves one layer and the embeddings frozen."""
    return _export_tiny(str(tmp_path_factory.mktemp("backbones") / "three"), num_layers=3,
                        dropout=0.1)


@pytest.fixture(scope="module")
def no_dropout_backbone(tmp_path_factory):
    """A tiny 2-layer backbone without dropout: its training steps are deterministic."""
    return _export_tiny(str(tmp_path_factory.mktemp("backbones") / "no-dropout"),
                        num_layers=2, dropout=0.0)


@pytest.fixture(scope="module")
def transformed(tiny_backbone, tmp_path_factory):
    """Transformed toy sentiment rows: (transform output dir, file patterns).

    Every tiny backbone has the same vocabulary, so one transform output serves them all.
    """
    work_dir = str(tmp_path_factory.mktemp("transformed"))
    config = module_helpers.make_config(tiny_backbone.path)
    _, transform_dir = module_helpers.analyze_and_transform(
        config, module_helpers.sentiment_rows(24), work_dir, read_back=False)
    return transform_dir, [os.path.join(work_dir, "transformed", "part*")]


def _snapshot(variables):
    return {variable.name: variable.numpy().copy() for variable in variables}


def _changed(before, after):
    return {name for name in before if not np.array_equal(before[name], after[name])}


def _strip(name: str) -> str:
    return name[:-len(":0")] if name.endswith(":0") else name


def test_backbone_uses_official_hub_names(three_layer_backbone):
    classifier = Classifier(three_layer_backbone.path, 2, 0.1, 0)
    names = {_strip(variable.name) for variable in classifier.backbone_variables}
    expected = OFFICIAL_EMBEDDING_NAMES | OFFICIAL_POOLER_NAMES | {
        f"transformer/layer_{index}/{name}" for index in range(3)
        for name in OFFICIAL_LAYER_NAMES}
    assert names == expected


def test_each_phase_changes_only_its_variables(three_layer_backbone, transformed, tmp_path):
    _, files = transformed
    config = module_helpers.make_config(three_layer_backbone.path, batch_size=4,
                                        learning_rate=1e-2, head_learning_rate=1e-2,
                                        warmup_fraction=0.0, weight_decay=0.01)
    classifier = Classifier(three_layer_backbone.path, 2, 0.1, 0)
    phase_configs = [PhaseConfig("head", 3), PhaseConfig("top: 2", 3), PhaseConfig("all", 3)]
    phases = freeze.plan_phases(phase_configs, classifier.backbone_variables,
                                classifier.head_variables, num_layers=3)
    step = tf.Variable(0, dtype=tf.int64)
    optimizer = optimization.GroupedAdamW(config.training, phases[-1].end_step, 3, step)
    optimizer.build(freeze.tagged_variables(phases, classifier.backbone_variables))
    loop = PhasedTrainer(classifier, optimizer, step, config.training.clip_norm, str(tmp_path))
    batches = iter(dataset_lib.train_dataset(files, 4, 16, 0))
    everything = classifier.backbone_variables + classifier.head_variables
    snapshots = [_snapshot(everything)]
    for phase in phases:
        loop.run_phase(phase, batches, History(), log_every=1)
        snapshots.append(_snapshot(everything))

    head = {variable.name for variable in classifier.head_variables}
    backbone = {variable.name for variable in classifier.backbone_variables}
    top_two = {name for name in backbone if name.startswith(
        ("transformer/layer_1/", "transformer/layer_2/", "pooler_transform/"))}
    # Softmax ignores a bias added to every key, so the key bias gets a gradient that is
    # zero up to rounding. It gets no weight decay either, so it may or may not move.
    key_biases = {name for name in backbone if name.endswith("self_attention/key/bias:0")}
    assert len(top_two) == 2 * 16 + 2
    assert len(key_biases) == 3

    # Head only: every backbone variable stays bit-identical.
    assert _changed(snapshots[0], snapshots[1]) == head
    # top: 2 changes the two top layers, the pooler and the head, and nothing else.
    top_changed = _changed(snapshots[1], snapshots[2])
    assert top_changed <= top_two | head
    assert (top_two | head) - top_changed <= key_biases
    # all changes every trainable variable.
    all_changed = _changed(snapshots[2], snapshots[3])
    assert all_changed <= backbone | head
    assert (backbone | head) - all_changed <= key_biases


def _expected_factor(step: int, total: int, warmup: int, decay: str) -> float:
    """The schedule's factor on the peak rate, computed independently of the code."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(max((step - warmup) / (total - warmup), 0.0), 1.0)
    if decay == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + np.cos(np.pi * progress))


@pytest.mark.parametrize("decay", ["linear", "cosine"])
def test_effective_learning_rate_per_group(three_layer_backbone, decay):
    """The first Adam update of a variable under a unit gradient is its learning rate."""
    total, warmup = 40, 8
    config = module_helpers.make_config(
        three_layer_backbone.path, learning_rate=1e-3, head_learning_rate=4e-3,
        layer_lr_decay=0.5, warmup_fraction=warmup / total, decay=decay, weight_decay=0.0,
        phases=[{"train": "all", "steps": total}])
    peaks = {"head": 4e-3, "pooler": 1e-3, "layer_2": 1e-3, "layer_1": 5e-4,
             "layer_0": 2.5e-4, "embeddings": 1.25e-4}
    for sampled_step in (0, 3, 7, 8, 17, 30, 39):
        classifier = Classifier(three_layer_backbone.path, 2, 0.1, 0)
        phases = freeze.plan_phases(config.training.phases, classifier.backbone_variables,
                                    classifier.head_variables, num_layers=3)
        global_step = tf.Variable(sampled_step, dtype=tf.int64)
        optimizer = optimization.GroupedAdamW(config.training, total, 3, global_step)
        tagged = freeze.tagged_variables(phases, classifier.backbone_variables)
        optimizer.build(tagged)
        before = _snapshot([variable for variable, _ in tagged])
        # Adam's first update is rate * g / (|g| + epsilon'), so a unit gradient moves each
        # element by the rate, up to a relative 3e-5 from epsilon (1e-6 / sqrt(1 - beta_2)).
        optimizer.apply_gradients([(tf.ones_like(variable), variable)
                                   for variable, _ in tagged])
        factor = _expected_factor(sampled_step, total, warmup, decay)
        seen_groups = set()
        for variable, group in tagged:
            expected = peaks[group] * factor
            assert optimizer.learning_rate_of(variable) == pytest.approx(expected, rel=1e-5)
            moved = before[variable.name] - variable.numpy()
            # float32 subtraction rounds to the spacing of the variable's values.
            rounding = float(np.max(np.spacing(np.abs(before[variable.name]))))
            np.testing.assert_allclose(moved, expected, rtol=1e-4, atol=rounding,
                                       err_msg=variable.name)
            seen_groups.add(group)
        assert seen_groups == set(peaks)


def _scalar_events(run_dir: str):
    """Return {tag: [(step, value)]} and {tag: [(step, text)]} from the event files."""
    scalars, texts = {}, {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                if value.metadata.plugin_data.plugin_name == "text":
                    texts.setdefault(value.tag, []).append((event.step, array.item().decode()))
                else:
                    scalars.setdefault(value.tag, []).append((event.step, float(array)))
    return scalars, texts


def _train(config, transformed, run_dir: str):
    transform_dir, files = transformed
    return trainer.train_model(config, transform_dir, files, files, run_dir)


def test_phase_changes_written_to_tensorboard(three_layer_backbone, transformed, tmp_path):
    config = module_helpers.make_config(
        three_layer_backbone.path, batch_size=4,
        phases=[{"train": "head", "steps": 2}, {"train": "top: 2", "steps": 3},
                {"train": "all", "steps": 2}])
    _train(config, transformed, str(tmp_path))
    scalars, texts = _scalar_events(str(tmp_path))

    assert scalars["phase/index"] == [(0, 0.0), (2, 1.0), (5, 2.0)]
    assert scalars["phase/trainable_variables"] == [(0, 2.0), (2, 2 * 16 + 2 + 2),
                                                    (5, 3 * 16 + 2 + 5 + 2)]
    assert scalars["phase/lowest_trainable_layer"] == [(0, -1.0), (2, 1.0), (5, -1.0)]
    steps = [step for step, _ in texts["phase/groups"]]
    assert steps == [0, 2, 5]
    top_table = texts["phase/groups"][1][1]
    assert "| layer_1 | 16 |" in top_table
    assert "| layer_2 | 16 |" in top_table
    assert "layer_0" not in top_table
    assert "| head | 2 |" in top_table


def _final_variables(trained):
    classifier = trained.classifier
    return _snapshot(classifier.backbone_variables + classifier.head_variables)


def test_resume_matches_uninterrupted_run(no_dropout_backbone, transformed, tmp_path,
                                          monkeypatch):
    config = module_helpers.make_config(
        no_dropout_backbone.path, batch_size=4, checkpoint_every_steps=3,
        learning_rate=1e-3, head_learning_rate=1e-2,
        phases=[{"train": "head", "steps": 4}, {"train": "top: 1", "steps": 4},
                {"train": "all", "steps": 4}])
    straight = _train(config, transformed, str(tmp_path / "straight"))

    # "Crash" in the middle of the second phase: the input ends after 7 batches. The last
    # checkpoint is at step 6, so the resumed run repeats step 7.
    real_train_dataset = dataset_lib.train_dataset
    monkeypatch.setattr(dataset_lib, "train_dataset",
                        lambda *args: real_train_dataset(*args).take(7))
    interrupted_dir = str(tmp_path / "interrupted")
    with pytest.raises(StopIteration):
        _train(config, transformed, interrupted_dir)
    checkpoint_dir = os.path.join(interrupted_dir, trainer.CHECKPOINT_SUBDIR)
    assert tf.train.latest_checkpoint(checkpoint_dir).endswith("-6")
    monkeypatch.setattr(dataset_lib, "train_dataset", real_train_dataset)

    resumed = _train(config, transformed, interrupted_dir)
    assert tf.train.latest_checkpoint(checkpoint_dir).endswith("-12")
    straight_values = _final_variables(straight)
    resumed_values = _final_variables(resumed)
    assert set(resumed_values) == set(straight_values)
    for name, value in straight_values.items():
        np.testing.assert_array_equal(resumed_values[name], value, err_msg=name)
    assert [record["step"] for record in resumed.history.log] == list(range(1, 13))
    assert [record["loss"] for record in resumed.history.log] == [
        record["loss"] for record in straight.history.log]
    assert [phase["name"] for phase in resumed.history.phases] == ["0:head", "1:top:1", "2:all"]
    assert resumed.history.evaluation == straight.history.evaluation


def test_mirrored_matches_default(no_dropout_backbone, transformed, tmp_path):
    phases = [{"train": "head", "steps": 2}, {"train": "all", "steps": 3}]
    default = _train(module_helpers.make_config(no_dropout_backbone.path, batch_size=4,
                                                phases=phases),
                     transformed, str(tmp_path / "default"))
    mirrored = _train(module_helpers.make_config(no_dropout_backbone.path, batch_size=4,
                                                 phases=phases, distribution="mirrored"),
                      transformed, str(tmp_path / "mirrored"))
    assert isinstance(mirrored.classifier.head_variables[0], tf.distribute.DistributedValues)
    default_values = _final_variables(default)
    mirrored_values = _final_variables(mirrored)
    assert set(mirrored_values) == set(default_values)
    for name, value in default_values.items():
        np.testing.assert_allclose(mirrored_values[name], value, rtol=1e-6, atol=1e-7,
                                   err_msg=name)
    assert mirrored.history.evaluation["accuracy"] == default.history.evaluation["accuracy"]


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_head_float32(tiny_backbone, transformed, tmp_path, policy):
    config = module_helpers.make_config(tiny_backbone.path, batch_size=4,
                                        mixed_precision=policy,
                                        phases=[{"train": "head", "steps": 2},
                                                {"train": "all", "steps": 2}])
    trained = _train(config, transformed, str(tmp_path))
    head_dense = trained.classifier.head.get_layer("head_dense")
    assert head_dense.compute_dtype == "float32"
    assert head_dense.variable_dtype == "float32"
    assert trained.classifier.head.get_layer("head_dropout").compute_dtype == "float32"
    assert all(np.isfinite(record["loss"]) for record in trained.history.log)
    # The global policy is restored after training.
    assert tf_keras.mixed_precision.global_policy().name == "float32"


def test_float16_wraps_optimizers_in_loss_scaling(tiny_backbone):
    config = module_helpers.make_config(tiny_backbone.path,
                                        phases=[{"train": "all", "steps": 4}])
    classifier = Classifier(tiny_backbone.path, 2, 0.1, 0)
    phases = freeze.plan_phases(config.training.phases, classifier.backbone_variables,
                                classifier.head_variables, num_layers=2)
    optimizer = optimization.GroupedAdamW(config.training, 4, 2, tf.Variable(0, dtype=tf.int64),
                                          loss_scale=True)
    optimizer.build(freeze.tagged_variables(phases, classifier.backbone_variables))
    wrapped = optimizer.checkpoint_objects.values()
    assert all(isinstance(item, tf_keras.mixed_precision.LossScaleOptimizer) for item in wrapped)
    assert float(optimizer.loss_scale) == 2.0 ** 15


@pytest.mark.parametrize("key, value, message", [
    ("distribution", "tpu", "'tpu' is not one of default, mirrored"),
    ("mixed_precision", "float16", "'float16' is not null or one of mixed_float16"),
    ("checkpoint_every_steps", 0, "must be > 0"),
])
def test_config_rejects_invalid_switches(tiny_backbone, key, value, message):
    with pytest.raises(ConfigError, match=message):
        module_helpers.make_config(tiny_backbone.path, **{key: value})


def test_too_deep_schedule_rejected(tiny_backbone):
    config = module_helpers.make_config(
        tiny_backbone.path, phases=[{"train": "head", "steps": 2}, {"train": "top: 3", "steps": 2}])
    with pytest.raises(ValueError, match=r"phases\[1\].train is 'top: 3' but the backbone has 2"):
        freeze.check_schedule_depth(config)
    deep_enough = module_helpers.make_config(
        tiny_backbone.path, phases=[{"train": "top: 2", "steps": 2}])
    assert freeze.check_schedule_depth(deep_enough) == resolve_backbone(tiny_backbone.path).num_layers


def test_local_runner_checks_depth_first(tiny_backbone, tmp_path):
    from pipeline import local_runner  # pylint: disable=import-outside-toplevel

    config = module_helpers.make_config(tiny_backbone.path,
                                        phases=[{"train": "top: 5", "steps": 2}])
    output_dir = tmp_path / "output"
    config.output.dir = str(output_dir)
    with pytest.raises(ValueError, match="'top: 5' but the backbone has 2 layers"):
        local_runner.run(config)
    # The check ran before the data directory was resolved and before any output.
    assert not output_dir.exists()
