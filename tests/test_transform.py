"""Transform module code run through tf.Transform's Beam implementation on a few rows."""

import shutil

import pytest
import tensorflow as tf
import tensorflow_transform as tft

import module_helpers
from components import transform


def _vocabulary(info) -> dict:
    with open(info.vocab_file, encoding="utf-8") as vocab:
        return {line.rstrip("\n"): index for index, line in enumerate(vocab)}


def _ids(vocab: dict, tokens: list) -> list:
    return [vocab[token] for token in tokens]


def _padded(values: list, length: int) -> list:
    return values + [0] * (length - len(values))


def test_single_text_exact_ids(tiny_backbone, tmp_path):
    config = module_helpers.make_config(tiny_backbone.path, max_seq_length=12)
    rows = [{"text": [b"Hi, OK"], "label": [b"pos"]},
            {"text": [b"no"], "label": [b"neg"]}]
    outputs, _ = module_helpers.analyze_and_transform(config, rows, str(tmp_path))
    vocab = _vocabulary(tiny_backbone)

    # The tiny backbone is uncased: "Hi" and "OK" are lower-cased before WordPiece.
    first = _ids(vocab, ["[CLS]", "h", "##i", ",", "o", "##k", "[SEP]"])
    assert outputs[0]["input_word_ids"].tolist() == _padded(first, 12)
    assert outputs[0]["input_mask"].tolist() == _padded([1] * 7, 12)
    assert outputs[0]["input_type_ids"].tolist() == [0] * 12
    second = _ids(vocab, ["[CLS]", "n", "##o", "[SEP]"])
    assert outputs[1]["input_word_ids"].tolist() == _padded(second, 12)
    assert [row["label_id"] for row in outputs] == [1, 0]


def test_long_text_truncated(tiny_backbone, tmp_path):
    config = module_helpers.make_config(tiny_backbone.path, max_seq_length=8)
    rows = [{"text": [b"abcdefghijkl"], "label": [b"pos"]}]
    outputs, _ = module_helpers.analyze_and_transform(config, rows, str(tmp_path))
    vocab = _vocabulary(tiny_backbone)

    expected = _ids(vocab, ["[CLS]", "a", "##b", "##c", "##d", "##e", "##f", "[SEP]"])
    assert outputs[0]["input_word_ids"].tolist() == expected
    assert outputs[0]["input_mask"].tolist() == [1] * 8


def test_pairs_truncate_longer_side(tiny_backbone, tmp_path):
    config = module_helpers.make_config(tiny_backbone.path, text_pair=True, max_seq_length=12)
    rows = [
        # 2 + 12 tokens, budget 12 - 3 = 9: the short side stays whole.
        {"text": [b"ab"], "text_pair": [b"abcdefghijkl"], "label": [b"pos"]},
        # 6 + 6 tokens: each side gives up tokens in turn, the first side keeps the odd one.
        {"text": [b"abcdef"], "text_pair": [b"ghijkl"], "label": [b"neg"]},
    ]
    outputs, _ = module_helpers.analyze_and_transform(config, rows, str(tmp_path),
                                                      text_pair=True)
    vocab = _vocabulary(tiny_backbone)

    first = _ids(vocab, ["[CLS]", "a", "##b", "[SEP]",
                         "a", "##b", "##c", "##d", "##e", "##f", "##g", "[SEP]"])
    assert outputs[0]["input_word_ids"].tolist() == first
    assert outputs[0]["input_type_ids"].tolist() == [0] * 4 + [1] * 8
    second = _ids(vocab, ["[CLS]", "a", "##b", "##c", "##d", "##e", "[SEP]",
                          "g", "##h", "##i", "##j", "[SEP]"])
    assert outputs[1]["input_word_ids"].tolist() == second
    assert outputs[1]["input_type_ids"].tolist() == [0] * 7 + [1] * 5
    assert outputs[1]["input_mask"].tolist() == [1] * 12


