"""Compile the textxfer DAG into a Kubeflow Pipelines v2 pipeline spec (YAML) with TFX's KubeflowV2DagRunner.

The compiled file contains two YAML documents: the `PipelineSpec` (schema 2.1.0) and a
`PlatformSpec` with the Kubernetes node selector and tolerations of the GPU components, which
TFX cannot express. Both parse with kfp's `pipeline_spec_pb2`, and `kfp.Client` uploads the file with both.

What this module adds to TFX's output:
- CPU and memory on every executor. TFX 1.16 drops the platform config of a
  FileBasedExampleGen (its step builder builds that container without resources), so the
  compiled resources are checked and restored here.
- Defaults of the runtime parameters and the default pipeline root, which TFX writes only
  into the PipelineJob runtime config that a YAML spec omits.
- No caching for the baseline task, whose output depends on what was pushed since.
"""

from __future__ import annotations

import dataclasses
import os
import yaml
from absl import logging

from pipeline.config import (
    REMOTE_SCHEMES,
    ConfigError,
    KUBEFLOW_COMPONENT_IDS,
    KubeflowConfig,
    OutputConfig,
    PipelineConfig,
    ResourcesConfig,
    cpu_cores,
    memory_bytes,
)

# Container command of every task; the Dockerfile installs this package so the module exists.
ENTRYPOINT_COMMAND = ("python", "-m", "pipeline.kubeflow_executor")
DATA_ROOT_PARAMETER = "data_root"
TRAIN_STEPS_PARAMETER = "train_steps"
LEARNING_RATE_PARAMETER = "learning_rate"
BASELINE_TASK = "latest_pushed_model"
_KUBERNETES_PLATFORM = "kubernetes"


def cluster_config(config: PipelineConfig) -> PipelineConfig:
    """Return `config` with the paths that pods read replaced by those of its `kubeflow` section.

    The result has no `kubeflow` section, because it travels into the components'
    `custom_config`, where resource settings would only change cache keys.
    """
    kubeflow = _kubeflow(config)
    backbone_handle = kubeflow.backbone_handle or config.backbone.handle
    if not backbone_handle.startswith(REMOTE_SCHEMES + ("/",)):
        raise ConfigError(
            f"{config.source}: backbone.handle {backbone_handle!r} is a relative path that pods cannot read: "
            "set kubeflow.backbone_handle to a gs:// or s3:// copy of the backbone or a TF Hub URL"
        )
    local_paths = {
        "backbone.handle / kubeflow.backbone_handle": backbone_handle,
        "data.schema": config.data.schema,
        "training.checkpoint_dir": config.training.checkpoint_dir,
    }
    for key, path in local_paths.items():
        if path and path.startswith("/"):
            # Pods can read an absolute path only from a volume mounted there (a PVC); a
            # relative data.schema resolves inside the image, which ships schemas/.
            logging.warning("%s: %s is the absolute path %s; pods can read it only if a volume is "
                            "mounted there, so prefer a gs:// path", config.source, key, path)
    return dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, dir=kubeflow.data_root, dataset=None),
        backbone=dataclasses.replace(config.backbone, handle=backbone_handle),
        output=OutputConfig(dir=kubeflow.output_dir),
        kubeflow=None,
    )


def runtime_parameters(config: PipelineConfig) -> dict:
    """Return the pipeline's runtime parameters by name, with defaults from `config`."""
    from tfx.orchestration import data_types

    kubeflow = _kubeflow(config)
    return {
        DATA_ROOT_PARAMETER: data_types.RuntimeParameter(
            name=DATA_ROOT_PARAMETER, ptype=str, default=kubeflow.data_root,
            description="directory that data.train and data.eval are relative to",
        ),
        TRAIN_STEPS_PARAMETER: data_types.RuntimeParameter(
            name=TRAIN_STEPS_PARAMETER, ptype=int,
            default=sum(phase.steps for phase in config.training.phases),
            description="training budget in steps; the freeze phases are rescaled to it",
        ),
        LEARNING_RATE_PARAMETER: data_types.RuntimeParameter(
            name=LEARNING_RATE_PARAMETER, ptype=float, default=config.training.learning_rate,
            description="backbone learning rate",
        ),
    }


