"""The compiled Kubeflow Pipelines v2 spec of configs/sst2.yaml: golden file and semantic checks.

The pipeline is compiled once per module (TFX import and compile take about 10 s here).
Regenerate the golden file with the command in tests/golden/README.md.
"""

import importlib.util
import json
import logging
import os
import pathlib
import re
import sys
import tempfile

import pytest
import yaml
from google.protobuf import json_format
from kfp.kubernetes import kubernetes_executor_config_pb2 as kubernetes_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline import cli, kubeflow_runner
from pipeline.config import KUBEFLOW_COMPONENT_IDS, load_config

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG_PATH = REPO / "configs" / "sst2.yaml"
GOLDEN_PATH = REPO / "tests" / "golden" / "sst2_kubeflow.yaml"
DOCKERFILE = REPO / "kubeflow" / "Dockerfile"


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compile configs/sst2.yaml once; return the config, file path, text, both documents and logs."""
    config = load_config(str(CONFIG_PATH))
    path = tmp_path_factory.mktemp("compiled") / "sst2.yaml"
    records = _Records()
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.addHandler(records)
    absl_logger.setLevel(logging.INFO)
    try:
        # Through the command line, so `textxfer compile` is what the checks below see.
        exit_code = cli.main(["compile", "--config", str(CONFIG_PATH), "--output", str(path)])
    finally:
        absl_logger.removeHandler(records)
        absl_logger.setLevel(level)
    assert exit_code == 0
    text = path.read_text()
    documents = list(yaml.safe_load_all(text))
    return {"config": config, "path": path, "text": text, "documents": documents, "logs": records.messages}


@pytest.fixture(scope="module")
def pipeline_spec(compiled):
    return json_format.ParseDict(compiled["documents"][0], pipeline_spec_pb2.PipelineSpec())


@pytest.fixture(scope="module")
def executors(pipeline_spec):
    """The typed executors of the spec's deployment config (a Struct in PipelineSpec)."""
    deployment = json_format.ParseDict(
        json_format.MessageToDict(pipeline_spec.deployment_spec), pipeline_spec_pb2.PipelineDeploymentConfig()
    )
    return deployment.executors


@pytest.fixture(scope="module")
def platform_spec(compiled):
    assert len(compiled["documents"]) == 2
    return json_format.ParseDict(compiled["documents"][1], pipeline_spec_pb2.PlatformSpec())


def normalize(spec: dict) -> dict:
    """Replace the fields that change with versions and releases: SDK version and image tags."""
    spec = json.loads(json.dumps(spec))
    spec["sdkVersion"] = "<sdk version>"
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor.get("container")
        if container is not None:
            container["image"] = re.sub(r":[^/:]+$", ":<tag>", container["image"])
    return spec


