"""Loading and validation of the `kubeflow` section of an experiment config."""

import pathlib

import pytest
import yaml

from pipeline.config import ConfigError, KUBEFLOW_COMPONENT_IDS, config_from_dict, load_config

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG_PATH = str(REPO / "configs" / "sst2.yaml")


def test_sst2_kubeflow_section_loads():
    kubeflow = load_config(CONFIG_PATH).kubeflow
    assert kubeflow.image == "registry.example.com/textxfer:0.1.0"
    assert kubeflow.baseline == "latest_pushed"
    assert kubeflow.max_concurrency == 1
    assert kubeflow.accelerator.resource_type == "nvidia.com/gpu"
    assert kubeflow.accelerator.tolerations[0].operator == "Exists"


def test_component_resources_merge_default():
    kubeflow = load_config(CONFIG_PATH, ["kubeflow.resources.Pusher={memory_limit: 6Gi}"]).kubeflow
    pusher = kubeflow.component_resources("Pusher")
    assert pusher.memory_limit == "6Gi"
    assert pusher.memory_request == "2Gi"
    assert pusher.cpu_request == "1"
    # Numbers in YAML become Kubernetes quantity strings.
    assert kubeflow.component_resources("Trainer").cpu_limit == "8"
    for component_id in KUBEFLOW_COMPONENT_IDS:
        assert kubeflow.component_resources(component_id).cpu_limit is not None


def test_kubeflow_section_optional():
    raw = yaml.safe_load(pathlib.Path(CONFIG_PATH).read_text())
    raw.pop("kubeflow")
    assert config_from_dict(raw).kubeflow is None


def test_round_trip_through_dict():
    config = load_config(CONFIG_PATH)
    assert config_from_dict(config.to_dict()).kubeflow == config.kubeflow


@pytest.mark.parametrize(
    "override, message",
    [
        ("kubeflow.output_dir=outputs/sst2", "kubeflow.output_dir: 'outputs/sst2' is a relative path"),
        ("kubeflow.data_root=data", "kubeflow.data_root: 'data' is a relative path"),
        ("kubeflow.image=''", "kubeflow.image"),
        ("kubeflow.baseline=resolvers", "kubeflow.baseline: 'resolvers' is not one of"),
        ("kubeflow.max_concurrency=0", "kubeflow.max_concurrency: 0 must be >= 1"),
        ("kubeflow.resources.Trainers={cpu_limit: 1}", "kubeflow.resources.Trainers: is not default or a component id"),
        ("kubeflow.resources.Trainer.cpu_request=16", "cpu_request 16 is above cpu_limit 8"),
        ("kubeflow.resources.Trainer.memory_request=64Gi", "memory_request 64Gi is above memory_limit 32Gi"),
        ("kubeflow.resources.Trainer.memory_limit=32GB", "'32GB' must be bytes with an optional suffix"),
        ("kubeflow.resources.Trainer.cpu_limit=8 cores", "'8 cores' must be cores"),
        ("kubeflow.resources.default.cpu_limit=null", "kubeflow.resources.SchemaGen: cpu_limit is not set"),
        ("kubeflow.resources.Trainer.gpu=1", "unknown key kubeflow.resources.Trainer.gpu"),
        ("kubeflow.accelerator.resource_type=T4", "'T4' must be a Kubernetes extended resource name"),
        ("kubeflow.accelerator.count=0", "kubeflow.accelerator.count: 0 must be >= 1"),
        ("kubeflow.accelerator.components=[]", "needs at least one component id"),
        ("kubeflow.accelerator.components=[Trainr]", "'Trainr' is not a component id"),
        ("kubeflow.accelerator.tolerations=[{key: gpu, operator: Is}]", "operator: 'Is' is not one of Equal, Exists"),
        (
            "kubeflow.accelerator.tolerations=[{key: gpu, operator: Exists, value: 'true'}]",
            "value: must be unset when operator is Exists",
        ),
        ("kubeflow.accelerator.tolerations=[{key: gpu, effect: Evict}]", "effect: 'Evict' is not one of"),
        ("kubeflow.accelerator.node_selector={pool: 3}", "must map a label to a string value"),
    ],
)
def test_invalid_kubeflow_settings(override, message):
    with pytest.raises(ConfigError, match="sst2.yaml: ") as error:
        load_config(CONFIG_PATH, [override])
    assert message in str(error.value)


def test_millicores_and_fractions_accepted():
    kubeflow = load_config(
        CONFIG_PATH,
        ["kubeflow.resources.Pusher={cpu_request: 500m, cpu_limit: 1.5}"],
    ).kubeflow
    assert kubeflow.component_resources("Pusher").cpu_request == "500m"
    assert kubeflow.component_resources("Pusher").cpu_limit == "1.5"
