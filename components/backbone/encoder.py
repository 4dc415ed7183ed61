"""BERT encoder as a `tf.Module` with the input and output dicts of the TF Hub BERT encoders."""

import math
from typing import Dict, Mapping

import numpy as np
import tensorflow as tf

from components.backbone.checkpoint import BertConfig

INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")
# Added to the attention logits of padded key positions; exp() of it underflows to 0.
_MASK_LOGIT = -1e9


def input_specs() -> Dict[str, tf.TensorSpec]:
    """Return the [batch, seq] int32 input specs of the Hub BERT encoder interface."""
    return {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES}


def _activation(name: str):
    if name == "gelu":
        return lambda x: tf.nn.gelu(x, approximate=False)
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: tf.nn.gelu(x, approximate=True)
    return tf.nn.relu


class BertEncoder(tf.Module):
    """Post-LayerNorm BERT encoder whose variables carry the official TF Hub encoder names.

    It takes a dict of int32 [batch, seq] `input_word_ids`, `input_mask` and
    `input_type_ids`. It returns `sequence_output` [batch, seq, hidden], `pooled_output`
    [batch, hidden] (tanh dense on the first token) and `encoder_outputs`, the list of
    each layer's output. Dropout applies only when `training` is True.
    """

    def __init__(self, config: BertConfig, weights: Mapping[str, np.ndarray]):
        super().__init__(name="bert_encoder")
        self._config = config
        self._activation = _activation(config.hidden_act)
        # Names passed explicitly so that they survive SavedModel export unchanged.
        self._vars = {name: tf.Variable(value, name=name, trainable=True)
                      for name, value in weights.items()}

    @property
    def ordered_variables(self):
        """The weights sorted by variable name, so exports list them in a fixed order."""
        return [self._vars[name] for name in sorted(self._vars)]

    def _dense(self, x, prefix):
        return tf.matmul(x, self._vars[f"{prefix}/kernel"]) + self._vars[f"{prefix}/bias"]

    def _layer_norm(self, x, prefix):
        mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
        normed = (x - mean) * tf.math.rsqrt(variance + self._config.layer_norm_eps)
        return normed * self._vars[f"{prefix}/gamma"] + self._vars[f"{prefix}/beta"]

    def _dropout(self, x, rate, training):
        if training and rate > 0:
            return tf.nn.dropout(x, rate=rate)
        return x

    def _split_heads(self, x, batch, seq):
        x = tf.reshape(x, [batch, seq, self._config.num_heads, self._config.head_size])
        return tf.transpose(x, [0, 2, 1, 3])

    def _attention(self, x, mask_logits, prefix, batch, seq, training):
        query = self._split_heads(self._dense(x, f"{prefix}/query"), batch, seq)
        key = self._split_heads(self._dense(x, f"{prefix}/key"), batch, seq)
        value = self._split_heads(self._dense(x, f"{prefix}/value"), batch, seq)
        logits = tf.matmul(query, key, transpose_b=True)
        logits = logits / math.sqrt(self._config.head_size) + mask_logits
        probs = self._dropout(tf.nn.softmax(logits, axis=-1),
                              self._config.attention_dropout_prob, training)
        context = tf.transpose(tf.matmul(probs, value), [0, 2, 1, 3])
        context = tf.reshape(context, [batch, seq, self._config.hidden_size])
        return self._dense(context, f"{prefix}/attention_output")

    def _transformer_layer(self, x, mask_logits, index, batch, seq, training):
        prefix = f"transformer/layer_{index}"
        rate = self._config.hidden_dropout_prob
        attention = self._attention(x, mask_logits, f"{prefix}/self_attention", batch, seq,
                                    training)
        x = self._layer_norm(x + self._dropout(attention, rate, training),
                             f"{prefix}/self_attention_layer_norm")
        intermediate = self._activation(self._dense(x, f"{prefix}/intermediate"))
        output = self._dense(intermediate, f"{prefix}/output")
        return self._layer_norm(x + self._dropout(output, rate, training),
                                f"{prefix}/output_layer_norm")

    def __call__(self, inputs: Mapping[str, tf.Tensor], training: bool = False):
        word_ids = tf.cast(inputs["input_word_ids"], tf.int32)
        mask = tf.cast(inputs["input_mask"], tf.float32)
        type_ids = tf.cast(inputs["input_type_ids"], tf.int32)
        batch, seq = tf.shape(word_ids)[0], tf.shape(word_ids)[1]

        # A gather, unlike a slice, has no static shape conflict for over-long inputs, so
        # the assertion runs first and names the limit.
        check_length = tf.debugging.assert_less_equal(
            seq, self._config.max_position_embeddings,
            message=f"sequence length exceeds max_position_embeddings "
                    f"({self._config.max_position_embeddings}) of this encoder")
        with tf.control_dependencies([check_length]):
            position_ids = tf.range(seq)
        positions = tf.gather(self._vars["position_embedding/embeddings"], position_ids)
        embeddings = (tf.gather(self._vars["word_embeddings/embeddings"], word_ids)
                      + positions[tf.newaxis]
                      + tf.gather(self._vars["type_embeddings/embeddings"], type_ids))
        x = self._layer_norm(embeddings, "embeddings/layer_norm")
        x = self._dropout(x, self._config.hidden_dropout_prob, training)

        mask_logits = (1.0 - mask)[:, tf.newaxis, tf.newaxis, :] * _MASK_LOGIT
        encoder_outputs = []
        for index in range(self._config.num_layers):
            x = self._transformer_layer(x, mask_logits, index, batch, seq, training)
            encoder_outputs.append(x)

        pooled = tf.tanh(self._dense(x[:, 0, :], "pooler_transform"))
        return {"sequence_output": x, "pooled_output": pooled,
                "encoder_outputs": encoder_outputs}
