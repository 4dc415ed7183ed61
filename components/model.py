"""Classifier (TF Hub backbone + dropout/dense head) and the exported serving signatures."""

from typing import Dict, List, Optional

import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_text  # noqa: F401  (registers the tokenizer ops of the transform graph)
import tensorflow_transform as tft
import tf_keras

from components import features

# Initializer scale of the head, as in BERT's own classification heads.
_HEAD_INIT_STDDEV = 0.02


class Classifier(tf.Module):
    """A TF Hub BERT encoder with a dropout + dense classification head over `pooled_output`.

    Call it with a dict of int [batch, seq] `input_word_ids`, `input_mask` and
    `input_type_ids` of any sequence length up to the backbone's maximum. It returns
    logits [batch, num_classes].
    """

    def __init__(self, backbone_path: str, num_classes: int, dropout: float, seed: int):
        super().__init__(name="classifier")
        self.backbone = hub.KerasLayer(backbone_path, trainable=True, name="backbone")
        self.dropout = dropout
        # The head computes in float32 under any mixed-precision policy: its logits feed the
        # softmax and the loss directly.
        self.head = tf_keras.Sequential([
            tf_keras.layers.Dropout(dropout, seed=seed, name="head_dropout", dtype="float32"),
            tf_keras.layers.Dense(
                num_classes,
                kernel_initializer=tf_keras.initializers.TruncatedNormal(
                    stddev=_HEAD_INIT_STDDEV, seed=seed),
                name="head_dense",
                dtype="float32",
            ),
        ], name="head")
        # Under a MirroredStrategy scope the restored backbone runs only in a replica context.
        strategy = tf.distribute.get_strategy()
        pooled = strategy.run(self.pooled, args=(_dummy_inputs(),), kwargs={"training": False})
        hidden_size = strategy.experimental_local_results(pooled)[0].shape[-1]
        self.head.build([None, hidden_size])

    @property
    def backbone_variables(self) -> List[tf.Variable]:
        return list(self.backbone.trainable_variables)

    @property
    def head_variables(self) -> List[tf.Variable]:
        return list(self.head.trainable_variables)

    def pooled(self, inputs: Dict[str, tf.Tensor], training: bool) -> tf.Tensor:
        model_inputs = {name: tf.cast(inputs[name], tf.int32) for name in features.MODEL_INPUTS}
        return self.backbone(model_inputs, training=training)["pooled_output"]

    def __call__(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.head(self.pooled(inputs, training), training=training)

    def train_logits(self, pooled: tf.Tensor, dropout_seed: tf.Tensor) -> tf.Tensor:
        """Apply the head in training mode with a dropout mask drawn from `dropout_seed`.

        `dropout_seed` is an int [2] tensor. A stateless mask that depends only on it (the
        training loop passes the seed and the global step) makes a resumed run draw the
        same masks as an uninterrupted one.
        """
        pooled = tf.cast(pooled, tf.float32)
        if self.dropout > 0:
            pooled = tf.nn.experimental.stateless_dropout(pooled, rate=self.dropout,
                                                          seed=dropout_seed)
        return self.head.get_layer("head_dense")(pooled)


def _dummy_inputs() -> Dict[str, tf.Tensor]:
    ones = tf.ones([1, 2], tf.int32)
    return {features.INPUT_WORD_IDS: ones, features.INPUT_MASK: ones,
            features.INPUT_TYPE_IDS: tf.zeros_like(ones)}


def trim_to_longest(inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Cut padded model inputs to the longest sequence of the batch (at least one token).

    Attention masks out padding, so the logits do not change; the encoder runs faster on
    the short sentences that most classification data sets contain.
    """
    lengths = tf.reduce_sum(tf.cast(inputs[features.INPUT_MASK], tf.int32), axis=1)
    longest = tf.maximum(tf.reduce_max(lengths), 1)
    return {name: inputs[name][:, :longest] for name in features.MODEL_INPUTS}


def _as_raw_feature(values: tf.Tensor, spec) -> tf.Tensor:
    """Shape a string [batch] tensor like `tf.io.parse_example` returns feature `spec`."""
    if isinstance(spec, tf.io.VarLenFeature):
        return tf.sparse.from_dense(values[:, tf.newaxis])
    if isinstance(spec, tf.io.FixedLenFeature) and len(spec.shape) == 1:
        return values[:, tf.newaxis]
    return values


def _assert_features_present(raw: Dict[str, tf.Tensor]) -> List[tf.Operation]:
    """Return assertions that every example has a value for each variable-length feature.

    `tf.io.parse_example` rejects an example without a fixed-length feature by itself, but
    returns no values for a missing variable-length one, which Transform would read as "".
    """
    assertions = []
    for name, value in raw.items():
        if not isinstance(value, tf.SparseTensor):
            continue
        rows = tf.cast(value.dense_shape[0], tf.int32)
        counts = tf.math.bincount(tf.cast(value.indices[:, 0], tf.int32), minlength=rows,
                                  maxlength=rows)
        missing = tf.where(tf.equal(counts, 0))[:, 0]
        assertions.append(tf.debugging.Assert(
            tf.equal(tf.size(missing), 0),
            [f"missing feature {name}: each serialized tf.Example needs the bytes feature "
             f"{name} with the raw text, an empty string for an empty text. Batch indices "
             f"of the examples without it:", missing],
            name=f"assert_{name}_present"))
    return assertions


class ServingModule(tf.Module):
    """The exported model: transform graph, classifier, label vocabulary and signatures."""

    def __init__(self, classifier: Classifier, transform_output: tft.TFTransformOutput,
                 labels: List[str], uses_text_pair: bool):
        super().__init__(name="serving")
        self.classifier = classifier
        self.tft_layer = transform_output.transform_features_layer()
        self.labels = tf.Variable(labels, trainable=False, name="labels")
        self._raw_spec = transform_output.raw_feature_spec()
        self._text_names = [features.TEXT] + ([features.TEXT_PAIR] if uses_text_pair else [])
        missing = [name for name in self._text_names if name not in self._raw_spec]
        if missing:
            raise ValueError(f"the transform graph has no raw feature {missing}; it was built "
                             f"for features {sorted(self._raw_spec)}")

    def predict_transformed(self, transformed: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        logits = self.classifier(trim_to_longest(transformed), training=False)
        probabilities = tf.nn.softmax(logits, axis=-1)
        label = tf.gather(self.labels, tf.argmax(probabilities, axis=-1))
        classes = tf.tile(tf.expand_dims(tf.convert_to_tensor(self.labels), 0),
                          [tf.shape(probabilities)[0], 1])
        return {features.PROBABILITIES: probabilities, features.PREDICTED_LABEL: label,
                features.CLASSES: classes}

    def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        """Return `serving_default`, `predict_text` and `transform_features`."""
        text_spec = {name: self._raw_spec[name] for name in self._text_names}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve_examples(examples):
            raw = tf.io.parse_example(examples, text_spec)
            outputs = self.predict_transformed(self.tft_layer(raw))
            with tf.control_dependencies(_assert_features_present(raw)):
                return {name: tf.identity(value) for name, value in outputs.items()}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def transform_features(examples):
            raw = tf.io.parse_example(examples, self._raw_spec)
            return self.tft_layer(raw)

        def predict_strings(texts: Dict[str, tf.Tensor]):
            raw = {name: _as_raw_feature(texts[name], text_spec[name]) for name in texts}
            return self.predict_transformed(self.tft_layer(raw))

        if len(self._text_names) == 2:
            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.TEXT),
                                          tf.TensorSpec([None], tf.string,
                                                        name=features.TEXT_PAIR)])
            def predict_text(text, text_pair):
                return predict_strings({features.TEXT: text, features.TEXT_PAIR: text_pair})
        else:
            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=features.TEXT)])
            def predict_text(text):
                return predict_strings({features.TEXT: text})

        return {
            features.SERVING_DEFAULT: serve_examples.get_concrete_function(),
            features.PREDICT_TEXT: predict_text.get_concrete_function(),
            features.TRANSFORM_FEATURES: transform_features.get_concrete_function(),
        }


def export_serving_model(module: ServingModule, export_dir: str) -> None:
    """Save `module` as a SavedModel with its signatures to `export_dir`."""
    tf.saved_model.save(module, export_dir, signatures=module.signatures())


def label_vocabulary(configured: Optional[List[str]],
                     transform_output: tft.TFTransformOutput) -> List[str]:
    """Return the label strings in class-id order: the configured list or Transform's."""
    if configured:
        return list(configured)
    return [label.decode("utf-8") if isinstance(label, bytes) else label
            for label in transform_output.vocabulary_by_name(features.LABEL_VOCABULARY)]
