"""Measure the Trainer module code on SST-2: step times with and without trimming, accuracy.

Runs Transform (tf.Transform on the in-memory Beam runner) over the SST-2 train and dev
files, then `components.trainer.train_and_export` with the phases of the given config, and
prints the step time of padded (max_seq_length) and length-trimmed batches.

    .venv/bin/python bench/sst2_trainer.py --config configs/sst2.yaml \
        --backbone backbones/minilm --work_dir outputs/bench_sst2
"""

import csv
import os
import shutil
import sys
import time

from absl import app, flags, logging

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from pipeline.environment import configure_environment  # noqa: E402

configure_environment()

FLAGS = flags.FLAGS
flags.DEFINE_string("config", "configs/sst2.yaml", "Experiment config (YAML).")
flags.DEFINE_string("backbone", "backbones/minilm", "Backbone SavedModel directory.")
flags.DEFINE_string("data_dir", "../shared/datasets/sst2", "Folder with train.tsv and dev.tsv.")
flags.DEFINE_string("work_dir", "outputs/bench_sst2", "Folder for transform output and model.")
flags.DEFINE_integer("train_rows", 0, "Use only the first N training rows (0: all).")
flags.DEFINE_integer("timing_steps", 10, "Steps per step-time measurement.")
flags.DEFINE_multi_string("set", [], "Config overrides, e.g. training.batch_size=16.")
flags.DEFINE_bool("timing_only", False, "Measure step times only; skip training to the end.")


def read_tsv(path: str, limit: int = 0) -> list:
    with open(path, encoding="utf-8", newline="") as tsv_file:
        reader = csv.reader(tsv_file, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        rows = [{"text": [text.encode()], "label": [label.encode()]} for label, text in reader]
    return rows[:limit] if limit else rows


def time_steps(config, files, phase: str, trim: bool, steps: int, summary_dir: str) -> float:
    """Return seconds per train step of a `phase` (head, top: N, all) on the real data."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from components import dataset as dataset_lib  # pylint: disable=import-outside-toplevel
    from components import freeze  # pylint: disable=import-outside-toplevel
    from components.backbone import loading  # pylint: disable=import-outside-toplevel
    from components.model import Classifier  # pylint: disable=import-outside-toplevel
    from components.optimization import GroupedAdamW  # pylint: disable=import-outside-toplevel
    from components.training_loop import PhasedTrainer  # pylint: disable=import-outside-toplevel
    from pipeline.config import PhaseConfig  # pylint: disable=import-outside-toplevel

    training = config.training
    backbone = loading.resolve_backbone(config.backbone.handle)
    classifier = Classifier(backbone.path, 2, training.dropout, training.seed)
    phases = freeze.plan_phases([PhaseConfig(phase, steps + 1)], classifier.backbone_variables,
                                classifier.head_variables, backbone.num_layers)
    step_var = tf.Variable(0, dtype=tf.int64)
    optimizer = GroupedAdamW(training, steps + 1, backbone.num_layers, step_var)
    optimizer.build(freeze.tagged_variables(phases, classifier.backbone_variables))
    trainer = PhasedTrainer(classifier, optimizer, step_var, training.clip_norm,
                            summary_dir)
    train_step = trainer.make_train_step(phases[0])
    if trim:
        batches = iter(dataset_lib.train_dataset(files, training.batch_size,
                                                 config.backbone.max_seq_length, training.seed))
    else:
        padded = dataset_lib.eval_dataset(files, training.batch_size)
        length = config.backbone.max_seq_length
        batches = iter(padded.map(lambda inputs, label: (
            {name: tf.pad(value, [[0, 0], [0, length - tf.shape(value)[1]]])
             for name, value in inputs.items()}, label)).repeat())
    train_step(*next(batches))
    started = time.monotonic()
    for _ in range(steps):
        train_step(*next(batches))
    return (time.monotonic() - started) / steps


def main(argv):
    del argv
    import module_helpers  # pylint: disable=import-outside-toplevel

    from components import trainer  # pylint: disable=import-outside-toplevel
    from pipeline.config import load_config  # pylint: disable=import-outside-toplevel

    config = load_config(FLAGS.config, [f"backbone.handle={FLAGS.backbone}"] + FLAGS.set)
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    started = time.monotonic()
    train_dir = os.path.join(FLAGS.work_dir, "train")
    _, transform_dir = module_helpers.analyze_and_transform(
        config, read_tsv(os.path.join(FLAGS.data_dir, "train.tsv"), FLAGS.train_rows),
        train_dir, read_back=False)
    # Dev rows go through the same transform graph (analysis on dev only recomputes nothing
    # because the label vocabulary is configured).
    dev_dir = os.path.join(FLAGS.work_dir, "dev")
    module_helpers.analyze_and_transform(
        config, read_tsv(os.path.join(FLAGS.data_dir, "dev.tsv")), dev_dir, read_back=False)
    logging.info("Transform took %.0f s.", time.monotonic() - started)

    train_files = [os.path.join(train_dir, "transformed", "part*")]
    for phase, trim in (("all", False), ("all", True), ("top: 2", True), ("head", True)):
        seconds = time_steps(config, train_files, phase, trim, FLAGS.timing_steps,
                             os.path.join(FLAGS.work_dir, "timing_summaries"))
        batches = ("trimmed+bucketed" if trim
                   else f"padded to {config.backbone.max_seq_length}")
        print(f"{phase} step, batch {config.training.batch_size}, {batches}: {seconds:.3f} s",
              flush=True)
    if FLAGS.timing_only:
        return

    run_dir = os.path.join(FLAGS.work_dir, "run")
    # A checkpoint left there by an earlier invocation would make training resume from it.
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.monotonic()
    history = trainer.train_and_export(
        config, transform_dir, train_files, [os.path.join(dev_dir, "transformed", "part*")],
        os.path.join(FLAGS.work_dir, "serving"), run_dir)
    print(f"training + export: {time.monotonic() - started:.0f} s", flush=True)
    for phase in history.phases:
        print(f"phase {phase['name']}: {phase['seconds_per_step']:.3f} s/step", flush=True)
    print(f"dev: {history.evaluation}", flush=True)


if __name__ == "__main__":
    app.run(main)
