"""Classify raw texts with a pushed textxfer model through its `predict_text` signature.

Only TensorFlow and tensorflow-text are imported: the same as a serving process needs.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence


def find_saved_model(model_dir: str) -> str:
    """Return `model_dir` if it is a SavedModel, else its newest version subdirectory."""
    if os.path.exists(os.path.join(model_dir, "saved_model.pb")):
        return model_dir
    versions = sorted(
        (entry for entry in os.listdir(model_dir) if entry.isdigit()), key=int
    ) if os.path.isdir(model_dir) else []
    for version in reversed(versions):
        candidate = os.path.join(model_dir, version)
        if os.path.exists(os.path.join(candidate, "saved_model.pb")):
            return candidate
    raise FileNotFoundError(
        f"no SavedModel in {model_dir!r}: pass a pushed model version directory or the "
        "serving directory above it (output.dir/serving)"
    )


def predict(model_dir: str, texts: Sequence[str], text_pairs: Optional[Sequence[str]] = None) -> list:
    """Return one `{"text", "label", "probabilities": {label: p}}` dict per input text."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  Registers the tf.text ops the tokenizer graph uses.

    model = tf.saved_model.load(find_saved_model(model_dir))
    signature = model.signatures["predict_text"]
    inputs = {"text": tf.constant(list(texts))}
    if "text_pair" in signature.structured_input_signature[1]:
        if not text_pairs or len(text_pairs) != len(texts):
            raise ValueError(
                f"this model was trained on sentence pairs: pass one --pair per text ({len(texts)})"
            )
        inputs["text_pair"] = tf.constant(list(text_pairs))
    elif text_pairs:
        raise ValueError("this model takes single texts, but --pair was given")
    outputs = signature(**inputs)

    probabilities = outputs["probabilities"].numpy()
    labels = [value.decode("utf-8") for value in outputs["label"].numpy()]
    if "classes" in outputs:
        class_names = [[name.decode("utf-8") for name in row] for row in outputs["classes"].numpy()]
    else:
        class_names = [[str(index) for index in range(probabilities.shape[1])]] * len(texts)
    return [
        {
            "text": text,
            "label": label,
            "probabilities": dict(zip(names, (float(p) for p in row))),
        }
        for text, label, names, row in zip(texts, labels, class_names, probabilities)
    ]


def format_predictions(predictions: list) -> str:
    lines = []
    for prediction in predictions:
        scores = "  ".join(f"{name}={p:.3f}" for name, p in prediction["probabilities"].items())
        lines.append(f"{prediction['label']}\t{scores}\t{prediction['text']}")
    return "\n".join(lines)
