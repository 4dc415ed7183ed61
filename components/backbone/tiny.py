"""Tiny randomly initialised BERT backbones for tests, exported like real checkpoints."""

import json
import os
import string
import tempfile
from typing import Dict, Iterable, List

import numpy as np

from components.backbone import checkpoint as checkpoint_lib
from components.backbone.export import export_backbone
from components.backbone.loading import BackboneInfo

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Each character is a word start. Letters and digits also get a `##` continuation, so any
# lower-cased ASCII word has a WordPiece spelling; punctuation is always split off.
_CHARACTERS = string.ascii_lowercase + string.digits + string.punctuation
_MAX_POSITIONS = 512


def build_vocabulary(extra_words: Iterable[str] = ()) -> List[str]:
    """Return special tokens, single characters, `##` characters, then `extra_words`."""
    tokens = list(SPECIAL_TOKENS)
    tokens += list(_CHARACTERS)
    tokens += [f"##{character}" for character in _CHARACTERS if character.isalnum()]
    seen = set(tokens)
    for word in extra_words:
        word = word.lower()
        if word and word not in seen:
            tokens.append(word)
            seen.add(word)
    return tokens


def _random_hf_weights(rng: np.random.Generator, *, vocab_size: int, num_layers: int,
                       hidden_size: int, intermediate_size: int,
                       stddev: float) -> Dict[str, np.ndarray]:
    """Return Hugging Face BertModel tensors (Linear weights are [out, in]) with random values."""

    def normal(*shape):
        return (rng.standard_normal(shape) * stddev).astype(np.float32)

    def layer_norm(prefix):
        return {f"{prefix}.weight": np.ones(hidden_size, np.float32),
                f"{prefix}.bias": np.zeros(hidden_size, np.float32)}

    def linear(prefix, inputs, outputs):
        return {f"{prefix}.weight": normal(outputs, inputs),
                f"{prefix}.bias": normal(outputs)}

    tensors = {
        "embeddings.word_embeddings.weight": normal(vocab_size, hidden_size),
        "embeddings.position_embeddings.weight": normal(_MAX_POSITIONS, hidden_size),
        "embeddings.token_type_embeddings.weight": normal(2, hidden_size),
        **layer_norm("embeddings.LayerNorm"),
        **linear("pooler.dense", hidden_size, hidden_size),
    }
    for i in range(num_layers):
        prefix = f"encoder.layer.{i}"
        for name in ("query", "key", "value"):
            tensors.update(linear(f"{prefix}.attention.self.{name}", hidden_size, hidden_size))
        tensors.update(linear(f"{prefix}.attention.output.dense", hidden_size, hidden_size))
        tensors.update(layer_norm(f"{prefix}.attention.output.LayerNorm"))
        tensors.update(linear(f"{prefix}.intermediate.dense", hidden_size, intermediate_size))
        tensors.update(linear(f"{prefix}.output.dense", intermediate_size, hidden_size))
        tensors.update(layer_norm(f"{prefix}.output.LayerNorm"))
    return tensors


def write_tiny_checkpoint(directory: str, *, num_layers: int = 2, hidden_size: int = 32,
                          num_heads: int = 2, intermediate_size: int = 64,
                          extra_words: Iterable[str] = (), seed: int = 0) -> None:
    """Write a random uncased BERT checkpoint in Hugging Face layout to `directory`.

    The directory gets config.json, model.safetensors, vocab.txt and
    tokenizer_config.json, the files `export_backbone` reads from real checkpoints.
    """
    from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel

    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads "
                         f"{num_heads}; choose sizes that divide evenly.")
    vocabulary = build_vocabulary(extra_words)
    config = {
        "architectures": ["BertModel"], "model_type": "bert",
        "vocab_size": len(vocabulary), "hidden_size": hidden_size,
        "num_hidden_layers": num_layers, "num_attention_heads": num_heads,
        "intermediate_size": intermediate_size, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": _MAX_POSITIONS, "type_vocab_size": 2,
        "initializer_range": 0.02, "layer_norm_eps": 1e-12,
        "position_embedding_type": "absolute", "pad_token_id": 0,
    }
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, checkpoint_lib.CONFIG_FILE), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(directory, checkpoint_lib.TOKENIZER_CONFIG_FILE), "w",
              encoding="utf-8") as f:
        json.dump({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}, f, indent=2)
    with open(os.path.join(directory, checkpoint_lib.VOCAB_FILE), "w", encoding="utf-8") as f:
        f.write("\n".join(vocabulary) + "\n")

    weights = _random_hf_weights(
        np.random.default_rng(seed), vocab_size=len(vocabulary), num_layers=num_layers,
        hidden_size=hidden_size, intermediate_size=intermediate_size,
        stddev=config["initializer_range"])
    save_file(weights, os.path.join(directory, checkpoint_lib.WEIGHTS_FILE))


def export_tiny_backbone(target_dir: str, *, num_layers: int = 2, hidden_size: int = 32,
                         num_heads: int = 2, intermediate_size: int = 64,
                         extra_words: Iterable[str] = (), seed: int = 0) -> BackboneInfo:
    """Build a random tiny BERT checkpoint and export it with `export_backbone`.

    The vocabulary has the BERT special tokens, every lower-case ASCII letter, digit and
    punctuation character, their `##` continuations and `extra_words`, so English text
    tokenizes to known tokens (mostly characters). Same `seed`, same weights.
    """
    with tempfile.TemporaryDirectory(prefix="tiny-bert-checkpoint-") as checkpoint_dir:
        write_tiny_checkpoint(checkpoint_dir, num_layers=num_layers, hidden_size=hidden_size,
                              num_heads=num_heads, intermediate_size=intermediate_size,
                              extra_words=extra_words, seed=seed)
        return export_backbone(checkpoint_dir, target_dir)
