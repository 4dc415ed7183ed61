"""Export of Hugging Face BERT checkpoints to the TF Hub encoder format."""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from components.backbone import checkpoint as checkpoint_lib
from components.backbone.export import export_backbone
from components.backbone.loading import layer_index
from components.backbone.tiny import build_vocabulary, write_tiny_checkpoint
from backbone_data import sst2_dev_sentences
from bert_reference import NumpyBert

MINILM_DIR = checkpoint_lib.resolve_source_dir("minilm")
PARITY_ATOL = 1e-4


def _encoder_outputs(info, word_ids, mask, type_ids):
    import tensorflow as tf
    import tensorflow_hub as hub

    layer = hub.KerasLayer(info.path, trainable=True)
    outputs = layer({"input_word_ids": tf.constant(word_ids, tf.int32),
                     "input_mask": tf.constant(mask, tf.int32),
                     "input_type_ids": tf.constant(type_ids, tf.int32)}, training=False)
    return outputs["sequence_output"].numpy(), outputs["pooled_output"].numpy()


def _random_batch(seed, vocab_size, batch=4, seq=24):
    rng = np.random.default_rng(seed)
    word_ids = rng.integers(0, vocab_size, size=(batch, seq))
    lengths = np.array([seq, seq // 2, 3, seq - 5])[:batch]
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    type_ids = (rng.random((batch, seq)) < 0.5).astype(np.int64) * mask
    return word_ids, mask, type_ids


def _sst2_batch(count):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(MINILM_DIR, "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(sst2_dev_sentences(count))
    word_ids = np.array([e.ids for e in encodings])
    mask = np.array([e.attention_mask for e in encodings])
    type_ids = np.array([e.type_ids for e in encodings])
    return word_ids, mask, type_ids


def test_minilm_parity_random_ids(minilm_backbone):
    word_ids, mask, type_ids = _random_batch(seed=1, vocab_size=minilm_backbone.vocab_size)
    expected_sequence, expected_pooled = NumpyBert(MINILM_DIR)(word_ids, mask, type_ids)

    sequence, pooled = _encoder_outputs(minilm_backbone, word_ids, mask, type_ids)

    assert sequence.dtype == np.float32
    assert np.abs(sequence - expected_sequence).max() < PARITY_ATOL
    assert np.abs(pooled - expected_pooled).max() < PARITY_ATOL


def test_minilm_parity_sst2_sentences(minilm_backbone):
    word_ids, mask, type_ids = _sst2_batch(50)
    assert (mask == 0).any(), "the batch must contain padding to test the attention mask"
    expected_sequence, expected_pooled = NumpyBert(MINILM_DIR)(word_ids, mask, type_ids)

    sequence, pooled = _encoder_outputs(minilm_backbone, word_ids, mask, type_ids)

    assert np.abs(sequence - expected_sequence).max() < PARITY_ATOL
    assert np.abs(pooled - expected_pooled).max() < PARITY_ATOL


def test_minilm_padding_does_not_change_tokens(minilm_backbone):
    word_ids, mask, type_ids = _sst2_batch(2)
    length = int(mask[0].sum())
    short = (word_ids[:1, :length], mask[:1, :length], type_ids[:1, :length])
    padded = (np.pad(short[0], ((0, 0), (0, 7))), np.pad(short[1], ((0, 0), (0, 7))),
              np.pad(short[2], ((0, 0), (0, 7))))

    sequence_short, pooled_short = _encoder_outputs(minilm_backbone, *short)
    sequence_padded, pooled_padded = _encoder_outputs(minilm_backbone, *padded)

    np.testing.assert_allclose(sequence_padded[:, :length], sequence_short, atol=1e-5)
    np.testing.assert_allclose(pooled_padded, pooled_short, atol=1e-5)


def test_minilm_variable_names_carry_layers(minilm_backbone):
    import tensorflow as tf

    loaded = tf.saved_model.load(minilm_backbone.path)
    names = [variable.name for variable in loaded.trainable_variables]
    layers = {layer_index(name) for name in names} - {None}
    unlayered = sorted(name for name in names if layer_index(name) is None)

    assert layers == set(range(6))
    assert unlayered == sorted([
        "embeddings/layer_norm/beta:0", "embeddings/layer_norm/gamma:0",
        "pooler_transform/bias:0", "pooler_transform/kernel:0",
        "position_embedding/embeddings:0", "type_embeddings/embeddings:0",
        "word_embeddings/embeddings:0"])
    assert "transformer/layer_5/self_attention/query/kernel:0" in names
    assert "transformer/layer_0/output_layer_norm/gamma:0" in names


def test_minilm_assets_match_checkpoint(minilm_backbone):
    with open(minilm_backbone.vocab_file, "rb") as exported, \
            open(os.path.join(MINILM_DIR, "vocab.txt"), "rb") as original:
        assert exported.read() == original.read()
    assert minilm_backbone.vocab_file.startswith(minilm_backbone.path)
    assert minilm_backbone.do_lower_case is True
    assert (minilm_backbone.num_layers, minilm_backbone.hidden_size,
            minilm_backbone.vocab_size) == (6, 384, 30522)


def test_minilm_checkpoint_has_pooler():
    tensors = load_file(os.path.join(MINILM_DIR, "model.safetensors"))
    assert tensors["pooler.dense.weight"].shape == (384, 384)
    assert np.abs(tensors["pooler.dense.weight"]).max() > 0


def test_training_flag_enables_dropout(tiny_backbone):
    import tensorflow as tf
    import tensorflow_hub as hub

    layer = hub.KerasLayer(tiny_backbone.path, trainable=True)
    word_ids, mask, type_ids = _random_batch(seed=2, vocab_size=tiny_backbone.vocab_size)
    inputs = {"input_word_ids": tf.constant(word_ids, tf.int32),
              "input_mask": tf.constant(mask, tf.int32),
              "input_type_ids": tf.constant(type_ids, tf.int32)}

    inference = [layer(inputs, training=False)["pooled_output"].numpy() for _ in range(2)]
    training = layer(inputs, training=True)["pooled_output"].numpy()

    np.testing.assert_array_equal(inference[0], inference[1])
    assert np.abs(training - inference[0]).max() > 1e-4


def test_tiny_parity_with_reference(tmp_path):
    checkpoint_dir = str(tmp_path / "checkpoint")
    write_tiny_checkpoint(checkpoint_dir, num_layers=1, hidden_size=16, num_heads=4,
                          intermediate_size=24, seed=3)
    info = export_backbone(checkpoint_dir, str(tmp_path / "exported"))
    word_ids, mask, type_ids = _random_batch(seed=4, vocab_size=info.vocab_size)

    expected_sequence, expected_pooled = NumpyBert(checkpoint_dir)(word_ids, mask, type_ids)
    sequence, pooled = _encoder_outputs(info, word_ids, mask, type_ids)

    assert (info.num_layers, info.hidden_size) == (1, 16)
    assert np.abs(sequence - expected_sequence).max() < PARITY_ATOL
    assert np.abs(pooled - expected_pooled).max() < PARITY_ATOL


def test_tiny_vocabulary_covers_english(tiny_backbone):
    from components.backbone.tokenizer import tokenizer_for_backbone

    tokenizer = tokenizer_for_backbone(tiny_backbone)
    ids = tokenizer.tokenize(sst2_dev_sentences(50)).flat_values.numpy()
    unknown_id = build_vocabulary().index("[UNK]")

    assert len(ids) > 1000
    assert np.mean(ids == unknown_id) < 0.01


def test_tiny_extra_words_are_whole_tokens():
    vocabulary = build_vocabulary(extra_words=("Movie", "the", "movie"))
    assert vocabulary[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert vocabulary.count("movie") == 1
    assert "the" in vocabulary
    assert "##e" in vocabulary


def test_export_rejects_existing_target(tiny_backbone):
    with pytest.raises(FileExistsError, match="overwrite"):
        export_backbone("minilm", tiny_backbone.path)


def test_export_overwrite_replaces_model(tmp_path):
    first_dir, second_dir = str(tmp_path / "first"), str(tmp_path / "second")
    write_tiny_checkpoint(first_dir, num_layers=1)
    write_tiny_checkpoint(second_dir, num_layers=2)
    target = str(tmp_path / "backbone")

    assert export_backbone(first_dir, target).num_layers == 1
    assert export_backbone(second_dir, target, overwrite=True).num_layers == 2
    assert sorted(os.listdir(tmp_path)) == ["backbone", "first", "second"]


def test_failed_export_leaves_nothing(tmp_path, monkeypatch):
    import tensorflow as tf

    checkpoint_dir = str(tmp_path / "checkpoint")
    write_tiny_checkpoint(checkpoint_dir, num_layers=1)
    output_dir = tmp_path / "out"

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        export_backbone(checkpoint_dir, str(output_dir / "backbone"))

    assert os.listdir(output_dir) == []


def test_export_rejects_other_model_type(tmp_path):
    checkpoint_dir = str(tmp_path / "checkpoint")
    write_tiny_checkpoint(checkpoint_dir, num_layers=1)
    config_path = os.path.join(checkpoint_dir, "config.json")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    config["model_type"] = "roberta"
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f)

    with pytest.raises(ValueError, match="model_type 'roberta'"):
        export_backbone(checkpoint_dir, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def test_export_rejects_vocab_size_mismatch(tmp_path):
    checkpoint_dir = str(tmp_path / "checkpoint")
    write_tiny_checkpoint(checkpoint_dir, num_layers=1)
    with open(os.path.join(checkpoint_dir, "vocab.txt"), "a", encoding="utf-8") as f:
        f.write("extra\n")

    with pytest.raises(ValueError, match="vocab_size"):
        export_backbone(checkpoint_dir, str(tmp_path / "out"))


def test_missing_pooler_gets_fresh_weights(tmp_path):
    checkpoint_dir = str(tmp_path / "checkpoint")
    write_tiny_checkpoint(checkpoint_dir, num_layers=1, hidden_size=64, num_heads=2)
    weights_path = os.path.join(checkpoint_dir, "model.safetensors")
    tensors = {name: value for name, value in load_file(weights_path).items()
               if not name.startswith("pooler.")}
    save_file(tensors, weights_path)

    config = checkpoint_lib.read_config(checkpoint_dir)
    converted = checkpoint_lib.convert_weights(tensors, config, weights_path)
    kernel = converted["pooler_transform/kernel"]

    assert kernel.shape == (64, 64)
    assert 0.015 < kernel.std() < 0.025
    assert not converted["pooler_transform/bias"].any()
    assert export_backbone(checkpoint_dir, str(tmp_path / "out")).hidden_size == 64


def test_task_checkpoint_prefix_is_stripped(tmp_path):
    checkpoint_dir = str(tmp_path / "checkpoint")
    write_tiny_checkpoint(checkpoint_dir, num_layers=1)
    weights_path = os.path.join(checkpoint_dir, "model.safetensors")
    tensors = load_file(weights_path)
    prefixed = {f"bert.{name}": value for name, value in tensors.items()}
    prefixed["classifier.weight"] = np.zeros((2, 32), np.float32)
    config = checkpoint_lib.read_config(checkpoint_dir)

    plain = checkpoint_lib.convert_weights(tensors, config, weights_path)
    stripped = checkpoint_lib.convert_weights(prefixed, config, weights_path)

    assert plain.keys() == stripped.keys()
    for name in plain:
        np.testing.assert_array_equal(plain[name], stripped[name])


def test_cli_exports_backbone(tmp_path):
    from pipeline import cli

    checkpoint_dir = str(tmp_path / "checkpoint")
    write_tiny_checkpoint(checkpoint_dir, num_layers=1)
    target = str(tmp_path / "exported")

    assert cli.main(["export-backbone", "--from", checkpoint_dir, "--to", target]) == 0
    assert os.path.isfile(os.path.join(target, "saved_model.pb"))


def test_sequence_longer_than_positions_fails(tiny_backbone):
    import tensorflow as tf

    word_ids, mask, type_ids = (np.ones((1, 513), np.int64),) * 3

    # hub.KerasLayer re-raises errors of the called function as ValueError.
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError),
                       match="max_position_embeddings"):
        _encoder_outputs(tiny_backbone, word_ids, mask, type_ids)