def test_label_vocabulary_computed(tiny_backbone, tmp_path):
    config = module_helpers.make_config(tiny_backbone.path, labels=None)
    rows = [{"text": [b"a"], "label": [label]} for label in (b"yes", b"no", b"yes", b"yes")]
    outputs, output_dir = module_helpers.analyze_and_transform(config, rows, str(tmp_path))

    # Most frequent label first.
    vocabulary = tft.TFTransformOutput(output_dir).vocabulary_by_name("label")
    assert vocabulary == [b"yes", b"no"]
    assert [row["label_id"] for row in outputs] == [0, 1, 0, 0]


def test_integer_labels_configured(tiny_backbone, tmp_path):
    config = module_helpers.make_config(tiny_backbone.path, labels=[0, 1])
    rows = [{"text": [b"a"], "label": [b"1"]}, {"text": [b"b"], "label": [b"0"]}]
    outputs, _ = module_helpers.analyze_and_transform(config, rows, str(tmp_path))
    assert [row["label_id"] for row in outputs] == [1, 0]


def test_unknown_label_fails(tiny_backbone, tmp_path):
    config = module_helpers.make_config(tiny_backbone.path)
    rows = [{"text": [b"a"], "label": [b"pos"]}, {"text": [b"b"], "label": [b"maybe"]}]
    with pytest.raises(Exception, match="is not one of neg, pos") as raised:
        module_helpers.analyze_and_transform(config, rows, str(tmp_path))
    assert "maybe" in str(raised.value)


def test_copied_output_needs_no_backbone(tiny_backbone, tmp_path):
    backbone_copy = tmp_path / "backbone"
    shutil.copytree(tiny_backbone.path, backbone_copy)
    config = module_helpers.make_config(str(backbone_copy), max_seq_length=8)
    rows = [{"text": [b"ab"], "label": [b"pos"]}]
    _, output_dir = module_helpers.analyze_and_transform(config, rows, str(tmp_path / "work"))
    moved = tmp_path / "moved"
    shutil.copytree(output_dir, moved)
    shutil.rmtree(backbone_copy)
    shutil.rmtree(output_dir)

    layer = tft.TFTransformOutput(str(moved)).transform_features_layer()
    transformed = layer({"text": tf.sparse.from_dense(tf.constant([["ab"]]))})
    vocab = _vocabulary(tiny_backbone)
    expected = _padded(_ids(vocab, ["[CLS]", "a", "##b", "[SEP]"]), 8)
    assert transformed["input_word_ids"].numpy().tolist() == [expected]
    # Serving inputs have no label, so the label output is pruned.
    assert "label_id" not in transformed


def test_dense_strings_accepts_raw_shapes():
    sparse = tf.sparse.SparseTensor([[0, 0], [2, 0]], [b"a", b"c"], [3, 1])
    assert transform.dense_strings(sparse).numpy().tolist() == [b"a", b"", b"c"]
    empty = tf.sparse.SparseTensor(tf.zeros([0, 2], tf.int64), tf.constant([], tf.string), [2, 0])
    assert transform.dense_strings(empty).numpy().tolist() == [b"", b""]
    assert transform.dense_strings(tf.constant([[b"x"], [b"y"]])).numpy().tolist() == [b"x", b"y"]
    assert transform.dense_strings(tf.constant([3, 4], tf.int64)).numpy().tolist() == [b"3", b"4"]


def test_encoder_matches_checkpoint_tokenizer(minilm_backbone):
    """Transform's model inputs equal the checkpoint tokenizer.json encoding, [CLS]/[SEP] included."""
    import os

    from tokenizers import Tokenizer

    from components.backbone import checkpoint as checkpoint_lib

    reference = Tokenizer.from_file(
        os.path.join(checkpoint_lib.resolve_source_dir("minilm"), "tokenizer.json")
    )
    reference.no_padding()
    reference.no_truncation()
    texts = [
        "酒店位置很好，服务也不错…",
        "Ｆｕｌｌ-width ＡＢＣ and the ﬁle",
        "Crème brûlée at the café 😀 https://example.com/a?b=1",
    ]
    encoder = transform.WordPieceEncoder(minilm_backbone.vocab_file, minilm_backbone.do_lower_case, 64)
    encoded = encoder.encode(tf.constant(texts))
    for row, text in enumerate(texts):
        expected = reference.encode(text).ids
        length = int(encoded["input_mask"][row].numpy().sum())
        assert encoded["input_word_ids"][row, :length].numpy().tolist() == expected, text
