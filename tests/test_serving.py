"""Serving signatures of exported models, called from a fresh TensorFlow-only process.

One module fixture trains a single-text and a text-pair model and sends every request to
one `serving_client.py` subprocess, which imports only TensorFlow and tensorflow-text. The
tests compare its outputs with the same signatures called in this process, where the whole
training stack is loaded.
"""

import base64
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import module_helpers

CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serving_client.py")
LABELS = ["neg", "pos"]
TEXTS = ["good movie", "bad movie so", ""]
PAIRS = [("good", "movie"), ("bad", "movie"), ("", "")]


def _example(**features) -> str:
    """Return a serialized tf.Example with the given bytes features, base64-encoded."""
    example = tf.train.Example(features=tf.train.Features(feature={
        name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        for name, value in features.items()}))
    return base64.b64encode(example.SerializeToString()).decode()


def _text_request(model, signature="predict_text", **inputs):
    return {"model": model, "signature": signature, "inputs": inputs}


def _example_request(model, examples):
    return {"model": model, "signature": "serving_default", "inputs": {"examples": examples},
            "base64": True}


REQUESTS = {
    "text_batch": _text_request("single", text=TEXTS),
    "text_one": _text_request("single", text=["bad movie"]),
    "text_missing": _text_request("single"),
    "examples_batch": _example_request("single", [_example(text=text) for text in TEXTS]),
    "examples_one": _example_request("single", [_example(text="bad movie")]),
    "examples_missing": _example_request(
        "single", [_example(text="good movie"), _example(label="pos")]),
    "pair_batch": _text_request("pair", text=[a for a, _ in PAIRS],
                                text_pair=[b for _, b in PAIRS]),
    "pair_one": _text_request("pair", text=["good"], text_pair=["movie"]),
    "pair_without_second_text": _text_request("pair", text=["good"]),
    "pair_examples": _example_request(
        "pair", [_example(text=a, text_pair=b) for a, b in PAIRS]),
    "pair_examples_missing": _example_request("pair", [_example(text="good")]),
}


@pytest.fixture(scope="module")
def served(tiny_backbone, tmp_path_factory):
    """Return (model dirs, outputs from the fresh process)."""
    work_dir = tmp_path_factory.mktemp("serving")
    _, _, single_dir, _ = module_helpers.train_tiny_classifier(
        tiny_backbone.path, str(work_dir / "single"), module_helpers.sentiment_rows(16),
        batch_size=4, phases=[{"train": "head", "steps": 20}, {"train": "all", "steps": 200}],
        learning_rate=3e-3, head_learning_rate=1e-2, warmup_fraction=0.0)
    pair_rows = [{"text": [b"good"], "text_pair": [b"movie"], "label": [b"pos"]},
                 {"text": [b"bad"], "text_pair": [b"movie"], "label": [b"neg"]}] * 4
    _, _, pair_dir, _ = module_helpers.train_tiny_classifier(
        tiny_backbone.path, str(work_dir / "pair"), pair_rows, text_pair=True, batch_size=2)

    models = {"single": single_dir, "pair": pair_dir}
    requests_path = work_dir / "requests.json"
    requests_path.write_text(json.dumps({"models": models, "requests": REQUESTS}))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, CLIENT, str(requests_path)], capture_output=True,
                            text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return models, json.loads(result.stdout.strip().splitlines()[-1])


def _in_process(models, request_id):
    """Call the request's signature in this process; return NumPy outputs."""
    request = REQUESTS[request_id]
    signature = tf.saved_model.load(models[request["model"]]).signatures[request["signature"]]
    inputs = {}
    for name, values in request["inputs"].items():
        if request.get("base64"):
            values = [base64.b64decode(value) for value in values]
        inputs[name] = tf.constant(values, tf.string)
    return {name: value.numpy() for name, value in signature(**inputs).items()}


def test_client_imports_only_tensorflow(served):
    _, outputs = served
    assert outputs["_imported"] == []


def test_signatures_and_inputs(served):
    _, outputs = served
    signatures = outputs["_signatures"]
    assert signatures["single"]["predict_text"] == ["text"]
    assert signatures["single"]["serving_default"] == ["examples"]
    assert signatures["pair"]["predict_text"] == ["text", "text_pair"]
    assert signatures["pair"]["serving_default"] == ["examples"]


@pytest.mark.parametrize("request_id, rows", [
    ("text_batch", 3), ("text_one", 1), ("examples_batch", 3), ("examples_one", 1),
    ("pair_batch", 3), ("pair_one", 1), ("pair_examples", 3)])
def test_outputs_are_distributions(served, request_id, rows):
    _, outputs = served
    result = outputs[request_id]
    probabilities = np.array(result["probabilities"])
    assert probabilities.shape == (rows, len(LABELS))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities >= 0).all()
    assert result["classes"] == [LABELS] * rows
    assert result["label"] == [LABELS[index] for index in probabilities.argmax(axis=1)]


@pytest.mark.parametrize("request_id", [
    "text_batch", "text_one", "examples_batch", "examples_one", "pair_batch", "pair_one",
    "pair_examples"])
def test_fresh_process_matches_in_process(served, request_id):
    models, outputs = served
    expected = _in_process(models, request_id)
    np.testing.assert_allclose(outputs[request_id]["probabilities"], expected["probabilities"],
                               atol=1e-6)
    assert outputs[request_id]["label"] == [label.decode() for label in expected["label"]]


def test_both_signatures_agree(served):
    _, outputs = served
    np.testing.assert_allclose(outputs["text_batch"]["probabilities"],
                               outputs["examples_batch"]["probabilities"], atol=1e-6)
    np.testing.assert_allclose(outputs["pair_batch"]["probabilities"],
                               outputs["pair_examples"]["probabilities"], atol=1e-6)


def test_batch_of_one_matches_batch(served):
    _, outputs = served
    # "bad movie" is not in the batch request, so compare with a batch that contains it.
    np.testing.assert_allclose(outputs["pair_one"]["probabilities"][0],
                               outputs["pair_batch"]["probabilities"][0], atol=1e-5)
    np.testing.assert_allclose(outputs["text_one"]["probabilities"],
                               outputs["examples_one"]["probabilities"], atol=1e-6)


def test_texts_get_different_scores(served):
    # Otherwise the comparisons above could pass on a model that ignores its input.
    _, outputs = served
    probabilities = np.array(outputs["text_batch"]["probabilities"])[:, 1]
    assert probabilities.max() - probabilities.min() > 1e-3


def test_empty_text_is_classified(served):
    _, outputs = served
    for request_id in ("text_batch", "examples_batch", "pair_batch"):
        probabilities = outputs[request_id]["probabilities"][2]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5), request_id


def test_missing_text_feature_named(served):
    _, outputs = served
    error = outputs["examples_missing"]["error"]
    assert "InvalidArgumentError" in error
    assert "missing feature text:" in error
    pair_error = outputs["pair_examples_missing"]["error"]
    assert "missing feature text_pair:" in pair_error


def test_missing_text_argument_named(served):
    _, outputs = served
    assert "missing a required argument: 'text'" in outputs["text_missing"]["error"]
    assert ("missing a required argument: 'text_pair'"
            in outputs["pair_without_second_text"]["error"])
