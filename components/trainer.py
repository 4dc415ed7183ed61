"""Trainer module code: `run_fn` for TFX's generic Trainer.

Trains the TF Hub backbone and a classification head on the configured freeze schedule,
evaluates on the eval split, and exports the serving model with its signatures.
"""

import contextlib
import dataclasses
import json
import os
from typing import List, Optional

from pipeline.environment import configure_environment

configure_environment()

import tensorflow as tf  # noqa: E402  (TF_USE_LEGACY_KERAS must be set before TF loads)
import tensorflow_transform as tft
import tf_keras
from absl import logging

from components import dataset as dataset_lib
from components import freeze
from components.backbone.loading import resolve_backbone
from components.model import Classifier, ServingModule, export_serving_model, label_vocabulary
from components.optimization import GroupedAdamW
from components.training_loop import (History, PhasedTrainer, logging_interval,
                                       make_checkpoint, make_strategy)
from pipeline.config import PipelineConfig, config_from_dict

HISTORY_FILE = "history.json"


CHECKPOINT_SUBDIR = "checkpoints"


@dataclasses.dataclass
class TrainedModel:
    """A trained classifier, its label vocabulary and the run's history."""

    classifier: Classifier
    labels: List[str]
    history: History
    transform_output: tft.TFTransformOutput


@contextlib.contextmanager
def _precision_policy(name: Optional[str]):
    """Set the global Keras mixed-precision policy `name` (None: float32) for the block."""
    previous = tf_keras.mixed_precision.global_policy()
    tf_keras.mixed_precision.set_global_policy(name or "float32")
    try:
        yield
    finally:
        tf_keras.mixed_precision.set_global_policy(previous)


def _resumed_history(path: str, step: int) -> History:
    """Return the history written before `step`, or an empty one when there is none."""
    history = History()
    if step == 0 or not tf.io.gfile.exists(path):
        return history
    with tf.io.gfile.GFile(path) as history_file:
        written = json.load(history_file)
    history.log = [record for record in written["log"] if record["step"] <= step]
    history.phases = [phase for phase in written["phases"] if phase["end_step"] <= step]
    return history