def resource_spec(resources: ResourcesConfig, accelerator=None):
    """Build the KFP `ResourceSpec` for `resources` and an optional `AcceleratorConfig`.

    Both the string fields that kfp-pipeline-spec 0.6 prefers and the deprecated numeric
    ones (cores, and memory in 10^9 bytes) are set, as kfp 2.13's own compiler does, so
    older KFP backends read the same values.
    """
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec_class = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
    spec = spec_class(
        resource_cpu_request=resources.cpu_request,
        resource_cpu_limit=resources.cpu_limit,
        resource_memory_request=resources.memory_request,
        resource_memory_limit=resources.memory_limit,
        cpu_request=cpu_cores(resources.cpu_request),
        cpu_limit=cpu_cores(resources.cpu_limit),
        memory_request=memory_bytes(resources.memory_request) / 1e9,
        memory_limit=memory_bytes(resources.memory_limit) / 1e9,
    )
    if accelerator is not None:
        spec.accelerator.CopyFrom(
            spec_class.AcceleratorConfig(
                resource_type=accelerator.resource_type,
                resource_count=str(accelerator.count),
                type=accelerator.resource_type,
                count=accelerator.count,
            )
        )
    return spec


def platform_configs(kubeflow: KubeflowConfig) -> dict:
    """Return the `ResourceSpec` of every component id, with the GPU on the accelerator components."""
    accelerator = kubeflow.accelerator
    gpu_components = set(accelerator.components) if accelerator else set()
    return {
        component_id: resource_spec(
            kubeflow.component_resources(component_id),
            accelerator if component_id in gpu_components else None,
        )
        for component_id in KUBEFLOW_COMPONENT_IDS
    }


def kubernetes_platform_spec(kubeflow: KubeflowConfig) -> dict:
    """Return the `PlatformSpec` (as JSON-style dict) with node selector and tolerations of the GPU components."""
    from google.protobuf import json_format
    from kfp.kubernetes import kubernetes_executor_config_pb2 as kubernetes_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    accelerator = kubeflow.accelerator
    platform_spec = pipeline_spec_pb2.PlatformSpec()
    if accelerator is None or not (accelerator.node_selector or accelerator.tolerations):
        return {}
    executor_config = kubernetes_pb2.KubernetesExecutorConfig(
        node_selector=kubernetes_pb2.NodeSelector(labels=accelerator.node_selector),
        tolerations=[
            kubernetes_pb2.Toleration(
                key=toleration.key,
                operator=toleration.operator,
                value=toleration.value or "",
                effect=toleration.effect or "",
            )
            for toleration in accelerator.tolerations
        ],
    )
    executors = platform_spec.platforms[_KUBERNETES_PLATFORM].deployment_spec.executors
    for component_id in accelerator.components:
        executors[executor_label(component_id)].update(json_format.MessageToDict(executor_config))
    return json_format.MessageToDict(platform_spec)


def executor_label(component_id: str) -> str:
    """Return the deployment executor key that TFX's V2 compiler gives `component_id`."""
    return f"{component_id}_executor"


def build_pipeline(config: PipelineConfig):
    """Build the TFX pipeline for the cluster: cluster paths, runtime parameters and resources."""
    from pipeline.pipeline import create_pipeline

    kubeflow = _kubeflow(config)
    cluster = cluster_config(config)
    parameters = runtime_parameters(config)
    return create_pipeline(
        cluster,
        data_root=parameters[DATA_ROOT_PARAMETER],
        beam_pipeline_args=list(config.runner.beam_args),
        include_baseline=kubeflow.baseline != "none",
        # Only read when include_baseline is true.
        baseline=kubeflow.baseline,
        train_steps=parameters[TRAIN_STEPS_PARAMETER],
        learning_rate=parameters[LEARNING_RATE_PARAMETER],
        platform_configs=platform_configs(kubeflow),
    )