def differences(expected, actual, path="") -> list:
    """List every path where `expected` and `actual` differ, missing keys on either side included."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in sorted(set(expected) | set(actual)):
            where = f"{path}.{key}" if path else key
            if key not in actual:
                found.append(f"{where}: missing from the compiled spec")
            elif key not in expected:
                found.append(f"{where}: not in the golden file")
            else:
                found += differences(expected[key], actual[key], where)
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        found = []
        for index, (left, right) in enumerate(zip(expected, actual)):
            found += differences(left, right, f"{path}[{index}]")
        return found
    return [] if expected == actual else [f"{path}: golden {expected!r} != compiled {actual!r}"]


def test_golden_spec_matches(compiled):
    golden = list(yaml.safe_load_all(GOLDEN_PATH.read_text()))
    assert len(golden) == len(compiled["documents"])
    assert differences(normalize(golden[0]), normalize(compiled["documents"][0])) == []
    assert differences(golden[1], compiled["documents"][1]) == []


def test_golden_diff_sees_both_directions():
    assert differences({"a": 1, "b": 2}, {"a": 1}) == ["b: missing from the compiled spec"]
    assert differences({"a": 1}, {"a": 1, "c": 3}) == ["c: not in the golden file"]
    assert differences({"a": [1, 2]}, {"a": [1, 3]}) == ["a[1]: golden 2 != compiled 3"]


def test_spec_schema_and_image(compiled, pipeline_spec, executors):
    assert pipeline_spec.schema_version == "2.1.0"
    assert pipeline_spec.pipeline_info.name == "sst2"
    for label, executor in executors.items():
        assert executor.container.image == compiled["config"].kubeflow.image, label


def test_tasks_match_tfx_dag(compiled, pipeline_spec):
    tfx_pipeline = kubeflow_runner.build_pipeline(compiled["config"])
    expected = {
        component.id: sorted(node.id for node in component.upstream_nodes)
        for component in tfx_pipeline.components
    }
    tasks = pipeline_spec.root.dag.tasks
    assert sorted(tasks) == sorted(expected)
    assert set(tasks) <= set(KUBEFLOW_COMPONENT_IDS)
    for name, task in tasks.items():
        assert sorted(task.dependent_tasks) == expected[name], name
        assert task.component_ref.name in pipeline_spec.components, name


def test_gpu_only_on_accelerator_components(compiled, pipeline_spec, platform_spec, executors):
    accelerator = compiled["config"].kubeflow.accelerator
    assert accelerator.components == ["Trainer"]
    for label, executor in executors.items():
        resources = executor.container.resources
        if label == "Trainer_executor":
            assert resources.accelerator.resource_type == "nvidia.com/gpu"
            assert resources.accelerator.resource_count == "1"
            assert resources.accelerator.count == 1
        else:
            assert not resources.HasField("accelerator"), label

    kubernetes = platform_spec.platforms["kubernetes"].deployment_spec.executors
    assert sorted(kubernetes) == ["Trainer_executor"]
    trainer = json_format.ParseDict(
        json_format.MessageToDict(kubernetes["Trainer_executor"]), kubernetes_pb2.KubernetesExecutorConfig()
    )
    assert dict(trainer.node_selector.labels) == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert len(trainer.tolerations) == 1
    toleration = trainer.tolerations[0]
    assert (toleration.key, toleration.operator, toleration.effect) == ("nvidia.com/gpu", "Exists", "NoSchedule")


def test_every_executor_has_resources(compiled, pipeline_spec, executors):
    kubeflow = compiled["config"].kubeflow
    tasks = pipeline_spec.root.dag.tasks
    assert sorted(executors) == sorted(f"{component_id}_executor" for component_id in tasks)
    for component_id in tasks:
        expected = kubeflow.component_resources(component_id)
        resources = executors[f"{component_id}_executor"].container.resources
        assert resources.resource_cpu_request == expected.cpu_request, component_id
        assert resources.resource_cpu_limit == expected.cpu_limit, component_id
        assert resources.resource_memory_request == expected.memory_request, component_id
        assert resources.resource_memory_limit == expected.memory_limit, component_id
        assert resources.cpu_limit == pytest.approx(float(expected.cpu_limit)), component_id
    # The Trainer's own entry overrides the default, and the default reaches the others.
    assert executors["Trainer_executor"].container.resources.resource_memory_limit == "32Gi"
    assert executors["Pusher_executor"].container.resources.resource_memory_limit == "4Gi"


def test_example_gen_resources_restored(compiled):
    # TFX 1.16 drops the platform config of file-based ExampleGens; the compiler puts it back.
    # When a TFX upgrade fixes that, the list becomes empty and this test fails as a reminder.
    restored = [message for message in compiled["logs"] if message.startswith("restored the resources")]
    assert restored == ["restored the resources that TFX's compiler dropped from TextExampleGen"]


def test_runtime_parameters_have_defaults(compiled, pipeline_spec):
    config = compiled["config"]
    parameters = pipeline_spec.root.input_definitions.parameters
    assert sorted(parameters) == ["data_root", "learning_rate", "train_steps"]
    assert parameters["data_root"].default_value.string_value == config.kubeflow.data_root
    train_steps = sum(phase.steps for phase in config.training.phases)
    assert parameters["train_steps"].default_value.number_value == train_steps
    assert parameters["learning_rate"].default_value.number_value == pytest.approx(config.training.learning_rate)
    assert parameters["train_steps"].parameter_type == pipeline_spec_pb2.ParameterType.NUMBER_INTEGER
    assert parameters["learning_rate"].parameter_type == pipeline_spec_pb2.ParameterType.NUMBER_DOUBLE

    tasks = pipeline_spec.root.dag.tasks
    assert tasks["TextExampleGen"].inputs.parameters["input_base"].component_input_parameter == "data_root"
    assert tasks["Trainer"].inputs.parameters["train_steps"].component_input_parameter == "train_steps"
    assert tasks["Trainer"].inputs.parameters["learning_rate"].component_input_parameter == "learning_rate"
    assert pipeline_spec.default_pipeline_root == "gs://example-bucket/textxfer/sst2/pipeline_root"


def test_no_compiling_machine_paths(compiled):
    text = compiled["text"]
    machine_paths = {
        str(REPO),
        os.getcwd(),
        os.path.expanduser("~"),
        sys.prefix,
        tempfile.gettempdir(),
        str(compiled["path"].parent),
    }
    for path in machine_paths:
        assert path not in text, path
    # Every absolute path in the spec is a URI on cluster storage.
    local_paths = re.findall(r"(?<![\w:/.])/(?:home|work|tmp|root|Users|usr|opt|var)/[^\s\"']*", text)
    assert local_paths == []
    assert "outputs/sst2" not in text
    assert "backbones/minilm" in text  # only as part of the gs:// handle
    assert "gs://example-bucket/backbones/minilm" in text


def test_module_code_by_dotted_path(compiled, pipeline_spec):
    tasks = pipeline_spec.root.dag.tasks
    transform = tasks["Transform"].inputs.parameters
    trainer = tasks["Trainer"].inputs.parameters
    assert transform["preprocessing_fn"].runtime_value.constant.string_value == "components.transform.preprocessing_fn"
    assert trainer["run_fn"].runtime_value.constant.string_value == "components.trainer.run_fn"
    assert "module_file" not in transform
    assert "module_file" not in trainer
    # TFX packs module files into wheels under <pipeline root>/_wheels; dotted paths need none.
    assert "_wheels" not in compiled["text"]


def test_no_resolver_executor(pipeline_spec, executors):
    for label, executor in executors.items():
        assert executor.WhichOneof("spec") == "container", label
    tasks = pipeline_spec.root.dag.tasks
    assert not tasks["latest_pushed_model"].caching_options.enable_cache
    assert tasks["Transform"].caching_options.enable_cache
    assert "latest_pushed_model" in tasks["Evaluator"].dependent_tasks


def test_spec_command_is_installed(pipeline_spec, executors):
    commands = set()
    for executor in executors.values():
        commands.add(tuple(executor.container.command))
        if executor.container.lifecycle.HasField("pre_cache_check"):
            commands.add(tuple(executor.container.lifecycle.pre_cache_check.command))
    assert tuple(kubeflow_runner.ENTRYPOINT_COMMAND) in commands
    for command in commands:
        assert command[:2] == ("python", "-m"), command
        assert importlib.util.find_spec(command[2]) is not None, command
    entrypoint = importlib.util.find_spec("pipeline.kubeflow_executor")
    assert pathlib.Path(entrypoint.origin).is_relative_to(REPO)


def test_dockerfile_installs_lock_file(pipeline_spec, executors):
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = "\n".join(lines)
    assert re.search(r"^FROM tensorflow/tensorflow:2\.16\.\d+-gpu$", text, re.MULTILINE)
    assert "COPY requirements.lock ./" in lines
    assert re.search(r"uv pip sync .*requirements\.lock$", text, re.MULTILINE)
    assert re.search(r"uv pip install .*--no-deps.* \.", text)
    assert (REPO / "requirements.lock").is_file()
    entrypoints = [line for line in lines if line.startswith("ENTRYPOINT")]
    assert len(entrypoints) == 1
    trainer_command = list(executors["Trainer_executor"].container.command)
    assert json.loads(entrypoints[0][len("ENTRYPOINT"):]) == trainer_command


def test_spec_loads_in_kfp(compiled):
    from kfp import components

    component = components.load_component_from_file(str(compiled["path"]))
    assert component.pipeline_spec.pipeline_info.name == "sst2"
    assert "Trainer_executor" in json_format.MessageToDict(component.platform_spec)["platforms"]["kubernetes"][
        "deploymentSpec"
    ]["executors"]


def test_evaluator_gets_gpu_when_listed(compiled):
    config = load_config(str(CONFIG_PATH), ["kubeflow.accelerator.components=[Trainer, Evaluator]"])
    resources = kubeflow_runner.platform_configs(config.kubeflow)
    with_gpu = sorted(name for name, spec in resources.items() if spec.HasField("accelerator"))
    assert with_gpu == ["Evaluator", "Trainer"]
    platform = kubeflow_runner.kubernetes_platform_spec(config.kubeflow)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert sorted(executors) == ["Evaluator_executor", "Trainer_executor"]
    assert executors["Evaluator_executor"] == executors["Trainer_executor"]


def test_cluster_config_replaces_local_paths(compiled):
    cluster = kubeflow_runner.cluster_config(compiled["config"])
    assert cluster.output.pipeline_root == "gs://example-bucket/textxfer/sst2/pipeline_root"
    assert cluster.output.serving_dir == "gs://example-bucket/textxfer/sst2/serving"
    assert cluster.backbone.handle == "gs://example-bucket/backbones/minilm"
    assert cluster.data.dir == "gs://example-bucket/datasets/glue_sst2"
    assert cluster.data.dataset is None
    assert cluster.kubeflow is None


def test_relative_backbone_rejected():
    config = load_config(str(CONFIG_PATH), ["kubeflow.backbone_handle=null"])
    with pytest.raises(ValueError, match="set kubeflow.backbone_handle"):
        kubeflow_runner.cluster_config(config)


def test_resolver_executor_rejected():
    # What TFX 1.16 compiles a LatestBlessedModelStrategy Resolver into (abridged).
    spec = {
        "deploymentSpec": {
            "executors": {
                "Trainer_executor": {"container": {"image": "textxfer"}},
                "latest_blessed_model_resolver-model-resolver_executor": {
                    "resolver": {"outputArtifactQueries": {"model": {"filter": 'schema_title="tfx.Model"'}}}
                },
            }
        }
    }
    with pytest.raises(ValueError, match="latest_blessed_model_resolver-model-resolver_executor is a TFX Resolver"):
        kubeflow_runner._check_no_resolver(spec)


def test_baseline_none_builds_without_baseline():
    config = load_config(str(CONFIG_PATH), ["kubeflow.baseline=none"])
    components = {component.id: component for component in kubeflow_runner.build_pipeline(config).components}
    assert "latest_pushed_model" not in components
    assert not any("resolver" in component_id for component_id in components)
    assert "baseline_model" not in components["Evaluator"].inputs


def test_schema_file_shipped_in_image(compiled):
    """A relative schema path in the spec must exist in the image, below its WORKDIR."""
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    config = load_config(str(CONFIG_PATH))
    schema = config.data.schema
    assert schema and not os.path.isabs(schema)
    assert schema in compiled["path"].read_text()
    copied = [line.split()[1].rstrip("/") for line in lines if line.startswith("COPY")]
    assert schema.split("/")[0] in copied
    assert (REPO / schema).is_file()


def test_report_output_is_kfp_html(pipeline_spec):
    # KFP's UI renders artifacts whose MLMD type is `system.HTML`; the v2 launcher names the
    # type after the title of the output's instance schema.
    outputs = pipeline_spec.components["Report"].output_definitions.artifacts
    schema = yaml.safe_load(outputs["report"].artifact_type.instance_schema)
    assert schema["title"] == "system.HTML"
    assert "Report" in pipeline_spec.root.dag.tasks
    assert sorted(pipeline_spec.root.dag.tasks["Report"].dependent_tasks) == ["Evaluator", "Trainer"]


def test_entrypoint_imports_every_artifact_type(pipeline_spec):
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
    from tfx.utils import import_utils

    from pipeline import kubeflow_executor

    modules_before = set(sys.modules)
    kubeflow_executor.register_custom_artifact_types()
    try:
        titles = set()
        for component in pipeline_spec.components.values():
            for definitions in (component.input_definitions, component.output_definitions):
                for spec in definitions.artifacts.values():
                    # TFX's entrypoint imports the class named by the schema title of each artifact.
                    class_path = kubeflow_v2_entrypoint_utils._retrieve_class_path(spec.artifact_type)
                    artifact_class = import_utils.import_class_by_path(class_path)
                    title = yaml.safe_load(spec.artifact_type.instance_schema)["title"]
                    titles.add(title)
                    if not title.startswith("tfx."):
                        assert artifact_class.TYPE_NAME == title
        assert {"system.HTML", "textxfer.ValidatedStatistics"} <= titles
    finally:
        for name in set(sys.modules) - modules_before:
            if name in ("system", "textxfer"):
                del sys.modules[name]
