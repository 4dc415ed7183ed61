"""Transform module code: BERT WordPiece tokenization and label ids, inside the serving graph.

The tokenizer uses the backbone's own vocabulary file and lower-casing flag, read from the
backbone SavedModel, so text is split exactly as the backbone was pretrained. The vocabulary
file is an asset of the transform graph, so a copied transform output keeps working.
"""

from typing import Dict, List, Optional

from pipeline.environment import configure_environment

configure_environment()

import tensorflow as tf  # noqa: E402  (TF_USE_LEGACY_KERAS must be set before TF loads)
import tensorflow_text as tf_text
import tensorflow_transform as tft
from absl import logging

from components import features
from components.backbone.loading import resolve_backbone
from components.backbone.tokenizer import build_tokenizer
from pipeline.config import config_from_dict

CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
# Lower ends of the word-count ranges that the Evaluator slices metrics by.
TEXT_LENGTH_BOUNDARIES = (5, 10, 20, 40)


class WordPieceEncoder:
    """Encode one text or a text pair as `[CLS] a [SEP] (b [SEP])` BERT model inputs.

    Sequences longer than `max_seq_length` are trimmed longest side first: each segment gets
    tokens in turn until the budget is spent, so a short side is kept whole.
    """

    def __init__(self, vocab_file: str, lower_case: bool, max_seq_length: int):
        self.max_seq_length = max_seq_length
        self.vocab_file = vocab_file
        self._cls_id, self._sep_id = _special_token_ids(vocab_file)
        initializer = tf.lookup.TextFileInitializer(
            vocab_file,
            key_dtype=tf.string,
            key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            value_dtype=tf.int64,
            value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
        )
        self._table = tf.lookup.StaticVocabularyTable(initializer, num_oov_buckets=1)
        # Matches the checkpoint's own tokenizer.json; plain tf_text.BertTokenizer folds
        # compatibility characters ("，" to ",") when lower-casing, and tokens then differ.
        self._tokenizer = build_tokenizer(self._table, lower_case)

    def encode(self, text: tf.Tensor,
               text_pair: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
        """Return int64 [batch, max_seq_length] word ids, mask and type ids for string [batch]."""
        segments = [self._tokenizer.tokenize(text).merge_dims(1, 2)]
        if text_pair is not None:
            segments.append(self._tokenizer.tokenize(text_pair).merge_dims(1, 2))
        # One [CLS] plus one [SEP] per segment.
        budget = self.max_seq_length - 1 - len(segments)
        trimmed = tf_text.RoundRobinTrimmer(max_seq_length=budget).trim(segments)
        word_ids, type_ids = tf_text.combine_segments(
            trimmed, start_of_sequence_id=self._cls_id, end_of_segment_id=self._sep_id
        )
        word_ids, mask = tf_text.pad_model_inputs(word_ids, max_seq_length=self.max_seq_length)
        type_ids, _ = tf_text.pad_model_inputs(type_ids, max_seq_length=self.max_seq_length)
        shape = [None, self.max_seq_length]
        return {
            features.INPUT_WORD_IDS: tf.ensure_shape(tf.cast(word_ids, tf.int64), shape),
            features.INPUT_MASK: tf.ensure_shape(tf.cast(mask, tf.int64), shape),
            features.INPUT_TYPE_IDS: tf.ensure_shape(tf.cast(type_ids, tf.int64), shape),
        }


def _special_token_ids(vocab_file: str) -> tuple:
    with tf.io.gfile.GFile(vocab_file) as vocab:
        ids = {line.rstrip("\n"): index for index, line in enumerate(vocab)}
    missing = [token for token in (CLS_TOKEN, SEP_TOKEN) if token not in ids]
    if missing:
        raise ValueError(
            f"Vocabulary {vocab_file} has no {' or '.join(missing)} token; the backbone must be "
            f"a BERT encoder whose vocab_file asset contains {CLS_TOKEN} and {SEP_TOKEN}."
        )
    return ids[CLS_TOKEN], ids[SEP_TOKEN]


def dense_strings(value) -> tf.Tensor:
    """Return a string [batch] tensor from a raw feature: dense [batch] or [batch, 1], sparse
    or ragged (the first value of each row, "" where a row has none), bytes or integers."""
    if isinstance(value, (tf.SparseTensor, tf.RaggedTensor)):
        default = "" if value.dtype == tf.string else 0
        if isinstance(value, tf.SparseTensor):
            value = tf.sparse.to_dense(value, default_value=default)
        else:
            value = value.to_tensor(default_value=default)
        # A batch in which every row is empty densifies to width 0: append one default column.
        filler = tf.fill([tf.shape(value)[0], 1], tf.constant(default, value.dtype))
        value = tf.concat([value, filler], axis=1)[:, 0]
    elif value.shape.rank == 2:
        value = value[:, 0]
    if value.dtype != tf.string:
        value = tf.strings.as_string(value)
    return value


def label_ids(labels: tf.Tensor, label_vocabulary: Optional[List[str]]) -> tf.Tensor:
    """Map string [batch] labels to int64 class ids, -1 for a label outside the vocabulary.

    With `label_vocabulary` (the config's `data.labels`) the ids follow that list, and a
    non-empty label outside it fails the run. Without it, `tft.vocabulary` computes the
    vocabulary from the analyzed data, most frequent label first (TFT breaks ties
    by the label bytes, so the order is deterministic). A label outside it can only come
    from data that was not analyzed; it gets id -1, which the Trainer rejects.
    A row without a label ("", also what TFT feeds for a feature missing at serving time)
    gets id -1 too.
    """
    if not label_vocabulary:
        # No assertion here: TFT runs the graph before the vocabulary exists, while every
        # lookup still returns the default.
        return tft.compute_and_apply_vocabulary(
            labels, vocab_filename=features.LABEL_VOCABULARY, num_oov_buckets=0, default_value=-1
        )
    known = tf.constant(label_vocabulary)
    matches = tf.equal(labels[:, tf.newaxis], known[tf.newaxis, :])
    positions = tf.argmax(tf.cast(matches, tf.int64), axis=1)
    ids = tf.where(tf.reduce_any(matches, axis=1), positions, -1)
    check = tf.debugging.Assert(
        tf.reduce_all((ids >= 0) | tf.equal(labels, "")),
        [f"a label is not one of {', '.join(label_vocabulary)}; fix the data or list every label "
         f"in data.labels:", tf.boolean_mask(labels, ids < 0)],
        summarize=10,
    )
    with tf.control_dependencies([check]):
        return tf.identity(ids)


def text_length_buckets(texts: List[tf.Tensor]) -> tf.Tensor:
    """Return the range of the whitespace-separated word count of `texts` summed, per example.

    Ranges follow `TEXT_LENGTH_BOUNDARIES`: "0-4", "5-9", "10-19", "20-39" and "40+".
    """
    words = tf.add_n([tf.strings.split(text).row_lengths() for text in texts])
    lows = (0,) + TEXT_LENGTH_BOUNDARIES
    names = [f"{low}-{high - 1}" for low, high in zip(lows, TEXT_LENGTH_BOUNDARIES)]
    names.append(f"{TEXT_LENGTH_BOUNDARIES[-1]}+")
    index = tf.raw_ops.Bucketize(input=words,
                                 boundaries=[float(low) for low in TEXT_LENGTH_BOUNDARIES])
    return tf.gather(tf.constant(names), index)


def preprocessing_fn(inputs: Dict[str, tf.Tensor], custom_config: Dict) -> Dict[str, tf.Tensor]:
    """Tokenize `text` (and `text_pair`) with the backbone's WordPiece vocabulary and map labels.

    `custom_config["config"]` is `PipelineConfig.to_dict()`. Outputs int64 `input_word_ids`,
    `input_mask`, `input_type_ids` [batch, max_seq_length], `label_id` [batch] (-1 where a
    row has no label) and the string slice key `text_length_bucket` [batch].
    """
    config = config_from_dict(custom_config["config"], source="custom_config['config']")
    # TFT traces this function in a graph; loading the backbone and reading its flags needs
    # eager execution.
    with tf.init_scope():
        backbone = resolve_backbone(config.backbone.handle)
    logging.info(
        "Tokenizing with %s (do_lower_case=%s), max_seq_length %d.",
        backbone.vocab_file, backbone.do_lower_case, config.backbone.max_seq_length,
    )
    encoder = WordPieceEncoder(
        backbone.vocab_file, backbone.do_lower_case, config.backbone.max_seq_length
    )

    text_pair = None
    if config.data.columns.text_pair is not None:
        if features.TEXT_PAIR not in inputs:
            raise KeyError(
                f"data.columns.text_pair is set in {config.source} but the examples have no "
                f"{features.TEXT_PAIR!r} feature (found {sorted(inputs)}); check the column name."
            )
        text_pair = dense_strings(inputs[features.TEXT_PAIR])
    text = dense_strings(inputs[features.TEXT])
    outputs = encoder.encode(text, text_pair)
    outputs[features.TEXT_LENGTH_BUCKET] = text_length_buckets(
        [text] if text_pair is None else [text, text_pair])
    labels = dense_strings(inputs[features.LABEL])
    outputs[features.LABEL_ID] = label_ids(labels, config.data.labels)
    return outputs
