"""Trainer module code: `run_fn` for TFX's generic Trainer.

Trains the TF Hub backbone and a classification head on the configured freeze schedule,
evaluates on the eval split, and exports the serving model with its signatures.
"""

import os

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
from components.training_loop import History, PhasedTrainer, logging_interval
from pipeline.config import PipelineConfig, config_from_dict

HISTORY_FILE = "history.json"


def train_and_export(config: PipelineConfig, transform_output_dir: str, train_files,
                     eval_files, serving_model_dir: str, model_run_dir: str,
                     eval_steps=None) -> History:
    """Train on `train_files`, evaluate on `eval_files`, export to `serving_model_dir`.

    Writes TensorBoard summaries and `history.json` to `model_run_dir`.
    """
    training = config.training
    tf_keras.utils.set_random_seed(training.seed)
    transform_output = tft.TFTransformOutput(transform_output_dir)
    labels = label_vocabulary(config.data.labels, transform_output)
    if len(labels) < 2:
        raise ValueError(f"the label vocabulary {labels} has fewer than two classes; the "
                         f"training data must contain at least two labels")
    backbone = resolve_backbone(config.backbone.handle)
    classifier = Classifier(backbone.path, len(labels), training.dropout, training.seed)

    phases = freeze.plan_phases(training.phases, classifier.backbone_variables,
                                classifier.head_variables, backbone.num_layers, config.source)
    total_steps = phases[-1].end_step
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    optimizer = GroupedAdamW(training, total_steps, backbone.num_layers, global_step)
    peaks = optimizer.build(freeze.tagged_variables(phases, classifier.backbone_variables))
    logging.info("Training %d classes %s for %d steps; peak learning rates by group: %s.",
                 len(labels), labels, total_steps, peaks)

    trainer = PhasedTrainer(classifier, optimizer, global_step, training.clip_norm, model_run_dir)
    batches = iter(dataset_lib.train_dataset(train_files, training.batch_size,
                                             config.backbone.max_seq_length, training.seed))
    history = History()
    log_every = logging_interval(total_steps)
    for phase in phases:
        trainer.run_phase(phase, batches, history, log_every)
        history.write(os.path.join(model_run_dir, HISTORY_FILE))

    history.evaluation = trainer.evaluate(
        dataset_lib.eval_dataset(eval_files, training.eval_batch_size), eval_steps)
    logging.info("Evaluation after %d steps: %s", total_steps, history.evaluation)
    history.write(os.path.join(model_run_dir, HISTORY_FILE))

    module = ServingModule(classifier, transform_output, labels,
                           uses_text_pair=config.data.columns.text_pair is not None)
    export_serving_model(module, serving_model_dir)
    logging.info("Exported the serving model to %s.", serving_model_dir)
    return history


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
