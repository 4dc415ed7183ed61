"""Measure train-step time per freeze phase against an all-layer step and a bare tf_keras loop.

Loads one backbone (default: MiniLM, `backbones/minilm`) and times, on the same fixed batch
of random token ids with every position a real token (no padding, no trimming):

- the Trainer's train step (`PhasedTrainer.make_train_step`, `GroupedAdamW`) for a
  head-only phase, a `top: 2` phase and an `all` phase;
- a bare loop: `hub.KerasLayer(trainable=True)` + `Dense`, one `GradientTape` over all
  trainable variables and one tf_keras Adam, in a `tf.function`.

Rounds interleave the four steps, so load from other processes spreads over all of them.
Prints the median seconds per step and the ratios to the Trainer's `all` step and to the
bare loop.

    .venv/bin/python bench/freeze_schedule.py --backbone backbones/minilm
"""

import statistics
import time

from absl import app, flags

from pipeline.environment import configure_environment

configure_environment()

FLAGS = flags.FLAGS
flags.DEFINE_string("backbone", "backbones/minilm", "Backbone SavedModel directory.")
flags.DEFINE_integer("seq_length", 128, "Tokens per example (all real, no padding).")
flags.DEFINE_integer("batch_size", 16, "Examples per batch.")
flags.DEFINE_integer("rounds", 3, "Interleaved measurement rounds.")
flags.DEFINE_integer("steps", 3, "Timed steps per kind of step in each round.")


def make_batch(vocab_size: int, batch_size: int, seq_length: int):
    """Return a fixed batch of random token ids, a full mask and alternating labels."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from components import features  # pylint: disable=import-outside-toplevel

    ids = tf.random.stateless_uniform([batch_size, seq_length], seed=[1, 2], minval=1000,
                                      maxval=vocab_size, dtype=tf.int32)
    inputs = {features.INPUT_WORD_IDS: ids,
              features.INPUT_MASK: tf.ones_like(ids),
              features.INPUT_TYPE_IDS: tf.zeros_like(ids)}
    labels = tf.constant([index % 2 for index in range(batch_size)], tf.int64)
    return inputs, labels


def trainer_steps(backbone_path: str, num_layers: int):
    """Return {phase: train step} of the Trainer for head, top: 2 and all."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from components import freeze  # pylint: disable=import-outside-toplevel
    from components.model import Classifier  # pylint: disable=import-outside-toplevel
    from components.optimization import GroupedAdamW  # pylint: disable=import-outside-toplevel
    from components.training_loop import PhasedTrainer  # pylint: disable=import-outside-toplevel
    from pipeline.config import PhaseConfig, TrainingConfig  # pylint: disable=import-outside-toplevel

    phase_names = ("head", "top: 2", "all")
    training = TrainingConfig(phases=[PhaseConfig(name, 1000) for name in phase_names],
                              learning_rate=5e-5, head_learning_rate=1e-3)
    classifier = Classifier(backbone_path, 2, training.dropout, training.seed)
    phases = freeze.plan_phases(training.phases, classifier.backbone_variables,
                                classifier.head_variables, num_layers)
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
    optimizer = GroupedAdamW(training, phases[-1].end_step, num_layers, global_step)
    optimizer.build(freeze.tagged_variables(phases, classifier.backbone_variables))
    loop = PhasedTrainer(classifier, optimizer, global_step, training.clip_norm, "/tmp/unused",
                         seed=training.seed)
    return {name: loop.make_train_step(phase) for name, phase in zip(phase_names, phases)}


def bare_step(backbone_path: str):
    """Return a plain GradientTape train step over hub.KerasLayer + Dense with one Adam."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_hub as hub  # pylint: disable=import-outside-toplevel
    import tf_keras  # pylint: disable=import-outside-toplevel

    backbone = hub.KerasLayer(backbone_path, trainable=True)
    dense = tf_keras.layers.Dense(2)
    optimizer = tf_keras.optimizers.Adam(5e-5)
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def train_step(inputs, labels):
        with tf.GradientTape() as tape:
            logits = dense(backbone(inputs, training=True)["pooled_output"])
            loss = loss_fn(labels, logits)
        variables = backbone.trainable_variables + dense.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return train_step


def main(argv):
    del argv
    from components.backbone.loading import resolve_backbone  # pylint: disable=import-outside-toplevel

    info = resolve_backbone(FLAGS.backbone)
    inputs, labels = make_batch(info.vocab_size, FLAGS.batch_size, FLAGS.seq_length)
    steps = trainer_steps(info.path, info.num_layers)
    steps["bare loop (all)"] = bare_step(info.path)
    for step in steps.values():
        step(inputs, labels)  # Traces the function.

    seconds = {name: [] for name in steps}
    for _ in range(FLAGS.rounds):
        for name, step in steps.items():
            for _ in range(FLAGS.steps):
                started = time.perf_counter()
                result = step(inputs, labels)
                # Reading a result waits for the step to finish.
                float(result[0] if isinstance(result, tuple) else result)
                seconds[name].append(time.perf_counter() - started)

    medians = {name: statistics.median(values) for name, values in seconds.items()}
    bare = medians["bare loop (all)"]
    print(f"backbone {FLAGS.backbone}: {info.num_layers} layers, hidden size "
          f"{info.hidden_size}; batch {FLAGS.batch_size} x {FLAGS.seq_length} tokens; "
          f"{FLAGS.rounds} rounds x {FLAGS.steps} steps each")
    print(f"{'step':<18} {'median s':>9} {'min s':>7} {'max s':>7} {'vs all':>7} {'vs bare':>8}")
    for name, median in medians.items():
        print(f"{name:<18} {median:9.3f} {min(seconds[name]):7.3f} {max(seconds[name]):7.3f} "
              f"{median / medians['all']:6.2f}x {median / bare:7.2f}x")


if __name__ == "__main__":
    app.run(main)
