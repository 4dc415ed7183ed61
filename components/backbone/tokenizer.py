"""WordPiece tokenizer for Transform, built from a backbone's vocabulary and lower-casing flag.

The tokenizer reproduces the BERT normalisation of the Hugging Face `tokenizers` package
(`BertNormalizer` + `BertPreTokenizer` + `WordPiece`, as in tokenizer.json of BERT
checkpoints), using TensorFlow ops only, so it runs inside the serving graph. Plain
`tensorflow_text.BertTokenizer(lower_case=True)` differs from it in three ways, handled
here (compared with tokenizers 0.23 on the MiniLM tokenizer.json):

- its lower-casing is ICU NFKC_Casefold, which also folds compatibility characters
  ("，" to ",", "…" to "...", "ﬁ" to "fi", full-width letters to ASCII) and "ß" to "ss".
  Hugging Face lower-cases each character and applies no compatibility folding;
- it replaces control characters with spaces, while Hugging Face deletes them (with NUL and
  U+FFFD), so "a\\u200bb" is one word there;
- its word length limit counts bytes, while Hugging Face counts characters (100).
"""

import functools
from typing import Union

import tensorflow as tf
import tensorflow_text as tf_text
# tensorflow_text 2.16 does not export BasicTokenizer at the top level.
from tensorflow_text.python.ops.bert_tokenizer import BasicTokenizer

from components.backbone.loading import BackboneInfo

UNKNOWN_TOKEN = "[UNK]"
# Hugging Face `max_input_chars_per_word`: longer words become the unknown token.
MAX_CHARS_PER_WORD = 100
# The longest UTF-8 encoding of a character is 4 bytes, so a word within the character
# limit never reaches the byte limit of the WordPiece op.
_MAX_BYTES_PER_WORD = 4 * MAX_CHARS_PER_WORD


def normalize_text(text: tf.Tensor, lower_case: bool) -> tf.Tensor:
    """Apply Hugging Face `BertNormalizer` cleaning, accent stripping and lower-casing.

    Splitting around CJK characters is left to the basic tokenizer, which does it too.
    """
    # Tab, newline and carriage return count as whitespace. Every other control, format,
    # private-use or surrogate character is deleted, as are NUL and U+FFFD.
    text = tf.strings.regex_replace(text, r"[\t\n\r]", " ")
    text = tf.strings.regex_replace(text, r"\p{C}|\x{FFFD}", "")
    text = tf.strings.regex_replace(text, r"\p{Z}", " ")
    if lower_case:
        # Hugging Face strips accents before lower-casing.
        text = tf_text.normalize_utf8(text, "NFD")
        text = tf.strings.regex_replace(text, r"\p{Mn}", "")
        # ICU applies the final-sigma rule when lower-casing, Hugging Face does not.
        text = tf.strings.regex_replace(text, "Σ", "σ")
        text = tf.strings.lower(text, encoding="utf-8")
    return text


class HuggingFaceBasicTokenizer(BasicTokenizer):
    """Basic BERT tokenizer that normalises like Hugging Face and marks over-long words.

    Words longer than `max_chars_per_word` characters become `unknown_token`, which the
    WordPiece step maps to its id.
    """

    def __init__(self, lower_case=False, keep_whitespace=False, normalization_form=None,
                 preserve_unused_token=False, *, max_chars_per_word=MAX_CHARS_PER_WORD,
                 unknown_token=UNKNOWN_TOKEN):
        super().__init__(lower_case=False, keep_whitespace=keep_whitespace,
                         normalization_form=normalization_form,
                         preserve_unused_token=preserve_unused_token)
        self._hf_lower_case = lower_case
        self._max_chars_per_word = max_chars_per_word
        self._unknown_token = unknown_token

    def tokenize_with_offsets(self, text_input):
        """Split normalised text into words; offsets index the normalised text."""
        text_input = normalize_text(text_input, self._hf_lower_case)
        words, begin, end = super().tokenize_with_offsets(text_input)
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > (
            self._max_chars_per_word)
        flat_words = tf.where(too_long, self._unknown_token, words.flat_values)
        return words.with_flat_values(flat_words), begin, end


def build_tokenizer(vocab: Union[str, tf.lookup.StaticVocabularyTable],
                    do_lower_case: bool) -> tf_text.BertTokenizer:
    """Return a BERT tokenizer with the vocabulary and casing of a backbone.

    `vocab` is the backbone's vocabulary file or a lookup table built from it.
    `tokenize(texts)` returns int64 ids as a RaggedTensor [batch, words, word pieces],
    without [CLS]/[SEP]. Text that spells a special token ("[SEP]") is tokenized as
    ordinary text, so user input cannot inject special tokens.
    """
    basic_tokenizer_class = functools.partial(HuggingFaceBasicTokenizer,
                                              unknown_token=UNKNOWN_TOKEN)
    return tf_text.BertTokenizer(
        vocab,
        suffix_indicator="##",
        max_bytes_per_word=_MAX_BYTES_PER_WORD,
        token_out_type=tf.int64,
        unknown_token=UNKNOWN_TOKEN,
        lower_case=do_lower_case,
        basic_tokenizer_class=basic_tokenizer_class,
    )


def tokenizer_for_backbone(info: BackboneInfo) -> tf_text.BertTokenizer:
    """Return the tokenizer that matches the vocabulary and casing of a resolved backbone."""
    return build_tokenizer(info.vocab_file, info.do_lower_case)
