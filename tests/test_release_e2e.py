"""Release gates end to end: three pipeline runs on spans, each blessed and pushed or not.

One module fixture runs the whole pipeline three times on `span-{SPAN}` data with a tiny
backbone whose vocabulary has the keywords of a learnable task ("great ..." is pos,
"awful ..." is neg). Span 1 is clean and becomes version 1. Span 2 has its training labels
shuffled, so its model is near chance and fails the accuracy bound: nothing is pushed and
version 1 stays served. Span 3 is clean again and becomes version 2.
"""

import csv
import io
import os
import random

import pytest

from pipeline import local_runner
from pipeline.config import config_from_dict
from test_data_contracts_e2e import _serving_snapshot

POSITIVE = ["great", "wonderful", "superb"]
NEGATIVE = ["awful", "terrible", "dreadful"]
NOUNS = ["movie", "film", "plot", "cast", "story", "ending"]
FILLERS = ["", "indeed", "really so", "to me", "all along"]
LABELS = ["neg", "pos"]
TRAIN_ROWS = 64
EVAL_ROWS = 40
ACCURACY_LOWER_BOUND = 0.8
MAX_ACCURACY_DROP = 0.1
# Sentences outside the training data, with the label each should get.
SERVED_CHECK_TEXTS = ["the plot was superb", "the cast was dreadful"]
SERVED_CHECK_LABELS = ["pos", "neg"]
# The three pipeline runs took about 5 minutes together on 2 busy cores.
pytestmark = pytest.mark.slow


