"""The components that the Kubeflow pipeline adds: LatestPushedModel and ParameterizedTrainer."""

import json
import pathlib

import pytest
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components import latest_pushed_model, parameterized_trainer
from pipeline.config import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]


def _saved_model(directory: pathlib.Path, marker: str) -> None:
    (directory / "variables").mkdir(parents=True)
    (directory / "saved_model.pb").write_text(marker)
    (directory / "variables" / "variables.index").write_text(marker)


def _model_artifact(uri: pathlib.Path):
    artifact = standard_artifacts.Model()
    artifact.uri = str(uri)
    return artifact


def _run_baseline(tmp_path: pathlib.Path):
    """Run the LatestPushedModel executor on `tmp_path`/serving with a candidate model; return its output."""
    _saved_model(tmp_path / "candidate" / "Format-Serving", "candidate")
    output = _model_artifact(tmp_path / "baseline")
    latest_pushed_model.Executor().Do(
        {"candidate": [_model_artifact(tmp_path / "candidate")]},
        {"model": [output]},
        {"serving_dir": str(tmp_path / "serving")},
    )
    return output


def test_find_latest_pushed_model(tmp_path):
    _saved_model(tmp_path / "1700000000", "old")
    _saved_model(tmp_path / "1700000100", "new")
    (tmp_path / "1700000200").mkdir()  # an interrupted push: no saved_model.pb
    _saved_model(tmp_path / "backup", "not a version")

    assert latest_pushed_model.find_latest_pushed_model(str(tmp_path)) == str(tmp_path / "1700000100")
    assert latest_pushed_model.find_latest_pushed_model(str(tmp_path / "absent")) is None


def test_baseline_copies_pushed_model(tmp_path):
    _saved_model(tmp_path / "serving" / "1700000100", "pushed")
    output = _run_baseline(tmp_path)

    copied = tmp_path / "baseline" / "Format-Serving"
    assert (copied / "saved_model.pb").read_text() == "pushed"
    assert (copied / "variables" / "variables.index").read_text() == "pushed"
    assert output.get_string_custom_property("baseline_source") == "pushed"


def test_baseline_falls_back_to_candidate(tmp_path):
    output = _run_baseline(tmp_path)

    assert (tmp_path / "baseline" / "Format-Serving" / "saved_model.pb").read_text() == "candidate"
    assert output.get_string_custom_property("baseline_source") == "candidate"


@pytest.mark.parametrize(
    "steps, budget, expected",
    [
        ([150, 600], 750, [150, 600]),
        ([150, 600], 300, [60, 240]),
        ([150, 600], 2, [1, 1]),
        ([1, 1000], 10, [1, 9]),
        ([100, 100, 100], 10, [3, 3, 4]),
        ([500], 42, [42]),
    ],
)
def test_scale_phases(steps, budget, expected):
    phases = [{"train": "head", "steps": count} for count in steps]
    scaled = parameterized_trainer.scale_phases(phases, budget)
    assert [phase["steps"] for phase in scaled] == expected
    assert sum(phase["steps"] for phase in scaled) == budget
    assert [phase["steps"] for phase in phases] == steps  # the input is not modified


def test_scale_phases_rejects_small_budget():
    with pytest.raises(ValueError, match="train_steps 1 is below the number of freeze phases"):
        parameterized_trainer.scale_phases([{"steps": 5}, {"steps": 5}], 1)


def _exec_properties(**overrides):
    # A fixed 150 + 600 step schedule, so the expected scaling does not follow the demo budget.
    config = load_config(
        str(REPO / "configs" / "sst2.yaml"),
        ["training.phases=[{train: head, steps: 150}, {train: all, steps: 600}]"],
    )
    properties = {
        "custom_config": json.dumps({"config": config.to_dict()}),
        "train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs(num_steps=750)),
    }
    properties.update(overrides)
    return properties


def test_runtime_parameters_rewrite_trainer_inputs():
    result = parameterized_trainer.apply_runtime_parameters(
        _exec_properties(train_steps=300, learning_rate=3e-5)
    )
    training = json.loads(result["custom_config"])["config"]["training"]
    train_args = proto_utils.json_to_proto(result["train_args"], trainer_pb2.TrainArgs())

    assert train_args.num_steps == 300
    assert [phase["steps"] for phase in training["phases"]] == [60, 240]
    assert training["learning_rate"] == 3e-5
    assert training["head_learning_rate"] == 1e-3


def test_runtime_parameters_unset_keep_config():
    original = _exec_properties()
    result = parameterized_trainer.apply_runtime_parameters(_exec_properties(train_steps=0, learning_rate=None))
    assert json.loads(result["custom_config"]) == json.loads(original["custom_config"])
    assert result["train_args"] == original["train_args"]


def test_runtime_parameters_reject_negative_rate():
    with pytest.raises(ValueError, match="learning_rate -0.1 must be > 0"):
        parameterized_trainer.apply_runtime_parameters(_exec_properties(learning_rate=-0.1))


def test_local_pipeline_unchanged_by_default():
    from tfx import v1 as tfx

    from pipeline.pipeline import RESOLVER_ID, create_pipeline

    config = load_config(str(REPO / "configs" / "sst2.yaml"))
    components = {component.id: component for component in create_pipeline(config, data_root="data").components}

    assert RESOLVER_ID in components
    assert latest_pushed_model.COMPONENT_ID not in components
    assert type(components["Trainer"]) is tfx.components.Trainer
    assert all(getattr(component, "platform_config", None) is None for component in components.values())


def test_latest_pushed_baseline_wiring():
    from pipeline.pipeline import RESOLVER_ID, create_pipeline

    config = load_config(str(REPO / "configs" / "sst2.yaml"))
    pipeline = create_pipeline(config, data_root="data", baseline="latest_pushed", train_steps=10)
    components = {component.id: component for component in pipeline.components}

    assert RESOLVER_ID not in components
    baseline = components[latest_pushed_model.COMPONENT_ID]
    assert baseline.exec_properties["serving_dir"] == config.output.serving_dir
    assert components["Evaluator"].inputs["baseline_model"].producer_component_id == baseline.id
    assert isinstance(components["Trainer"], parameterized_trainer.ParameterizedTrainer)
    assert components["Trainer"].exec_properties["train_steps"] == 10


def test_unknown_baseline_rejected():
    from pipeline.pipeline import create_pipeline

    config = load_config(str(REPO / "configs" / "sst2.yaml"))
    with pytest.raises(ValueError, match="unknown baseline 'newest'"):
        create_pipeline(config, data_root="data", baseline="newest")
