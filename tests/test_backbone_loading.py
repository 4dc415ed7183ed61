"""Backbone handle resolution, interface checks, layer indices and the Keras round trip."""

import hashlib
import os
import shutil
import socket
import time

import numpy as np
import pytest

from components.backbone.loading import (BackboneInfo, BackboneInterfaceError,
                                         BackboneNotFoundError, layer_index,
                                         resolve_backbone)


@pytest.mark.parametrize("name, expected", [
    ("transformer/layer_0/self_attention/query/kernel:0", 0),
    ("transformer/layer_11/output_layer_norm/gamma:0", 11),
    ("model/keras_layer/transformer/layer_3/intermediate/bias:0", 3),
    ("word_embeddings/embeddings:0", None),
    ("pooler_transform/kernel:0", None),
    ("dense/kernel:0", None),
    ("my_transformer/layer_2/kernel:0", None),
])
def test_layer_index(name, expected):
    assert layer_index(name) == expected


def test_resolve_local_export(tiny_backbone):
    info = resolve_backbone(tiny_backbone.path)

    assert info == tiny_backbone
    assert isinstance(info, BackboneInfo)
    assert (info.num_layers, info.hidden_size, info.do_lower_case) == (2, 32, True)
    with open(info.vocab_file, encoding="utf-8") as f:
        assert sum(1 for _ in f) == info.vocab_size


def test_resolve_finds_model_in_artifact(tiny_backbone, tmp_path):
    artifact = tmp_path / "Trainer" / "model" / "7"
    shutil.copytree(tiny_backbone.path, artifact / "Format-Serving")
    # An interrupted export in a hidden folder must not count as a second model.
    shutil.copytree(tiny_backbone.path, artifact / ".backbone.partial-x")

    info = resolve_backbone(str(tmp_path / "Trainer"))

    assert info.path == str(artifact / "Format-Serving")
    assert info.num_layers == 2


def test_resolve_rejects_two_models(tiny_backbone, tmp_path):
    shutil.copytree(tiny_backbone.path, tmp_path / "a")
    shutil.copytree(tiny_backbone.path, tmp_path / "b")

    with pytest.raises(BackboneInterfaceError) as error:
        resolve_backbone(str(tmp_path))
    assert str(tmp_path / "a") in str(error.value)
    assert str(tmp_path / "b") in str(error.value)


def test_resolve_missing_path(tmp_path):
    handle = str(tmp_path / "nowhere")
    with pytest.raises(BackboneNotFoundError) as error:
        resolve_backbone(handle)
    assert handle in str(error.value)
    assert "export-backbone" in str(error.value)


def _closed_loopback_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_resolve_unreachable_url_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "cache"))
    handle = f"http://127.0.0.1:{_closed_loopback_port()}/models/bert_en_uncased/4"

    started = time.monotonic()
    with pytest.raises(BackboneNotFoundError) as error:
        resolve_backbone(handle)

    assert time.monotonic() - started < 10
    message = str(error.value)
    assert handle in message
    assert "TFHUB_CACHE_DIR" in message
    assert "export-backbone" in message
    assert hashlib.sha1(handle.encode("utf-8")).hexdigest() in message


def test_resolve_url_from_hub_cache(tiny_backbone, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    # A port nothing listens on: a download attempt would fail, so success proves the
    # cached copy was used.
    handle = f"https://127.0.0.1:{_closed_loopback_port()}/models/tiny_bert/1"
    shutil.copytree(tiny_backbone.path, cache / hashlib.sha1(handle.encode()).hexdigest())

    info = resolve_backbone(handle)

    assert info.path.startswith(str(cache))
    assert info.num_layers == tiny_backbone.num_layers


def _save_module(path, inputs, outputs, with_assets=True):
    import tensorflow as tf

    root = tf.train.Checkpoint()
    root.scale = tf.Variable(1.0)

    def call(features, training=False):
        del training
        values = tf.cast(features[inputs[0]], tf.float32)[..., tf.newaxis] * root.scale
        return {name: values for name in outputs}

    spec = {name: tf.TensorSpec([None, None], tf.int32) for name in inputs}
    root.__call__ = tf.function(call)
    root.__call__.get_concrete_function(spec, training=False)
    if with_assets:
        vocab = os.path.join(os.path.dirname(path), "vocab.txt")
        with open(vocab, "w", encoding="utf-8") as f:
            f.write("[PAD]\n[UNK]\n")
        root.vocab_file = tf.saved_model.Asset(vocab)
        root.do_lower_case = tf.Variable(True, trainable=False)
    tf.saved_model.save(root, path)


def test_resolve_rejects_missing_interface_names(tmp_path):
    path = str(tmp_path / "model")
    _save_module(path, inputs=["input_word_ids"], outputs=["pooled_output"])

    with pytest.raises(BackboneInterfaceError) as error:
        resolve_backbone(path)

    message = str(error.value)
    for name in ("input_mask", "input_type_ids", "sequence_output", "encoder_outputs"):
        assert name in message
    assert "missing attributes []" in message


def test_resolve_rejects_missing_assets(tmp_path):
    path = str(tmp_path / "model")
    _save_module(path, inputs=["input_word_ids", "input_mask", "input_type_ids"],
                 outputs=["pooled_output", "sequence_output", "encoder_outputs"],
                 with_assets=False)

    with pytest.raises(BackboneInterfaceError, match=r"\['vocab_file', 'do_lower_case'\]"):
        resolve_backbone(path)


def _classifier(info):
    import tensorflow_hub as hub
    import tf_keras

    inputs = {name: tf_keras.Input(shape=(None,), dtype="int32", name=name)
              for name in ("input_word_ids", "input_mask", "input_type_ids")}
    encoder = hub.KerasLayer(info.path, trainable=True, name="encoder")
    pooled = encoder(inputs)["pooled_output"]
    logits = tf_keras.layers.Dense(2, name="head")(pooled)
    model = tf_keras.Model(inputs, logits)
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.parametrize("backbone", ["tiny_backbone", "minilm_backbone"])
def test_keras_round_trip(backbone, request, tmp_path):
    import tensorflow_hub as hub
    import tf_keras

    info = request.getfixturevalue(backbone)
    rng = np.random.default_rng(0)
    features = {
        "input_word_ids": rng.integers(5, info.vocab_size, size=(8, 12)).astype(np.int32),
        "input_mask": np.ones((8, 12), np.int32),
        "input_type_ids": np.zeros((8, 12), np.int32),
    }
    features["input_mask"][:4, 9:] = 0
    labels = np.array([0, 1] * 4)
    model = _classifier(info)
    encoder_weight = next(w for w in model.trainable_weights
                          if w.name.endswith("transformer/layer_0/intermediate/kernel:0"))
    before_step = encoder_weight.numpy().copy()

    model.train_on_batch(features, labels)
    after_step = model.predict(features, verbose=0)
    model.save(str(tmp_path / "classifier"))
    reloaded = tf_keras.models.load_model(str(tmp_path / "classifier"),
                                          custom_objects={"KerasLayer": hub.KerasLayer})

    assert np.abs(encoder_weight.numpy() - before_step).max() > 0
    np.testing.assert_array_equal(reloaded.predict(features, verbose=0), after_step)