def train_model(config: PipelineConfig, transform_output_dir: str, train_files, eval_files,
                model_run_dir: str, eval_steps=None) -> TrainedModel:
    """Train on `train_files` phase by phase and evaluate on `eval_files`.

    Writes TensorBoard summaries and `history.json` to `model_run_dir`, and checkpoints to
    `training.checkpoint_dir` (default `model_run_dir/checkpoints`). When that directory
    has a checkpoint of this schedule, training resumes from it: the weights, optimizer
    state and global step are restored, and the input pipeline skips the batches already
    trained on, so the run continues in the same phase with the batch it would have seen.

    NOTE: a resumed run matches an uninterrupted one bit for bit only when the backbone has
    no dropout. The exported encoders draw their dropout masks from stateful random ops
    inside the SavedModel, which restart in a new process, so with backbone dropout a
    resumed run is equivalent in distribution only.
    """
    training = config.training
    tf_keras.utils.set_random_seed(training.seed)
    transform_output = tft.TFTransformOutput(transform_output_dir)
    labels = label_vocabulary(config.data.labels, transform_output)
    if len(labels) < 2:
        raise ValueError(f"the label vocabulary {labels} has fewer than two classes; the "
                         f"training data must contain at least two labels")
    backbone = resolve_backbone(config.backbone.handle)
    freeze.check_phase_depth(training.phases, backbone.num_layers, config.source)
    strategy = make_strategy(training.distribution)
    loss_scale = training.mixed_precision == "mixed_float16"
    # NOTE: the policy applies to Keras layers only. A TF Hub SavedModel runs the functions
    # traced at export, so an encoder exported in float32 (as `textxfer export-backbone`
    # writes them) still computes in float32; a faster mixed-precision backbone needs an
    # encoder exported under that policy.
    with _precision_policy(training.mixed_precision), strategy.scope():
        classifier = Classifier(backbone.path, len(labels), training.dropout, training.seed)
        phases = freeze.plan_phases(training.phases, classifier.backbone_variables,
                                    classifier.head_variables, backbone.num_layers,
                                    config.source)
        total_steps = phases[-1].end_step
        global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        optimizer = GroupedAdamW(training, total_steps, backbone.num_layers, global_step,
                                 loss_scale=loss_scale)
        peaks = optimizer.build(freeze.tagged_variables(phases, classifier.backbone_variables))
    logging.info("Training %d classes %s for %d steps on %d replica(s), precision policy "
                 "%s; peak learning rates by group: %s.", len(labels), labels, total_steps,
                 strategy.num_replicas_in_sync, training.mixed_precision or "float32", peaks)

    checkpoint_dir = training.checkpoint_dir or os.path.join(model_run_dir, CHECKPOINT_SUBDIR)
    checkpoints = tf.train.CheckpointManager(
        make_checkpoint(classifier, optimizer, global_step), checkpoint_dir, max_to_keep=2)
    if checkpoints.latest_checkpoint:
        checkpoints.checkpoint.restore(checkpoints.latest_checkpoint).assert_consumed()
        logging.info("Resumed from %s at global step %d of %d.",
                     checkpoints.latest_checkpoint, int(global_step.numpy()), total_steps)
    start_step = int(global_step.numpy())
    if start_step > total_steps:
        raise ValueError(f"the checkpoint in {checkpoint_dir} is at step {start_step}, past "
                         f"the {total_steps} steps of training.phases; point "
                         f"training.checkpoint_dir at an empty directory for a new run")

    trainer = PhasedTrainer(classifier, optimizer, global_step, training.clip_norm,
                            model_run_dir, strategy=strategy, seed=training.seed,
                            loss_scale=loss_scale)
    # The shuffle order depends only on the seed, so skipping the batches of the steps
    # already taken puts a resumed run at the batch it would have trained on next.
    dataset = dataset_lib.train_dataset(train_files, training.batch_size,
                                        config.backbone.max_seq_length, training.seed)
    dataset = dataset.skip(start_step)
    if strategy.num_replicas_in_sync > 1 or isinstance(strategy, tf.distribute.MirroredStrategy):
        dataset = strategy.experimental_distribute_dataset(dataset)
    batches = iter(dataset)
    history_path = os.path.join(model_run_dir, HISTORY_FILE)
    history = _resumed_history(history_path, start_step)
    log_every = logging_interval(total_steps)
    for index, phase in enumerate(phases):
        trainer.run_phase(phase, batches, history, log_every, index=index,
                          checkpoints=checkpoints,
                          checkpoint_every=training.checkpoint_every_steps,
                          history_path=history_path)
        history.write(history_path)

    history.evaluation = trainer.evaluate(
        dataset_lib.eval_dataset(eval_files, training.eval_batch_size), eval_steps)
    logging.info("Evaluation after %d steps: %s", total_steps, history.evaluation)
    history.write(history_path)
    return TrainedModel(classifier, labels, history, transform_output)


def train_and_export(config: PipelineConfig, transform_output_dir: str, train_files,
                     eval_files, serving_model_dir: str, model_run_dir: str,
                     eval_steps=None) -> History:
    """Train with `train_model` and export the serving model to `serving_model_dir`."""
    trained = train_model(config, transform_output_dir, train_files, eval_files,
                          model_run_dir, eval_steps)
    module = ServingModule(trained.classifier, trained.transform_output, trained.labels,
                           uses_text_pair=config.data.columns.text_pair is not None)
    export_serving_model(module, serving_model_dir)
    logging.info("Exported the serving model to %s.", serving_model_dir)
    return trained.history


def run_fn(fn_args) -> None:
    """Train and export the model (TFX generic Trainer entry point).

    `fn_args.custom_config["config"]` is `PipelineConfig.to_dict()`. The freeze phases set
    the number of steps; `fn_args.train_steps` must equal their sum.
    """
    config = config_from_dict(fn_args.custom_config["config"], source="custom_config['config']")
    phase_steps = sum(phase.steps for phase in config.training.phases)
    if fn_args.train_steps and fn_args.train_steps != phase_steps:
        raise ValueError(
            f"TrainArgs.num_steps is {fn_args.train_steps} but training.phases sum to "
            f"{phase_steps} steps; pass TrainArgs(num_steps={phase_steps}).")
    train_and_export(
        config,
        transform_output_dir=fn_args.transform_output,
        train_files=fn_args.train_files,
        eval_files=fn_args.eval_files,
        serving_model_dir=fn_args.serving_model_dir,
        model_run_dir=fn_args.model_run_dir,
        eval_steps=fn_args.eval_steps or None,
    )
