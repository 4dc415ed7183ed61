"""Compare freeze schedules on SST-2 with 1,000 training rows: frozen, full and gradual.

Draws a seeded sample of `--train_rows` rows from SST-2 train, runs Transform over it and
over the full dev set once, then trains each schedule with each training seed through
`components.trainer.train_model` and evaluates on all dev rows. Every schedule gets the same
number of steps:

- frozen features: `head` for all steps (the backbone never changes);
- full fine-tuning: `all` for all steps;
- gradual: `head`, then `top: 2`, then `all`, a third of the steps each.

The training seed sets the head's initial weights, the shuffle order and the dropout masks;
the row sample stays the same for every run. Prints the dev accuracy of each run and the
mean and sample standard deviation per schedule, and writes them to `--work_dir/results.json`.

    .venv/bin/python bench/freeze_ablation.py --backbone backbones/minilm \
        --work_dir outputs/bench_freeze_ablation
"""

import csv
import dataclasses
import json
import os
import random
import shutil
import statistics
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
flags.DEFINE_string("work_dir", "outputs/bench_freeze_ablation", "Folder for all outputs.")
flags.DEFINE_integer("train_rows", 1000, "Size of the seeded sample of training rows.")
flags.DEFINE_integer("sample_seed", 0, "Seed of the training-row sample.")
flags.DEFINE_integer("steps", 90, "Train steps of every schedule (a multiple of 3).")
flags.DEFINE_list("seeds", ["1", "2", "3"], "Training seeds.")
flags.DEFINE_multi_string("set", [], "Config overrides, e.g. training.batch_size=16.")
flags.DEFINE_bool("features_only", False, "Print how much the frozen backbone's features vary "
                  "across dev sentences, then stop (needs the Transform output of a full run).")


def read_sst2(path: str) -> list:
    """Return the rows of an SST-2 TSV file (label first, then the sentence) as raw features."""
    with open(path, encoding="utf-8", newline="") as tsv_file:
        reader = csv.reader(tsv_file, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return [{"text": [text.encode()], "label": [label.encode()]} for label, text in reader]


def print_feature_spread(config, dev_files, batches: int = 4) -> None:
    """Print how much `pooled_output` and mean-pooled `sequence_output` vary across sentences.

    A frozen-features head can only separate classes that its input features separate, so
    features that barely change between sentences explain a head-only run at chance.
    """
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_hub as hub  # pylint: disable=import-outside-toplevel

    from components import dataset as dataset_lib  # pylint: disable=import-outside-toplevel
    from components import features  # pylint: disable=import-outside-toplevel

    backbone = hub.KerasLayer(config.backbone.handle)
    pooled, mean_pooled = [], []
    for inputs, _ in dataset_lib.eval_dataset(dev_files, 64).take(batches):
        outputs = backbone(inputs, training=False)
        mask = tf.cast(inputs[features.INPUT_MASK], tf.float32)[:, :, tf.newaxis]
        pooled.append(outputs["pooled_output"].numpy())
        mean_pooled.append((tf.reduce_sum(outputs["sequence_output"] * mask, axis=1)
                            / tf.reduce_sum(mask, axis=1)).numpy())
    for name, values in (("pooled_output", pooled), ("mean of sequence_output", mean_pooled)):
        values = np.concatenate(values)
        print(f"{name} over {len(values)} dev sentences: mean per-dimension std across "
              f"sentences {values.std(axis=0).mean():.4f}, mean |value| "
              f"{np.abs(values).mean():.4f}", flush=True)


def schedules(steps: int) -> dict:
    """Return the phases of each compared schedule, all with `steps` steps in total."""
    from pipeline.config import PhaseConfig  # pylint: disable=import-outside-toplevel

    third = steps // 3
    return {
        "frozen (head)": [PhaseConfig("head", steps)],
        "full (all)": [PhaseConfig("all", steps)],
        "gradual (head, top: 2, all)": [PhaseConfig("head", third), PhaseConfig("top: 2", third),
                                        PhaseConfig("all", steps - 2 * third)],
    }


def main(argv):
    del argv
    import module_helpers  # pylint: disable=import-outside-toplevel

    from components import trainer  # pylint: disable=import-outside-toplevel
    from pipeline.config import load_config  # pylint: disable=import-outside-toplevel

    if FLAGS.steps % 3:
        raise app.UsageError(f"--steps {FLAGS.steps} is not a multiple of 3; the gradual "
                             f"schedule splits it into three equal phases")
    config = load_config(FLAGS.config, [f"backbone.handle={FLAGS.backbone}"] + FLAGS.set)
    rows = read_sst2(os.path.join(FLAGS.data_dir, "train.tsv"))
    sample = random.Random(FLAGS.sample_seed).sample(rows, FLAGS.train_rows)
    dev_rows = read_sst2(os.path.join(FLAGS.data_dir, "dev.tsv"))

    started = time.monotonic()
    train_dir = os.path.join(FLAGS.work_dir, "train")
    dev_dir = os.path.join(FLAGS.work_dir, "dev")
    dev_files = [os.path.join(dev_dir, "transformed", "part*")]
    if FLAGS.features_only:
        print_feature_spread(config, dev_files)
        return
    _, transform_dir = module_helpers.analyze_and_transform(config, sample, train_dir,
                                                            read_back=False)
    module_helpers.analyze_and_transform(config, dev_rows, dev_dir, read_back=False)
    logging.info("Transform took %.0f s.", time.monotonic() - started)
    train_files = [os.path.join(train_dir, "transformed", "part*")]

    results = []
    for seed in (int(value) for value in FLAGS.seeds):
        for name, phases in schedules(FLAGS.steps).items():
            training = dataclasses.replace(config.training, phases=phases, seed=seed)
            run_config = dataclasses.replace(config, training=training)
            run_dir = os.path.join(FLAGS.work_dir, "runs", f"{name.split()[0]}-{seed}")
            # A checkpoint left by an earlier invocation would make this run resume.
            shutil.rmtree(run_dir, ignore_errors=True)
            run_started = time.monotonic()
            trained = trainer.train_model(run_config, transform_dir, train_files, dev_files,
                                          run_dir)
            evaluation = trained.history.evaluation
            results.append({"schedule": name, "seed": seed, "accuracy": evaluation["accuracy"],
                            "loss": evaluation["loss"], "examples": evaluation["examples"],
                            "seconds": round(time.monotonic() - run_started, 1)})
            print(f"{name}, seed {seed}: dev accuracy {evaluation['accuracy']:.4f} on "
                  f"{evaluation['examples']} rows, {results[-1]['seconds']:.0f} s", flush=True)

    with open(os.path.join(FLAGS.work_dir, "results.json"), "w", encoding="utf-8") as out:
        json.dump(results, out, indent=1)
    print(f"\n{FLAGS.train_rows} training rows, {FLAGS.steps} steps of batch "
          f"{config.training.batch_size}, seeds {FLAGS.seeds}")
    print("| schedule | dev accuracy per seed | mean | std |")
    print("| --- | --- | --- | --- |")
    for name in schedules(FLAGS.steps):
        accuracies = [result["accuracy"] for result in results if result["schedule"] == name]
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        print(f"| {name} | {', '.join(f'{value:.4f}' for value in accuracies)} | "
              f"{statistics.mean(accuracies):.4f} | {spread:.4f} |")


if __name__ == "__main__":
    app.run(main)