def _rows(count: int, seed: int) -> list:
    """Return `count` (sentence, label) rows, half of each label, in random order."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = LABELS[index % 2]
        keyword = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        words = ["the", rng.choice(NOUNS), "was", keyword, rng.choice(FILLERS)]
        rows.append((" ".join(word for word in words if word), label))
    rng.shuffle(rows)
    return rows


def _shuffled_labels(rows: list, seed: int) -> list:
    labels = [label for _, label in rows]
    random.Random(seed).shuffle(labels)
    return [(text, label) for (text, _), label in zip(rows, labels)]


def _write_span(data_dir: str, span: int, train: list, dev: list) -> None:
    for name, rows in (("train.csv", train), ("dev.csv", dev)):
        path = os.path.join(data_dir, f"span-{span}", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(["sentence", "label"])
            writer.writerows(rows)


def _config(data_dir: str, output_dir: str, backbone_path: str):
    return config_from_dict(
        {
            "name": "e2e-release",
            "data": {
                "dir": data_dir,
                "train": "span-{SPAN}/train.csv",
                "eval": "span-{SPAN}/dev.csv",
                "columns": {"text": "sentence", "label": "label"},
                "labels": LABELS,
            },
            "backbone": {"handle": backbone_path, "max_seq_length": 16},
            "training": {
                "batch_size": 8,
                "learning_rate": 3e-3,
                "head_learning_rate": 1e-2,
                "warmup_fraction": 0.0,
                # Measured: 50 steps leave the tiny random encoder at chance on this task,
                # 220 reach 1.0 eval accuracy (about 10 ms a step on 2 CPU cores).
                "phases": [{"train": "head", "steps": 20}, {"train": "all", "steps": 200}],
            },
            "evaluation": {"accuracy_lower_bound": ACCURACY_LOWER_BOUND,
                           "max_accuracy_drop": MAX_ACCURACY_DROP},
            "output": {"dir": output_dir},
        },
        source="tests/test_release_e2e.py",
    )


def _read_log(config) -> str:
    """Return the whole run log, to which every run of the output directory appends."""
    path = os.path.join(config.output.dir, "run.log")
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as file:
        return file.read()


def _served_version(serving_dir: str):
    """Return the version a model server picks (the highest with a SavedModel), or None."""
    from pipeline.predict import find_saved_model

    try:
        return find_saved_model(serving_dir)
    except FileNotFoundError:
        return None


@pytest.fixture(scope="module")
def release_runs(tmp_path_factory):
    from components.backbone.tiny import export_tiny_backbone
    from pipeline.predict import predict

    root = tmp_path_factory.mktemp("release")
    backbone = export_tiny_backbone(str(root / "backbone"),
                                    extra_words=["the", "was"] + POSITIVE + NEGATIVE + NOUNS)
    data_dir = str(root / "data")
    config = _config(data_dir, str(root / "output"), backbone.path)
    serving_dir = config.output.serving_dir
    runs = {}
    for span, train in ((1, _rows(TRAIN_ROWS, seed=1)),
                        (2, _shuffled_labels(_rows(TRAIN_ROWS, seed=2), seed=20)),
                        (3, _rows(TRAIN_ROWS, seed=3))):
        _write_span(data_dir, span, train, _rows(EVAL_ROWS, seed=100 + span))
        output = io.StringIO()
        log_before = len(_read_log(config))
        result = local_runner.run(config, stream=output)
        runs[span] = {"result": result, "output": output.getvalue(),
                      "log": _read_log(config)[log_before:],
                      "serving": _serving_snapshot(serving_dir),
                      "versions": sorted(os.listdir(serving_dir)) if os.path.isdir(serving_dir) else [],
                      "served": _served_version(serving_dir)}
        if span == 2 and runs[span]["served"]:
            runs[span]["predictions"] = predict(serving_dir, SERVED_CHECK_TEXTS)
    return config, runs


def _states(result) -> dict:
    return {component.node_id: component.state for component in result.components}


def test_clean_span_blessed_and_pushed(release_runs):
    config, runs = release_runs
    result = runs[1]["result"]
    assert result.succeeded, runs[1]["output"]
    assert result.blessed is True
    assert result.metrics["accuracy"] >= ACCURACY_LOWER_BOUND
    assert result.pushed_path == os.path.join(config.output.serving_dir, "1")
    assert runs[1]["versions"] == ["1"]


def test_first_run_logs_skipped_change_threshold(release_runs):
    _, runs = release_runs
    assert "skipping the change thresholds on accuracy" in runs[1]["log"]
    # Later runs have a blessed baseline, so they apply the change threshold.
    assert "skipping the change thresholds" not in runs[2]["log"]
    assert "skipping the change thresholds" not in runs[3]["log"]


def test_shuffled_labels_not_blessed(release_runs):
    _, runs = release_runs
    result = runs[2]["result"]
    assert result.succeeded, runs[2]["output"]
    states = _states(result)
    assert states["Trainer"] == "COMPLETE"
    assert states["Pusher"] == "COMPLETE"
    assert result.blessed is False
    assert result.metrics["accuracy"] < ACCURACY_LOWER_BOUND
    assert result.pushed_path is None


def test_rejected_model_leaves_version_1_served(release_runs):
    config, runs = release_runs
    assert runs[2]["serving"] == runs[1]["serving"]
    assert runs[2]["versions"] == ["1"]
    assert runs[2]["served"] == os.path.join(config.output.serving_dir, "1")
    labels = [prediction["label"] for prediction in runs[2]["predictions"]]
    assert labels == SERVED_CHECK_LABELS


def test_clean_span_after_rejection_pushed_as_version_2(release_runs):
    config, runs = release_runs
    result = runs[3]["result"]
    assert result.succeeded, runs[3]["output"]
    assert result.blessed is True
    assert result.pushed_path == os.path.join(config.output.serving_dir, "2")
    assert runs[3]["versions"] == ["1", "2"]
    assert runs[3]["served"] == result.pushed_path
    # Version 1 is left exactly as run 1 wrote it.
    version_1 = {path: digest for path, digest in runs[3]["serving"].items()
                 if path.startswith("1" + os.sep)}
    assert version_1 == runs[1]["serving"]
