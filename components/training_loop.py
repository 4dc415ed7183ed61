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


def make_strategy(distribution: str) -> tf.distribute.Strategy:
    """Return the `tf.distribute` strategy for `training.distribution`.

    `default` is TensorFlow's default strategy (one device). `mirrored` replicates the model
    on every local GPU, or on the CPU when there is none, and sums gradients across them.
    """
    if distribution == "default":
        return tf.distribute.get_strategy()
    if distribution == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ValueError(f"training.distribution {distribution!r} is not default or mirrored")


def make_checkpoint(classifier: Classifier, optimizer: GroupedAdamW,
                    global_step: tf.Variable) -> tf.train.Checkpoint:
    """Return a checkpoint of everything a resumed run needs: weights, optimizer slots and
    step counters, and the global step (which fixes the phase and the data position)."""
    return tf.train.Checkpoint(classifier=classifier, global_step=global_step,
                               **optimizer.checkpoint_objects)


def _gradient_values(gradient):
    return gradient.values if isinstance(gradient, tf.IndexedSlices) else gradient


def _map_gradient(function, gradient):
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(function(gradient.values), gradient.indices,
                                gradient.dense_shape)
    return function(gradient)


class PhasedTrainer:
    """Train a `Classifier` phase by phase; only the current phase's variables change.

    Build the classifier, `global_step` and the optimizer under `strategy.scope()`, and
    create `global_step` with `aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA`.
    """

    def __init__(self, classifier: Classifier, optimizer: GroupedAdamW, global_step: tf.Variable,
                 clip_norm: Optional[float], summary_dir: str,
                 strategy: Optional[tf.distribute.Strategy] = None, seed: int = 0,
                 loss_scale: bool = False):
        self._classifier = classifier
        self._optimizer = optimizer
        self._global_step = global_step
        self._clip_norm = clip_norm
        self._strategy = strategy or tf.distribute.get_strategy()
        self._seed = seed
        self._loss_scale = loss_scale
        self._writer = tf.summary.create_file_writer(summary_dir)
        self._loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction=tf_keras.losses.Reduction.NONE)

    def _replica_step(self, phase: Phase, inputs, labels):
        """Run one train step on one replica, summing gradients across replicas before clipping."""
        classifier = self._classifier
        variables = phase.variables
        replicas = self._strategy.num_replicas_in_sync
        global_batch = tf.shape(labels)[0] * replicas
        dropout_seed = tf.stack([tf.constant(self._seed, tf.int64),
                                 tf.cast(self._global_step, tf.int64)])
        if phase.trains_backbone:
            with tf.GradientTape() as tape:
                pooled = classifier.pooled(inputs, training=True)
                logits = classifier.train_logits(pooled, dropout_seed)
                loss = tf.nn.compute_average_loss(self._loss_fn(labels, logits),
                                                  global_batch_size=global_batch)
                scaled_loss = loss * self._optimizer.loss_scale
        else:
            # A frozen backbone runs outside the tape, so it has no backward pass at all.
            pooled = classifier.pooled(inputs, training=False)
            with tf.GradientTape() as tape:
                logits = classifier.train_logits(pooled, dropout_seed)
                loss = tf.nn.compute_average_loss(self._loss_fn(labels, logits),
                                                  global_batch_size=global_batch)
                scaled_loss = loss * self._optimizer.loss_scale
        gradients = tape.gradient(scaled_loss, variables)
        gradients = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, gradients)
        if self._loss_scale:
            scale = self._optimizer.loss_scale
            gradients = [_map_gradient(lambda values: values / scale, gradient)
                         for gradient in gradients]
            # One non-finite gradient makes all of them non-finite, so that every group's
            # LossScaleOptimizer skips this step and lowers its loss scale alike.
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(_gradient_values(gradient)))
                                    for gradient in gradients])
            poison = tf.where(finite, 0.0, float("nan"))
            gradients = [_map_gradient(lambda values: values + poison, gradient)
                         for gradient in gradients]
        if self._clip_norm is not None:
            gradients, norm = tf.clip_by_global_norm(gradients, self._clip_norm)
        else:
            norm = tf.linalg.global_norm(gradients)
        self._optimizer.apply_gradients(zip(gradients, variables),
                                        skip_gradients_aggregation=True)
        self._global_step.assign_add(1)
        correct = tf.reduce_sum(
            tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32))
        return loss, correct, tf.cast(global_batch, tf.float32), norm

    def make_train_step(self, phase: Phase):
        """Return a train step traced for any batch size and sequence length.

        The gradient covers only `phase.variables`, and TensorFlow then computes no backward
        pass below the lowest trainable layer: a MiniLM `top: 2` step took a third of an
        all-layer step (docs/benchmarks.md). With a frozen backbone the encoder runs outside
        the tape altogether. The step returns the mean loss, the accuracy and the global
        gradient norm before clipping.
        """
        strategy = self._strategy

        def distributed_step(inputs, labels):
            loss, correct, count, norm = strategy.run(self._replica_step,
                                                      args=(phase, inputs, labels))
            loss = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
            correct = strategy.reduce(tf.distribute.ReduceOp.SUM, correct, axis=None)
            count = strategy.experimental_local_results(count)[0]
            norm = strategy.experimental_local_results(norm)[0]
            return loss, correct / count, norm

        if strategy.num_replicas_in_sync == 1 and not isinstance(
                strategy, tf.distribute.MirroredStrategy):
            return tf.function(distributed_step, input_signature=dataset_lib.input_signature())
        # Distributed batches carry per-replica values, which a fixed signature cannot name.
        return tf.function(distributed_step, reduce_retracing=True)

    def write_phase_summary(self, phase: Phase, index: int) -> None:
        """Write the phase start, its variable groups and counts to TensorBoard."""
        lowest = -1 if phase.lowest_layer is None else phase.lowest_layer
        rows = "\n".join(f"| {group} | {count} |" for group, count in phase.groups.items())
        table = (f"Phase {phase.name}: steps {phase.start_step}..{phase.end_step}, lowest "
                 f"trainable part: {phase.lowest_trainable}\n\n"
                 f"| group | trainable variables |\n| --- | --- |\n{rows}")
        with self._writer.as_default(step=phase.start_step):
            tf.summary.scalar("phase/index", index)
            tf.summary.scalar("phase/trainable_variables", len(phase.variables))
            tf.summary.scalar("phase/lowest_trainable_layer", lowest)
            tf.summary.text("phase/groups", table)
        self._writer.flush()

    def run_phase(self, phase: Phase, batches: Iterator, history: History, log_every: int,
                  index: int = 0, checkpoints: Optional[tf.train.CheckpointManager] = None,
                  checkpoint_every: int = 0, history_path: Optional[str] = None) -> None:
        """Run the steps of `phase` from the current global step to its end.

        Logs and summarizes every `log_every` steps. With `checkpoints`, saves a checkpoint
        every `checkpoint_every` global steps and at the end of the phase, and writes
        `history` to `history_path` with it. A phase that the global step already passed
        (a resumed run) is skipped.
        """
        first = int(self._global_step.numpy())
        if first >= phase.end_step:
            return
        if first < phase.start_step:
            raise ValueError(f"global step {first} is before phase {phase.name}, which starts "
                             f"at {phase.start_step}; run the phases in order")
        resumed = first > phase.start_step
        logging.info("Phase %s: steps %d..%d%s, training %d variables in groups %s "
                     "(lowest trainable encoder layer: %s).", phase.name, phase.start_step,
                     phase.end_step, f", resumed at step {first}" if resumed else "",
                     len(phase.variables), phase.groups, phase.lowest_trainable)
        if not resumed:
            self.write_phase_summary(phase, index)
        train_step = self.make_train_step(phase)
        losses, accuracies = [], []
        # The first step traces the function; it is timed separately.
        trace_seconds = 0.0
        started = time.monotonic()
        steps = phase.end_step - first
        for step_in_run in range(steps):
            step_started = time.monotonic()
            inputs, labels = next(batches)
            loss, accuracy, _ = train_step(inputs, labels)
            losses.append(float(loss))
            accuracies.append(float(accuracy))
            if step_in_run == 0:
                trace_seconds = time.monotonic() - step_started
                started = time.monotonic()
            step = int(self._global_step.numpy())
            if step % log_every == 0 or step == phase.end_step:
                self._record(phase, step, losses, accuracies, history)
                losses, accuracies = [], []
            if checkpoints is not None and (
                    step == phase.end_step or (checkpoint_every and step % checkpoint_every == 0)):
                checkpoints.save(checkpoint_number=step)
                if history_path:
                    history.write(history_path)
        timed_steps = max(steps - 1, 1)
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
        strategy = self._strategy

        def replica_eval_step(inputs, labels):
            logits = classifier(inputs, training=False)
            loss = tf_keras.losses.sparse_categorical_crossentropy(labels, logits,
                                                                   from_logits=True)
            correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32)
            return tf.reduce_sum(loss), tf.reduce_sum(correct)

        # Every replica evaluates the whole batch and the first one's sums count: evaluation is
        # cheap next to training.
        @tf.function(input_signature=dataset_lib.input_signature())
        def eval_step(inputs, labels):
            loss, correct = strategy.run(replica_eval_step, args=(inputs, labels))
            return (strategy.experimental_local_results(loss)[0],
                    strategy.experimental_local_results(correct)[0])

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
