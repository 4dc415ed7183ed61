"""Measure `predict_text` latency for one sentence on one CPU thread, next to a FLOP-based floor.

Loads an exported serving model (a pushed version, or the `serving` folder that
bench/sst2_trainer.py writes), restricts TensorFlow to one intra-op and one inter-op
thread before anything runs, calls `predict_text` on one sentence repeatedly and prints
p50/p99 latency. The floor is the encoder's matmul FLOPs for that sentence's token count
divided by the float32 matmul rate of one core, measured in the same process:

    .venv/bin/python bench/serving_latency.py --model outputs/bench_sst2/serving \
        --backbone backbones/minilm --checkpoint minilm
"""

import dataclasses
import os
import statistics
import time

from absl import app, flags, logging

from pipeline.environment import configure_environment

configure_environment()

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "outputs/bench_sst2/serving",
                    "Serving SavedModel, or a serving root whose newest integer version is used.")
flags.DEFINE_string("backbone", "backbones/minilm", "Backbone SavedModel whose tokenizer the model uses.")
flags.DEFINE_string("checkpoint", "minilm", "Checkpoint source whose config.json gives the encoder shape.")
flags.DEFINE_string("sentence", "a gorgeous, witty, seductive movie that keeps its promises to the very end.",
                    "The sentence to classify.")
flags.DEFINE_integer("warmup", 20, "Untimed calls before measuring.")
flags.DEFINE_integer("calls", 500, "Timed calls.")
flags.DEFINE_integer("matmul_size", 1024, "Side of the square float32 matmul that measures the peak rate.")
flags.DEFINE_integer("matmul_repeats", 5, "Timed matmuls; the fastest one sets the peak rate.")


@dataclasses.dataclass(frozen=True)
class EncoderFlops:
    """Multiply-add FLOPs (2 per multiply-add) of one BERT forward pass, by part."""

    embeddings: int
    attention_projections: int
    attention_scores: int
    feed_forward: int
    pooler_and_head: int

    @property
    def total(self) -> int:
        return sum(dataclasses.astuple(self))


def encoder_flops(tokens: int, hidden: int, layers: int, intermediate: int, classes: int) -> EncoderFlops:
    """Count the FLOPs of a BERT encoder, its pooler and a dense head for one sequence of `tokens`.

    Per layer: Q, K, V and output projections (4 matmuls of [tokens, hidden] x [hidden,
    hidden]), attention scores QK^T and the weighted sum of V over all heads (2 x tokens^2 x
    hidden multiply-adds), and the two feed-forward matmuls. Embeddings are lookups plus
    the sum of three vectors per token. Softmax, GELU and layer norms are left out.
    """
    return EncoderFlops(
        embeddings=2 * tokens * hidden,
        attention_projections=layers * 4 * 2 * tokens * hidden * hidden,
        attention_scores=layers * 2 * 2 * tokens * tokens * hidden,
        feed_forward=layers * 2 * 2 * tokens * hidden * intermediate,
        pooler_and_head=2 * hidden * hidden + 2 * hidden * classes,
    )


def newest_version(model_dir: str) -> str:
    """Return `model_dir` if it is a SavedModel, else its largest integer subfolder that is one."""
    if os.path.exists(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    versions = [int(name) for name in os.listdir(model_dir)
                if name.isdigit() and os.path.exists(os.path.join(model_dir, name, "saved_model.pb"))]
    if not versions:
        raise FileNotFoundError(f"--model {model_dir!r} contains no saved_model.pb and no integer version folder "
                                f"with one; pass a pushed model version or the serving folder of bench/sst2_trainer.py")
    return os.path.join(model_dir, str(max(versions)))


def peak_matmul_flops(tf, size: int, repeats: int) -> float:
    """Return the float32 FLOP/s of the fastest of `repeats` [size, size] x [size, size] matmuls."""
    left = tf.random.stateless_normal([size, size], seed=[1, 2])
    right = tf.random.stateless_normal([size, size], seed=[3, 4])
    matmul = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    matmul(left, right).numpy()
    fastest = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        matmul(left, right).numpy()
        fastest = min(fastest, time.perf_counter() - started)
    return 2 * size ** 3 / fastest


def percentile(values, share: float) -> float:
    """Return the `share` quantile of `values` (linear interpolation between ranks)."""
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def main(argv) -> None:
    del argv
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    # Both pools must be sized before TensorFlow runs its first op.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import tensorflow_text  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import

    from components.backbone.checkpoint import read_config, resolve_source_dir  # pylint: disable=import-outside-toplevel
    from components.backbone.loading import resolve_backbone  # pylint: disable=import-outside-toplevel
    from components.backbone.tokenizer import tokenizer_for_backbone  # pylint: disable=import-outside-toplevel

    model_path = newest_version(FLAGS.model)
    model = tf.saved_model.load(model_path)
    predict_text = model.signatures["predict_text"]
    request = tf.constant([FLAGS.sentence])
    response = predict_text(text=request)
    classes = int(response["probabilities"].shape[-1])

    word_pieces = tokenizer_for_backbone(resolve_backbone(FLAGS.backbone)).tokenize(request)
    tokens = int(word_pieces.merge_dims(-2, -1).row_lengths()[0]) + 2  # [CLS] and [SEP]
    config = read_config(resolve_source_dir(FLAGS.checkpoint))
    flops = encoder_flops(tokens, config.hidden_size, config.num_layers, config.intermediate_size, classes)

    for _ in range(FLAGS.warmup):
        predict_text(text=request)
    latencies = []
    for _ in range(FLAGS.calls):
        started = time.perf_counter()
        result = predict_text(text=request)
        result["probabilities"].numpy()
        latencies.append(time.perf_counter() - started)
    peak = peak_matmul_flops(tf, FLAGS.matmul_size, FLAGS.matmul_repeats)
    floor = flops.total / peak

    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    print(f"model: {model_path}")
    print(f"sentence: {FLAGS.sentence!r} ({tokens} tokens with [CLS] and [SEP]); "
          f"encoder {config.num_layers} layers, hidden {config.hidden_size}, feed-forward "
          f"{config.intermediate_size}; {classes} classes")
    print(f"threads: intra-op {tf.config.threading.get_intra_op_parallelism_threads()}, "
          f"inter-op {tf.config.threading.get_inter_op_parallelism_threads()}")
    print(f"FLOPs: {flops.total / 1e6:.1f} M ({', '.join(f'{name} {value / 1e6:.1f} M' for name, value in dataclasses.asdict(flops).items())})")
    print(f"one-thread float32 matmul peak ({FLAGS.matmul_size}^3): {peak / 1e9:.1f} GFLOP/s")
    print(f"predict_text latency over {FLAGS.calls} calls: p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms, "
          f"mean {statistics.fmean(latencies) * 1e3:.2f} ms, min {min(latencies) * 1e3:.2f} ms")
    print(f"FLOP floor: {floor * 1e3:.3f} ms; p50 is {p50 / floor:.0f}x the floor")
    logging.info("p50 %.3f ms, p99 %.3f ms, floor %.4f ms", p50 * 1e3, p99 * 1e3, floor * 1e3)


if __name__ == "__main__":
    app.run(main)