def compile_pipeline(config: PipelineConfig, output_path: str) -> dict:
    """Compile `config` into the two-document KFP YAML at `output_path`; return the PipelineSpec dict."""
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    kubeflow = _kubeflow(config)
    tfx_pipeline = build_pipeline(config)
    runner_config = kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
        default_image=kubeflow.image,
        default_commands=list(ENTRYPOINT_COMMAND),
        use_pipeline_spec_2_1=True,
    )
    # write_out=False: this module writes the file, with the PlatformSpec that TFX lacks.
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(runner_config)
    pipeline_job = runner.run(tfx_pipeline, write_out=False)
    spec = pipeline_job["pipelineSpec"]

    restored = _restore_resources(spec, tfx_pipeline)
    if restored:
        logging.info("restored the resources that TFX's compiler dropped from %s", ", ".join(restored))
    _set_parameter_defaults(spec, runtime_parameters(config))
    spec["defaultPipelineRoot"] = tfx_pipeline.pipeline_info.pipeline_root
    tasks = spec["root"]["dag"]["tasks"]
    if BASELINE_TASK in tasks:
        tasks[BASELINE_TASK]["cachingOptions"] = {}
    if kubeflow.baseline != "resolver":
        _check_no_resolver(spec)

    write_spec(output_path, spec, kubernetes_platform_spec(kubeflow))
    logging.info("compiled pipeline %s (%d tasks) to %s", config.name, len(tasks), output_path)
    return spec


def write_spec(output_path: str, pipeline_spec: dict, platform_spec: dict) -> None:
    """Write the PipelineSpec and, when not empty, the PlatformSpec as YAML documents."""
    documents = [pipeline_spec] + ([platform_spec] if platform_spec else [])
    directory = os.path.dirname(output_path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(output_path, "w", encoding="utf-8") as output_file:
        output_file.write(f"# PIPELINE DEFINITION\n# Name: {pipeline_spec['pipelineInfo']['name']}\n")
        output_file.write("# Compiled by `textxfer compile`; see kubeflow/README.md.\n")
        yaml.safe_dump_all(documents, output_file, sort_keys=True)


def _restore_resources(spec: dict, tfx_pipeline) -> list:
    """Set each executor's resources to its component's platform config; return the ids fixed."""
    from google.protobuf import json_format

    restored = []
    executors = spec["deploymentSpec"]["executors"]
    for component in tfx_pipeline.components:
        # Resolver and other non-container nodes have no platform config.
        if getattr(component, "platform_config", None) is None:
            continue
        container = executors[executor_label(component.id)].get("container")
        if container is None:
            raise ValueError(f"{component.id} has a platform config but no container executor to apply it to")
        expected = json_format.MessageToDict(component.platform_config)
        if container.get("resources") != expected:
            # TFX 1.16 builds FileBasedExampleGen containers without the platform config.
            container["resources"] = expected
            restored.append(component.id)
    return restored


def _set_parameter_defaults(spec: dict, parameters: dict) -> None:
    declared = spec["root"].setdefault("inputDefinitions", {}).setdefault("parameters", {})
    for name, parameter in parameters.items():
        if name not in declared:
            raise ValueError(f"runtime parameter {name} is not used by any component of the compiled pipeline")
        declared[name]["defaultValue"] = parameter.default
        declared[name]["isOptional"] = True
        if parameter.description:
            declared[name]["description"] = parameter.description


def _check_no_resolver(spec: dict) -> None:
    for label, executor in spec["deploymentSpec"]["executors"].items():
        if "resolver" in executor:
            raise ValueError(
                f"executor {label} is a TFX Resolver, which open-source Kubeflow Pipelines rejects; "
                "set kubeflow.baseline to latest_pushed"
            )


def _kubeflow(config: PipelineConfig) -> KubeflowConfig:
    if config.kubeflow is None:
        raise ConfigError(f"{config.source}: no kubeflow section; see kubeflow/README.md for its keys")
    return config.kubeflow

