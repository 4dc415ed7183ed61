"""Custom training loop over freeze phases, with TensorBoard summaries and a history record."""

import dataclasses
import json
import os
import time
from typing import Dict, Iterator, List, Optional

import tensorflow as tf
import tf_keras
from absl import logging

from components import dataset as dataset_lib
from components.freeze import Phase
from components.model import Classifier
from components.optimization import GroupedAdamW


@dataclasses.dataclass
class History:
    """Record of a run: loss, accuracy and learning rate per logging interval, and the step
    range, trained variable groups and mean step time of each phase."""

    log: List[Dict] = dataclasses.field(default_factory=list)
    phases: List[Dict] = dataclasses.field(default_factory=list)
    evaluation: Dict = dataclasses.field(default_factory=dict)

    def write(self, path: str) -> None:
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path, "w") as history_file:
            json.dump(dataclasses.asdict(self), history_file, indent=1)


def logging_interval(total_steps: int) -> int:
    """Return the number of steps per history record: about 50 records, every 1..50 steps."""
    return max(1, min(50, total_steps // 50))


class PhasedTrainer:
    """Train a `Classifier` phase by phase; only the current phase's variables change."""

    def __init__(self, classifier: Classifier, optimizer: GroupedAdamW, global_step: tf.Variable,
                 clip_norm: Optional[float], summary_dir: str):
        self._classifier = classifier
        self._optimizer = optimizer
        self._global_step = global_step
        self._clip_norm = clip_norm
        self._writer = tf.summary.create_file_writer(summary_dir)
        self._loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def make_train_step(self, phase: Phase):
        """Return a train step traced for any batch size and sequence length.

        The gradient covers only `phase.variables`, and TensorFlow then computes no backward
        pass below the lowest trainable layer: a MiniLM `top: 2` step took a third of an
        all-layer step (docs/benchmarks.md). With a frozen backbone the encoder runs outside
        the tape altogether.
        """
        classifier = self._classifier
        variables = phase.variables

        @tf.function(input_signature=dataset_lib.input_signature())
        def train_step(inputs, labels):
            if phase.trains_backbone:
                with tf.GradientTape() as tape:
                    logits = classifier(inputs, training=True)
                    loss = self._loss_fn(labels, logits)
            else:
                pooled = classifier.pooled(inputs, training=False)
                with tf.GradientTape() as tape:
                    logits = classifier.head(pooled, training=True)
                    loss = self._loss_fn(labels, logits)
            gradients = tape.gradient(loss, variables)
            if self._clip_norm is not None:
                gradients, norm = tf.clip_by_global_norm(gradients, self._clip_norm)
            else:
                norm = tf.linalg.global_norm(gradients)
            self._optimizer.apply_gradients(zip(gradients, variables))
            self._global_step.assign_add(1)
            correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32)
            return loss, tf.reduce_mean(correct), norm

        return train_step

    def run_phase(self, phase: Phase, batches: Iterator, history: History,
                  log_every: int) -> None:
        """Run `phase.steps` train steps, logging and summarizing every `log_every` steps."""
        logging.info("Phase %s: steps %d..%d, training %d variables in groups %s "
                     "(lowest trainable encoder layer: %s).", phase.name, phase.start_step,
                     phase.end_step, len(phase.variables), phase.groups,
                     phase.lowest_trainable)
        train_step = self.make_train_step(phase)
        losses, accuracies = [], []
        # The first step traces the function; it is timed separately.
        trace_seconds = 0.0
        started = time.monotonic()
        for step_in_phase in range(phase.steps):
            step_started = time.monotonic()
            inputs, labels = next(batches)
            loss, accuracy, _ = train_step(inputs, labels)
            losses.append(float(loss))
            accuracies.append(float(accuracy))
            if step_in_phase == 0:
                trace_seconds = time.monotonic() - step_started
                started = time.monotonic()
            step = int(self._global_step.numpy())
            if step % log_every == 0 or step_in_phase == phase.steps - 1:
                self._record(phase, step, losses, accuracies, history)
                losses, accuracies = [], []
        timed_steps = max(phase.steps - 1, 1)
        seconds_per_step = (time.monotonic() - started) / timed_steps
        history.phases.append({
            "name": phase.name, "start_step": phase.start_step, "end_step": phase.end_step,
            "trainable_variables": len(phase.variables), "groups": phase.groups,
            "lowest_layer": phase.lowest_layer,
            "first_step_seconds": round(trace_seconds, 3),
            "seconds_per_step": round(seconds_per_step, 4),
        })
        logging.info("Phase %s done: %.3f s per step after a %.1f s first step.", phase.name,
                     seconds_per_step, trace_seconds)

    def _record(self, phase: Phase, step: int, losses: List[float], accuracies: List[float],
                history: History) -> None:
        rates = {"learning_rate": float(self._optimizer.backbone_schedule()),
                 "head_learning_rate": float(self._optimizer.head_schedule())}
        record = {"step": step, "phase": phase.name,
                  "loss": sum(losses) / len(losses),
                  "accuracy": sum(accuracies) / len(accuracies), **rates}
        history.log.append(record)
        with self._writer.as_default(step=step):
            tf.summary.scalar("train/loss", record["loss"])
            tf.summary.scalar("train/accuracy", record["accuracy"])
            for name, rate in rates.items():
                tf.summary.scalar(f"train/{name}", rate)
        logging.info("step %d (%s): loss %.4f, accuracy %.3f, learning rate %.3g", step,
                     phase.name, record["loss"], record["accuracy"], rates["learning_rate"])

    def evaluate(self, batches: tf.data.Dataset, max_steps: Optional[int]) -> Dict:
        """Return loss, accuracy and example count over `batches` (at most `max_steps`)."""
        classifier = self._classifier

        @tf.function(input_signature=dataset_lib.input_signature())
        def eval_step(inputs, labels):
            logits = classifier(inputs, training=False)
            loss = tf_keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                                   from_logits=True)
            correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32)
            return tf.reduce_sum(loss), tf.reduce_sum(correct)

        total_loss, total_correct, count = 0.0, 0.0, 0
        for index, (inputs, labels) in enumerate(batches):
            if max_steps is not None and index >= max_steps:
                break
            loss, correct = eval_step(inputs, labels)
            total_loss += float(loss)
            total_correct += float(correct)
            count += int(labels.shape[0])
        result = {"examples": count, "loss": total_loss / max(count, 1),
                  "accuracy": total_correct / max(count, 1)}
        with self._writer.as_default(step=int(self._global_step.numpy())):
            tf.summary.scalar("eval/loss", result["loss"])
            tf.summary.scalar("eval/accuracy", result["accuracy"])
        self._writer.flush()
        return result
