"""The whole DAG under BeamDagRunner on 100 SST-2 rows with a tiny random backbone.

One module fixture runs the pipeline twice over the same inputs; the tests share those runs.
"""

import csv
import io
import os
import re

import pytest

from pipeline import local_runner
from pipeline.config import config_from_dict

SST2_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "sst2")
TRAIN_ROWS = 100
EVAL_ROWS = 40
PIPELINE_NODES = {
    "TextExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "ExampleValidator",
    "last_validated_statistics_resolver",
    "AnomalyGate",
    "Transform",
    "TextStatisticsGate",
    "Trainer",
    "latest_blessed_model_resolver",
    "Evaluator",
    "Pusher",
    "Report",
}
# Components whose inputs do not change between the two runs, so the second run reuses them.
# The Evaluator and Pusher run again: the second run has a blessed baseline, the first had none.
CACHEABLE_NODES = {
    "TextExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "TextStatisticsGate", "Trainer",
}
RESOLVERS = {"latest_blessed_model_resolver", "last_validated_statistics_resolver"}


def _write_subset(source: str, target: str, rows: int) -> None:
    """Copy the header and the first `rows` rows of each label of a TSV file, alternating."""
    with open(source, encoding="utf-8", newline="") as file:
        reader = csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        by_label = {"0": [], "1": []}
        for row in reader:
            bucket = by_label[row[0]]
            if len(bucket) < rows // 2:
                bucket.append(row)
            if all(len(bucket) == rows // 2 for bucket in by_label.values()):
                break
    with open(target, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
        writer.writerow(header)
        for negative, positive in zip(by_label["0"], by_label["1"]):
            writer.writerow(negative)
            writer.writerow(positive)


def tiny_config(data_dir: str, output_dir: str, backbone_path: str):
    return config_from_dict(
        {
            "name": "e2e-sst2",
            "data": {
                "dir": data_dir,
                "format": "tsv",
                "train": "train.tsv",
                "eval": "dev.tsv",
                "columns": {"text": ["sentence", "content"], "label": "label"},
                "labels": ["0", "1"],
            },
            "backbone": {"handle": backbone_path, "max_seq_length": 32},
            "training": {
                "batch_size": 8,
                "learning_rate": 1e-3,
                "phases": [{"train": "head", "steps": 4}, {"train": "all", "steps": 4}],
            },
            # A random backbone classifies at chance level; a zero bound still exercises the
            # threshold and blesses the model.
            "evaluation": {"accuracy_lower_bound": 0.0, "max_accuracy_drop": 0.5},
            "output": {"dir": output_dir},
            # The tiny vocabulary splits words into letters, so most SST-2 sentences exceed
            # 32 word pieces.
            "validation": {"max_truncated_share": 1.0},
        },
        source="tests/test_pipeline_e2e.py",
    )


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_backbone):
    root = tmp_path_factory.mktemp("e2e")
    data_dir = root / "data"
    data_dir.mkdir()
    _write_subset(os.path.join(SST2_DIR, "train.tsv"), str(data_dir / "train.tsv"), TRAIN_ROWS)
    _write_subset(os.path.join(SST2_DIR, "dev.tsv"), str(data_dir / "dev.tsv"), EVAL_ROWS)
    config = tiny_config(str(data_dir), str(root / "output"), tiny_backbone.path)

    first_output, second_output = io.StringIO(), io.StringIO()
    first = local_runner.run(config, stream=first_output)
    second = local_runner.run(config, stream=second_output)
    return config, first, second, first_output.getvalue(), second_output.getvalue()


def test_first_run_completes_every_component(two_runs):
    _, first, _, output, _ = two_runs
    assert first.succeeded, output
    states = {component.node_id: component.state for component in first.components}
    assert set(states) == PIPELINE_NODES
    assert all(state == "COMPLETE" for state in states.values()), states


def test_components_write_artifacts(two_runs):
    config, _, _, _, _ = two_runs
    for node_id in PIPELINE_NODES - RESOLVERS:
        node_dir = os.path.join(config.output.pipeline_root, node_id)
        files = [name for _, _, names in os.walk(node_dir) for name in names]
        assert files, f"{node_id} wrote no files under {node_dir}"


def test_model_blessed_and_pushed(two_runs):
    _, first, _, _, _ = two_runs
    assert first.blessed is True
    assert first.pushed_path is not None
    assert os.path.exists(os.path.join(first.pushed_path, "saved_model.pb"))
    assert 0.0 <= first.metrics["accuracy"] <= 1.0
    assert 0.0 <= first.metrics["auc"] <= 1.0


def test_pushed_model_predicts(two_runs):
    from pipeline.predict import predict

    _, first, _, _, _ = two_runs
    predictions = predict(first.pushed_path, ["a gorgeous, witty, seductive movie.", "dull"])
    assert len(predictions) == 2
    for prediction in predictions:
        assert prediction["label"] in {"0", "1"}
        assert set(prediction["probabilities"]) == {"0", "1"}
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert prediction["label"] == max(prediction["probabilities"], key=prediction["probabilities"].get)


def test_second_run_reuses_cache(two_runs):
    _, _, second, _, output = two_runs
    assert second.succeeded, output
    states = {component.node_id: component.state for component in second.components}
    for node_id in CACHEABLE_NODES:
        assert states.get(node_id) == "CACHED", f"{node_id}: {states.get(node_id)}"


def test_second_run_pushes_no_copy(two_runs):
    config, first, second, _, _ = two_runs
    # The same model is blessed again and stays served as the first version.
    assert second.pushed_path == first.pushed_path
    assert os.listdir(config.output.serving_dir) == [os.path.basename(first.pushed_path)]


def test_summary_lists_components_and_push(two_runs):
    _, first, _, output, _ = two_runs
    for node_id in PIPELINE_NODES:
        assert node_id in output
    assert "Trainer running" in output
    assert f"pushed model: {first.pushed_path}" in output
    assert "eval accuracy:" in output


def test_report_copied_to_output_dir(two_runs):
    config, first, second, first_output, second_output = two_runs
    expected = os.path.join(config.output.dir, "report.html")
    assert first.report_path == second.report_path == expected
    assert f"report: {expected}" in first_output
    # Each run's page stays in the pipeline root; the copy is the latest run's.
    assert first.report_uri != second.report_uri
    with open(expected, encoding="utf-8") as copy, open(second.report_uri, encoding="utf-8") as page:
        assert copy.read() == page.read()


def test_first_report_has_no_baseline(two_runs):
    _, first, _, _, _ = two_runs
    with open(first.report_uri, encoding="utf-8") as report_file:
        page = report_file.read()
    assert "Blessed: the model passed every threshold" in page
    assert "no baseline model: this is the first run" in page
    # max_accuracy_drop is a change threshold, skipped without a baseline.
    assert re.search(r"change &gt;= -0.5</td><td>-</td><td class=\"name skipped\">skipped", page)
    assert re.search(r"&gt;= 0</td><td>\d\.\d{4}</td><td class=\"name passed\">passed", page)


def test_second_report_renders_baseline(two_runs, tmp_path):
    import headless_chromium

    _, _, second, _, _ = two_runs
    with open(second.report_uri, encoding="utf-8") as report_file:
        page = report_file.read()
    assert "compared with the latest blessed model (baseline)" in page
    assert re.search(r'<table class="baseline">.*?<td class="name">accuracy</td><td>\d\.\d{4}</td><td>\d\.\d{4}</td>'
                     r"<td>[+-]\d\.\d{4}</td>", page, re.DOTALL)
    # The Trainer's two freeze phases: one boundary line per training chart.
    assert page.count('class="phase-boundary"') == 3
    capture, _ = headless_chromium.assert_report_renders(second.report_path, str(tmp_path / "report.png"),
                                            expect_confusion="class=\"confusion\"" in page)
    assert "Training loss" in capture.dom


def _newest_artifact_dir(pipeline_root: str, node_id: str, key: str) -> str:
    folder = os.path.join(pipeline_root, node_id, key)
    return os.path.join(folder, max(os.listdir(folder), key=int))


def test_report_runs_as_kubeflow_task(two_runs, tmp_path):
    """The Report's executor under TFX's Kubeflow V2 entrypoint, on the second run's artifacts."""
    import argparse
    import json
    import sys

    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

    from components.evaluation import build_eval_config
    from pipeline import kubeflow_executor

    config, _, _, _, _ = two_runs
    root = config.output.pipeline_root
    report_uri = str(tmp_path / "Report" / "report")
    output_file = str(tmp_path / "Report" / "executor_output.json")
    parameters = {
        "labels": json.dumps(config.data.labels),
        "title": "e2e-sst2: run report",
        "eval_config": json_format.MessageToJson(build_eval_config(config)),
    }

    def artifact(title: str, uri: str, **metadata) -> dict:
        return {"artifacts": [{"name": f"projects/p/artifacts/{title}", "uri": uri, "metadata": metadata,
                               "type": {"instanceSchema": f"title: {title}\ntype: object\n"}}]}

    executor_input = {
        "inputs": {
            "artifacts": {
                "evaluation": artifact("tfx.ModelEvaluation", _newest_artifact_dir(root, "Evaluator", "evaluation")),
                "blessing": artifact("tfx.ModelBlessing", _newest_artifact_dir(root, "Evaluator", "blessing"),
                                     blessed=1),
                "model_run": artifact("tfx.ModelRun", _newest_artifact_dir(root, "Trainer", "model_run")),
            },
            "parameterValues": parameters,
        },
        "outputs": {"artifacts": {"report": artifact("system.HTML", report_uri)}, "outputFile": output_file},
    }
    inputs_spec = {"parameters": {name: {"parameterType": "STRING"} for name in parameters}}
    arguments = argparse.Namespace(
        executor_class_path="components.report.Executor",
        json_serialized_invocation_args=json.dumps(executor_input),
        json_serialized_inputs_spec_args=json.dumps(inputs_spec),
    )

    modules_before = set(sys.modules)
    kubeflow_executor.register_custom_artifact_types()
    try:
        kubeflow_v2_run_executor._run_executor(arguments, [])
    finally:
        for name in set(sys.modules) - modules_before:
            if name in ("system", "textxfer"):
                del sys.modules[name]

    executor_output = json_format.Parse(open(output_file).read(), pipeline_spec_pb2.ExecutorOutput())
    [report] = executor_output.artifacts["report"].artifacts
    # The KFP v2 UI shows a system.HTML artifact with a display_name, reading its URI as one file.
    assert report.uri == report_uri
    assert report.metadata["display_name"] == "run report"
    assert report.metadata["blessed"] == 1
    with open(report_uri, encoding="utf-8") as page:
        text = page.read()
    assert "Blessed: the model passed every threshold" in text
    assert "Training loss" in text
