"""Call exported textxfer models the way a serving process does, and print the results as JSON.

Run as `python serving_client.py REQUESTS.json`. It imports only TensorFlow and
tensorflow-text, like a model server with the tf.text ops linked in. Each request names a
model directory, a signature and its inputs (strings, or base64 for serialized
tf.Examples). The output maps request ids to the signature's outputs or to the error.
"""

import base64
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tensorflow_text  # noqa: E402,F401  (registers the tokenizer ops of the model)

# Packages that a serving process does not have; none of them may be imported by loading.
TRAINING_ONLY_MODULES = ("tensorflow_transform", "tensorflow_hub", "tfx", "apache_beam",
                         "tensorflow_model_analysis", "components", "pipeline")


def _to_json(value):
    array = value.numpy()
    if array.dtype == object:
        return [[item.decode() for item in row] if array.ndim == 2 else row.decode()
                for row in array]
    return array.tolist()


def _run(models: dict, request: dict) -> dict:
    signature = models[request["model"]].signatures[request["signature"]]
    inputs = {}
    for name, values in request["inputs"].items():
        if request.get("base64"):
            values = [base64.b64decode(value) for value in values]
        inputs[name] = tf.constant(values, tf.string)
    try:
        outputs = signature(**inputs)
    except (TypeError, ValueError, tf.errors.OpError) as error:
        return {"error": f"{type(error).__name__}: {error}"}
    return {name: _to_json(value) for name, value in outputs.items()}


def main(requests_path: str) -> None:
    with open(requests_path, encoding="utf-8") as file:
        requests = json.load(file)
    models = {name: tf.saved_model.load(path) for name, path in requests["models"].items()}
    results = {request_id: _run(models, request)
               for request_id, request in requests["requests"].items()}
    results["_imported"] = sorted(name for name in TRAINING_ONLY_MODULES if name in sys.modules)
    results["_signatures"] = {
        name: {signature: sorted(model.signatures[signature].structured_input_signature[1])
               for signature in model.signatures}
        for name, model in models.items()}
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
