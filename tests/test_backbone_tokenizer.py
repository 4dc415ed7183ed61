"""Tokenizer built from exported backbone assets against the checkpoint's reference tokenizer."""

import os

import pytest

from components.backbone import checkpoint as checkpoint_lib
from components.backbone.tokenizer import build_tokenizer, tokenizer_for_backbone
from backbone_data import chnsenticorp_reviews, sst2_dev_sentences

HARD_CASES = [
    "Café naïve résumé Ångström",
    "Straße STRASSE ẞ",
    "ΣΊΣΥΦΟΣ σοφός ὈΔΥΣΣΕΎΣ",
    "İstanbul DİYARBAKIR",
    "ﬁnance ﬂow",
    "１２３ＡＢＣ full-width，punctuation！",
    "don't ‘quoted’ “double” — dash … ellipsis",
    "Ǆ ǅ ǆ K Å Ω x²³ ½ ①",
    "e\u0301 combining acute",
    "I love it 😀👍🏽!! family 👨‍👩‍👧",
    "see https://example.com/a?b=c&d=e#frag and www.test.org/path_1",
    "a" * 150,
    "b" * 101,
    "c" * 100,
    "é" * 60,
    "ж" * 60,
    "ж" * 99,
    "ж" * 101,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "Mixed 中文 text with 日本語, 한국어, Ελληνικά, русский and 𠀀𠀁",
    "हिन्दी भाषा and ภาษาไทย",
    "tab\there\u00a0nbsp\u2003emsp\u3000ideographic",
    "zero\u200bwidth soft\u00adhyphen bom\ufeffhere",
    "ctrl\x07bell\x0bvt\x0cff\x85nel nul\x00byte replacement\ufffdchar",
    "private\ue000use",
    "[CLS] [SEP] [UNK] [MASK] [PAD] [unused1]",
    "",
    "   ",
]


@pytest.fixture(scope="module")
def reference_tokenizer():
    """The checkpoint's tokenizer.json, treating text that spells special tokens as text."""
    from tokenizers import Tokenizer

    minilm_dir = checkpoint_lib.resolve_source_dir("minilm")
    tokenizer = Tokenizer.from_file(os.path.join(minilm_dir, "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    # User text must not inject [SEP] or [CLS] into a classifier's input, so the
    # reference splits special-token spellings like any other text.
    tokenizer.encode_special_tokens = True
    return tokenizer


def _mismatches(tokenizer, reference, texts):
    ids = tokenizer.tokenize(texts).merge_dims(-2, -1).to_list()
    mismatches = []
    for text, got in zip(texts, ids):
        expected = reference.encode(text, add_special_tokens=False)
        if got != expected.ids:
            mismatches.append((text[:60], expected.tokens[:20],
                               [reference.id_to_token(i) for i in got][:20]))
    return mismatches


@pytest.fixture(scope="module")
def minilm_tokenizer(minilm_backbone):
    return tokenizer_for_backbone(minilm_backbone)


def test_tokenizer_matches_reference_sst2(minilm_tokenizer, reference_tokenizer):
    texts = sst2_dev_sentences(200)
    assert len(texts) == 200
    assert _mismatches(minilm_tokenizer, reference_tokenizer, texts) == []


def test_tokenizer_matches_reference_chinese(minilm_tokenizer, reference_tokenizer):
    texts = chnsenticorp_reviews(50)
    assert len(texts) == 50
    assert _mismatches(minilm_tokenizer, reference_tokenizer, texts) == []


def test_tokenizer_matches_reference_hard_cases(minilm_tokenizer, reference_tokenizer):
    assert _mismatches(minilm_tokenizer, reference_tokenizer, HARD_CASES) == []


def test_tokenizer_long_word_is_unknown(minilm_tokenizer):
    ids = minilm_tokenizer.tokenize(["ж" * 101, "ж" * 100]).to_list()
    assert ids[0] == [[100]]
    assert len(ids[1][0]) > 1


def test_cased_tokenizer_keeps_case(tmp_path):
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("\n".join(["[PAD]", "[UNK]", "Café", "café", "cafe"]) + "\n",
                          encoding="utf-8")

    cased = build_tokenizer(str(vocab_file), do_lower_case=False)
    uncased = build_tokenizer(str(vocab_file), do_lower_case=True)

    assert cased.tokenize(["Café café"]).to_list() == [[[2], [3]]]
    assert uncased.tokenize(["Café café"]).to_list() == [[[4], [4]]]


def test_tokenizer_runs_in_graph(minilm_tokenizer):
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(texts):
        return minilm_tokenizer.tokenize(texts).merge_dims(-2, -1).to_tensor()

    eager = minilm_tokenizer.tokenize(["Straße ﬁnance"]).merge_dims(-2, -1).to_tensor()
    assert tokenize(tf.constant(["Straße ﬁnance"])).numpy().tolist() == eager.numpy().tolist()


def test_tokenizer_accepts_lookup_table(minilm_backbone, minilm_tokenizer):
    import tensorflow as tf

    initializer = tf.lookup.TextFileInitializer(
        minilm_backbone.vocab_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
        tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
    table = tf.lookup.StaticVocabularyTable(initializer, num_oov_buckets=1)
    texts = ["Straße，ﬁnance…", "Hôtel 中文 " + "ж" * 101]

    from_table = build_tokenizer(table, do_lower_case=True).tokenize(texts).to_list()

    assert from_table == minilm_tokenizer.tokenize(texts).to_list()
