"""Input pipelines over Transform's output: examples trimmed to their length and bucketed."""

from typing import Dict, List, Sequence, Tuple

import tensorflow as tf

from components import features

# Upper edges of the length buckets as fractions of max_seq_length. Most sentences in
# classification data sets are far shorter than the configured maximum.
_BUCKET_FRACTIONS = (0.125, 0.25, 0.375, 0.5, 0.75)


def bucket_boundaries(max_seq_length: int) -> List[int]:
    """Return increasing sequence-length bucket edges below `max_seq_length`."""
    edges = sorted({max(int(max_seq_length * fraction), 2) for fraction in _BUCKET_FRACTIONS})
    return [edge for edge in edges if edge < max_seq_length]


def _model_feature_spec() -> Dict[str, tf.io.FixedLenFeature]:
    return {name: tf.io.VarLenFeature(tf.int64) for name in features.MODEL_INPUTS} | {
        features.LABEL_ID: tf.io.FixedLenFeature([], tf.int64)}


def _parse_and_trim(record: tf.Tensor) -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
    parsed = tf.io.parse_single_example(record, _model_feature_spec())
    inputs = {name: tf.sparse.to_dense(parsed[name]) for name in features.MODEL_INPUTS}
    length = tf.reduce_sum(tf.cast(inputs[features.INPUT_MASK], tf.int32))
    inputs = {name: tf.cast(value[:length], tf.int32) for name, value in inputs.items()}
    label = parsed[features.LABEL_ID]
    check = tf.debugging.assert_non_negative(
        label, message="an example has label_id -1: its label is empty or not in the label "
                       "vocabulary; every training and evaluation row needs a known label")
    with tf.control_dependencies([check]):
        label = tf.identity(label)
    return inputs, label


def _files(file_patterns: Sequence[str]) -> List[str]:
    files = sorted(path for pattern in file_patterns for path in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no transformed examples match {list(file_patterns)}; check "
                                f"that Transform wrote its output there")
    return files


def train_dataset(file_patterns: Sequence[str], batch_size: int, max_seq_length: int,
                  seed: int) -> tf.data.Dataset:
    """Return endless shuffled batches, each padded only to its own longest sequence.

    Examples are grouped into length buckets first, so a batch of short sentences does not
    carry the padding of one long sentence.
    """
    records = tf.data.TFRecordDataset(_files(file_patterns), compression_type="GZIP")
    dataset = records.shuffle(20_000, seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.map(_parse_and_trim, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    boundaries = bucket_boundaries(max_seq_length)
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda inputs, label: tf.shape(inputs[features.INPUT_WORD_IDS])[0],
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        drop_remainder=True,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def eval_dataset(file_patterns: Sequence[str], batch_size: int) -> tf.data.Dataset:
    """Return one pass over the examples in file order, each batch padded to its longest."""
    records = tf.data.TFRecordDataset(_files(file_patterns), compression_type="GZIP")
    dataset = records.map(_parse_and_trim, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.padded_batch(batch_size).prefetch(tf.data.AUTOTUNE)


def input_signature() -> Tuple[Dict[str, tf.TensorSpec], tf.TensorSpec]:
    """Return the specs of one batch: int32 [batch, any length] inputs and int64 labels."""
    inputs = {name: tf.TensorSpec([None, None], tf.int32, name=name)
              for name in features.MODEL_INPUTS}
    return inputs, tf.TensorSpec([None], tf.int64, name=features.LABEL_ID)
