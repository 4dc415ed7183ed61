"""Experiment config loading: strict keys, types, overrides and conflicting values."""

import os

import pytest

from pipeline.config import ConfigError, config_from_dict, load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SST2_CONFIG = os.path.join(REPO, "configs", "sst2.yaml")


def minimal() -> dict:
    return {
        "name": "demo",
        "data": {
            "dir": "/data",
            "train": "train.csv",
            "eval": "eval.csv",
            "columns": {"text": "sentence", "label": "label"},
        },
        "backbone": {"handle": "backbones/tiny"},
        "training": {"phases": [{"train": "head", "steps": 10}]},
        "evaluation": {"accuracy_lower_bound": 0.5},
        "output": {"dir": "outputs/demo"},
    }


def test_sst2_config_loads():
    config = load_config(SST2_CONFIG)
    assert config.name == "sst2"
    assert config.data.dataset == "glue_sst2"
    assert config.data.columns.text == ["sentence", "content"]
    assert [phase.train for phase in config.training.phases] == ["head", "all"]
    assert config.source == SST2_CONFIG


def test_override_keeps_types():
    config = load_config(SST2_CONFIG, ["training.batch_size=16", "training.learning_rate=1e-4"])
    assert config.training.batch_size == 16
    assert config.training.learning_rate == pytest.approx(1e-4)


def test_top_phase_mapping_form():
    raw = minimal()
    raw["training"]["phases"] = [{"train": {"top": 2}, "steps": 5}]
    config = config_from_dict(raw)
    assert config.training.phases[0].train == "top: 2"
    assert config.training.phases[0].top_layers == 2


def test_round_trip_through_dict():
    config = config_from_dict(minimal())
    assert config_from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda raw: raw.update(colour="red"), "unknown key colour"),
        (lambda raw: raw["data"]["columns"].update(txt="x"), "unknown key data.columns.txt"),
        (lambda raw: raw["training"].update(batch_size="big"), "training.batch_size must be int"),
        (lambda raw: raw["training"].update(batch_size=True), "training.batch_size must be int"),
        (lambda raw: raw["data"].update(dataset="glue_sst2"), "set exactly one of data.dataset"),
        (lambda raw: raw["data"].pop("train"), "missing required key data.train"),
        (lambda raw: raw["data"].update(format="xlsx"), "data.format"),
        (lambda raw: raw["data"]["columns"].update(text_pair="sentence"), "text_pair"),
        (lambda raw: raw["data"].update(header=False), "data.header is false"),
        (lambda raw: raw["data"].update(labels=["a", "a"]), "duplicates"),
        (lambda raw: raw["backbone"].update(max_seq_length=4096), "backbone.max_seq_length"),
        (lambda raw: raw["training"].update(phases=[]), "at least one phase"),
        (lambda raw: raw["training"].update(phases=[{"train": "head", "steps": 0}]), "steps: 0 must be > 0"),
        (lambda raw: raw["training"].update(phases=[{"train": "top: 0", "steps": 3}]), "N >= 1"),
        (lambda raw: raw["training"].update(phases=[{"train": "middle", "steps": 3}]), "is not head, all or top: N"),
        (lambda raw: raw.update(evaluation={}), "without a threshold"),
        (lambda raw: raw["evaluation"].update(accuracy_lower_bound=1.5), "outside [0, 1]"),
        (lambda raw: raw.update(name="Bad Name"), "name"),
    ],
)
def test_invalid_config_rejected(change, message):
    raw = minimal()
    change(raw)
    with pytest.raises(ConfigError, match=None) as error:
        config_from_dict(raw, source="experiment.yaml")
    assert message in str(error.value)
    assert "experiment.yaml" in str(error.value)


def test_invalid_override_rejected():
    with pytest.raises(ConfigError) as error:
        load_config(SST2_CONFIG, ["training.batch_size"])
    assert "expected KEY=VALUE" in str(error.value)


def test_missing_file_named(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(str(tmp_path / "absent.yaml"))
    assert "absent.yaml" in str(error.value)
