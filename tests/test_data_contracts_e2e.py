"""Data contracts end to end: spans that break the schema or drift stop before Transform.

One module fixture runs the whole pipeline three times on `span-{SPAN}` data with the
curated SST-2 schema and the tiny backbone: span 1 is valid and gets pushed, span 2 has
unknown labels, span 3 has valid labels whose distribution drifted away from span 1.
"""

import csv
import dataclasses
import hashlib
import io
import os

import pytest

from pipeline import local_runner
from pipeline.config import config_from_dict
from test_pipeline_e2e import SST2_DIR, _write_subset, tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = os.path.join(REPO, "schemas", "sst2", "schema.pbtxt")
TRAIN_ROWS = 100
EVAL_ROWS = 40
UNKNOWN_LABELS = {"2": 3, "positive": 2}
DRIFTED_POSITIVE_SHARE = 0.9
DRIFT_MAX = 0.2
# The three pipeline runs take about 90 s together on 2 cores.
pytestmark = pytest.mark.slow


def _read_rows(path: str) -> tuple[list, list]:
    with open(path, encoding="utf-8", newline="") as file:
        reader = csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        return header, list(reader)


def _write_rows(path: str, header: list, rows: list) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_span(data_dir: str, span: int, train: tuple, dev: tuple) -> None:
    _write_rows(os.path.join(data_dir, f"span-{span}", "train.tsv"), *train)
    _write_rows(os.path.join(data_dir, f"span-{span}", "dev.tsv"), *dev)


def _unknown_label_rows(rows: list) -> list:
    """Relabel the first rows with labels outside the schema's domain {0, 1}."""
    rows = [list(row) for row in rows]
    index = 0
    for label, count in UNKNOWN_LABELS.items():
        for _ in range(count):
            rows[index][0] = label
            index += 1
    return rows


def _drifted_rows(rows: list) -> list:
    """Keep TRAIN_ROWS rows, DRIFTED_POSITIVE_SHARE of them labelled 1 (span 1 has half)."""
    positive = [row for row in rows if row[0] == "1"]
    negative = [row for row in rows if row[0] == "0"]
    positives = round(TRAIN_ROWS * DRIFTED_POSITIVE_SHARE)
    return (positive * 2)[:positives] + negative[: TRAIN_ROWS - positives]


def _serving_snapshot(serving_dir: str) -> dict:
    """Map every file under the serving directory to the SHA-256 of its content."""
    snapshot = {}
    for root, _, names in os.walk(serving_dir):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as file:
                snapshot[os.path.relpath(path, serving_dir)] = hashlib.sha256(file.read()).hexdigest()
    return snapshot


@pytest.fixture(scope="module")
def span_runs(tmp_path_factory, tiny_backbone):
    root = tmp_path_factory.mktemp("contracts")
    data_dir = str(root / "data")
    subset_dir = root / "subset"
    subset_dir.mkdir()
    _write_subset(os.path.join(SST2_DIR, "train.tsv"), str(subset_dir / "train.tsv"), TRAIN_ROWS)
    _write_subset(os.path.join(SST2_DIR, "dev.tsv"), str(subset_dir / "dev.tsv"), EVAL_ROWS)
    train = _read_rows(str(subset_dir / "train.tsv"))
    dev = _read_rows(str(subset_dir / "dev.tsv"))

    base = tiny_config(data_dir, str(root / "output"), tiny_backbone.path).to_dict()
    base["name"] = "e2e-contracts"
    base["data"].update(train="span-{SPAN}/train.tsv", eval="span-{SPAN}/dev.tsv", schema=SCHEMA)
    # The tiny vocabulary splits words into letters, so most SST-2 sentences exceed 32 pieces.
    base["validation"] = {"label_drift_max": DRIFT_MAX, "max_truncated_share": 1.0}
    config = config_from_dict(base, source="tests/test_data_contracts_e2e.py")

    runs = {}
    _write_span(data_dir, 1, train, dev)
    runs[1] = _run(config)
    runs["snapshot_after_1"] = _serving_snapshot(config.output.serving_dir)

    _write_span(data_dir, 2, (train[0], _unknown_label_rows(train[1])), dev)
    runs[2] = _run(config)
    runs["snapshot_after_2"] = _serving_snapshot(config.output.serving_dir)

    _write_span(data_dir, 3, (train[0], _drifted_rows(train[1])), dev)
    runs[3] = _run(config)
    runs["snapshot_after_3"] = _serving_snapshot(config.output.serving_dir)
    return config, runs


def _run(config):
    output = io.StringIO()
    result = local_runner.run(config, stream=output)
    return dataclasses.replace(result, error=result.error or ""), output.getvalue()


def _states(result) -> dict:
    return {component.node_id: component.state for component in result.components}


def test_valid_span_pushed_with_curated_schema(span_runs):
    config, runs = span_runs
    result, output = runs[1]
    assert result.succeeded, output
    states = _states(result)
    assert states["ImportSchemaGen"] == "COMPLETE"
    assert "SchemaGen" not in states
    for node_id in ("AnomalyGate", "TextStatisticsGate", "Transform", "Trainer", "Pusher"):
        assert states[node_id] == "COMPLETE", states
    assert result.pushed_path is not None
    assert runs["snapshot_after_1"], f"nothing pushed to {config.output.serving_dir}"


def test_unknown_label_span_stops_before_transform(span_runs):
    _, runs = span_runs
    result, output = runs[2]
    assert not result.succeeded
    states = _states(result)
    assert states.get("AnomalyGate") == "FAILED", states
    for node_id in ("Transform", "TextStatisticsGate", "Trainer", "Evaluator", "Pusher"):
        assert node_id not in states, states
    assert "data validation failed in span 2" in result.error
    assert "feature 'label'" in result.error
    assert "ENUM_TYPE_UNEXPECTED_STRING_VALUES" in result.error
    assert f"({sum(UNKNOWN_LABELS.values())} examples)" in result.error
    assert "data validation failed in span 2" in output


def test_drifted_span_stops_before_transform(span_runs):
    _, runs = span_runs
    result, output = runs[3]
    assert not result.succeeded, output
    states = _states(result)
    assert states.get("AnomalyGate") == "FAILED", states
    assert "Transform" not in states
    assert "label distribution drift" in result.error
    # Span 2 was rejected, so span 1 stays the drift baseline.
    assert "to span 1 is above validation.label_drift_max=0.2" in result.error
    assert "ENUM_TYPE_UNEXPECTED_STRING_VALUES" not in result.error


def test_rejected_spans_leave_pushed_model(span_runs):
    _, runs = span_runs
    assert runs["snapshot_after_2"] == runs["snapshot_after_1"]
    assert runs["snapshot_after_3"] == runs["snapshot_after_1"]
