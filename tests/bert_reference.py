"""Independent NumPy BERT forward pass on Hugging Face tensor names, for parity tests.

Written from the equations of Devlin et al. 2019, "BERT: Pre-training of Deep
Bidirectional Transformers" (post-LayerNorm Transformer encoder, Vaswani et al. 2017),
in float64. It shares no code with components.backbone.
"""

import json
import os

import numpy as np
from safetensors.numpy import load_file
from scipy.special import erf


class NumpyBert:
    """BERT encoder evaluated in float64 from a Hugging Face checkpoint directory."""

    def __init__(self, checkpoint_dir: str):
        with open(os.path.join(checkpoint_dir, "config.json"), encoding="utf-8") as f:
            self.config = json.load(f)
        tensors = load_file(os.path.join(checkpoint_dir, "model.safetensors"))
        self.w = {name: value.astype(np.float64) for name, value in tensors.items()}
        self.eps = self.config.get("layer_norm_eps", 1e-12)
        self.heads = self.config["num_attention_heads"]

    def _linear(self, x, prefix):
        # PyTorch Linear: y = x W^T + b with W of shape [out, in].
        return x @ self.w[f"{prefix}.weight"].T + self.w[f"{prefix}.bias"]

    def _layer_norm(self, x, prefix):
        mean = x.mean(-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(-1, keepdims=True)
        return ((x - mean) / np.sqrt(variance + self.eps) * self.w[f"{prefix}.weight"]
                + self.w[f"{prefix}.bias"])

    @staticmethod
    def _gelu(x):
        return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))

    def _self_attention(self, x, mask, prefix):
        batch, seq, hidden = x.shape
        head_size = hidden // self.heads

        def heads(t):
            return t.reshape(batch, seq, self.heads, head_size).transpose(0, 2, 1, 3)

        q = heads(self._linear(x, f"{prefix}.self.query"))
        k = heads(self._linear(x, f"{prefix}.self.key"))
        v = heads(self._linear(x, f"{prefix}.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(head_size)
        scores = np.where(mask[:, None, None, :] > 0, scores, -np.inf)
        scores = scores - scores.max(-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
        return self._linear(context, f"{prefix}.output.dense")

    def __call__(self, word_ids, mask, type_ids):
        """Return (sequence_output, pooled_output) for int arrays of shape [batch, seq]."""
        seq = word_ids.shape[1]
        x = (self.w["embeddings.word_embeddings.weight"][word_ids]
             + self.w["embeddings.position_embeddings.weight"][:seq][None]
             + self.w["embeddings.token_type_embeddings.weight"][type_ids])
        x = self._layer_norm(x, "embeddings.LayerNorm")
        for i in range(self.config["num_hidden_layers"]):
            prefix = f"encoder.layer.{i}"
            attention = self._self_attention(x, mask, f"{prefix}.attention")
            x = self._layer_norm(x + attention, f"{prefix}.attention.output.LayerNorm")
            intermediate = self._gelu(self._linear(x, f"{prefix}.intermediate.dense"))
            x = self._layer_norm(x + self._linear(intermediate, f"{prefix}.output.dense"),
                                 f"{prefix}.output.LayerNorm")
        pooled = np.tanh(self._linear(x[:, 0], "pooler.dense"))
        return x, pooled
