"""Submit a compiled pipeline to a Kubeflow Pipelines v2 API, once or on a cron schedule.

Both commands upload the compiled file as a pipeline version (so the Kubeflow UI lists it
under Pipelines), find or create the experiment, and then create a run or a recurring run
of that version. They use `kfp.Client` against the KFP v2beta1 REST API.

The API token is read from the environment variable named by `kubeflow.token_env` and only
handed to `kfp.Client`; it is never logged or printed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Mapping, Optional

import yaml
from absl import logging

from pipeline.config import ConfigError, KubeflowConfig, PipelineConfig

# JSON-serialised filter.proto predicate operation that the KFP API accepts.
_EQUALS = "EQUALS"
_PARAMETER_PARSERS = {
    "STRING": str,
    "NUMBER_INTEGER": int,
    "NUMBER_DOUBLE": float,
    "BOOLEAN": lambda text: {"true": True, "false": False}[text.lower()],
}


@dataclasses.dataclass
class SubmitResult:
    """Ids of what `submit_run` or `schedule_run` created or reused on the cluster."""

    pipeline_id: str
    version_id: str
    experiment_id: str
    run_id: Optional[str] = None
    recurring_run_id: Optional[str] = None


def connect(kubeflow: KubeflowConfig, host: Optional[str] = None, environ: Mapping[str, str] = os.environ):
    """Create a `kfp.Client` for `host` (default `kubeflow.host`) with the token from `environ`."""
    import kfp

    host = host or kubeflow.host
    if not host:
        raise ConfigError("no KFP API endpoint: set kubeflow.host in the config or pass --host")
    token = environ.get(kubeflow.token_env) or None
    if token is None:
        logging.info("%s is not set; sending requests to %s without a bearer token", kubeflow.token_env, host)
    else:
        logging.info("using the bearer token from %s for %s", kubeflow.token_env, host)
    kwargs = {"namespace": kubeflow.namespace} if kubeflow.namespace else {}
    return kfp.Client(host=host, existing_token=token, **kwargs)


def normalize_cron(expression: str) -> str:
    """Return `expression` in the 6-field cron syntax (seconds first) that KFP schedules use.

    A standard 5-field expression gets a leading `0` seconds field; `@hourly`-style
    descriptors and `@every 1h` are passed through. Raises ValueError for other field counts.
    """
    expression = " ".join(expression.split())
    if expression.startswith("@"):
        return expression
    fields = expression.split(" ")
    if len(fields) == 5:
        return "0 " + expression
    if len(fields) == 6:
        return expression
    raise ValueError(
        f"invalid cron expression {expression!r}: expected 5 fields (minute hour day month weekday) "
        "or 6 with seconds first, e.g. '0 3 * * *' for 03:00 every day"
    )


def parse_parameters(package_path: str, assignments: list) -> dict:
    """Parse `NAME=VALUE` strings into runtime parameters of the compiled pipeline at `package_path`.

    Each value is converted to the type the pipeline declares; an unknown name raises
    ValueError listing the declared ones.
    """
    declared = pipeline_parameters(package_path)
    parameters = {}
    for assignment in assignments:
        name, separator, text = assignment.partition("=")
        if not separator:
            raise ValueError(f"invalid parameter {assignment!r}: expected NAME=VALUE, e.g. learning_rate=3e-5")
        if name not in declared:
            raise ValueError(
                f"{package_path} has no runtime parameter {name!r}; it declares {', '.join(sorted(declared))}"
            )
        parser = _PARAMETER_PARSERS.get(declared[name], str)
        try:
            parameters[name] = parser(text)
        except (ValueError, KeyError):
            raise ValueError(f"parameter {name}: {text!r} is not a valid {declared[name]}") from None
    return parameters


def pipeline_parameters(package_path: str) -> dict:
    """Return {name: parameterType} of the runtime parameters the compiled pipeline declares."""
    with open(package_path, encoding="utf-8") as package_file:
        spec = next(yaml.safe_load_all(package_file))
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {name: body.get("parameterType", "STRING") for name, body in declared.items()}


def upload_version(client, package_path: str, pipeline_name: str) -> tuple:
    """Upload `package_path` as a version of pipeline `pipeline_name`; return (pipeline_id, version_id).

    A new pipeline is created on first upload. Later uploads add a version named after the
    file's SHA-256, so uploading an unchanged file reuses the existing version.
    """
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(package_path, pipeline_name=pipeline_name)
        versions = client.list_pipeline_versions(pipeline.pipeline_id, page_size=1, sort_by="created_at desc")
        version_id = versions.pipeline_versions[0].pipeline_version_id
        logging.info("uploaded new pipeline %s (%s), version %s", pipeline_name, pipeline.pipeline_id, version_id)
        return pipeline.pipeline_id, version_id

    version_name = f"{pipeline_name}-{_file_digest(package_path)}"
    existing = client.list_pipeline_versions(pipeline_id, page_size=1, filter=_name_filter(version_name))
    if existing.pipeline_versions:
        version_id = existing.pipeline_versions[0].pipeline_version_id
        logging.info("pipeline %s already has version %s (%s)", pipeline_name, version_name, version_id)
        return pipeline_id, version_id
    version = client.upload_pipeline_version(package_path, version_name, pipeline_id=pipeline_id)
    logging.info("uploaded version %s (%s) of pipeline %s", version_name, version.pipeline_version_id, pipeline_name)
    return pipeline_id, version.pipeline_version_id


def submit_run(
    config: PipelineConfig,
    package_path: str,
    *,
    client=None,
    parameters: Optional[dict] = None,
    run_name: Optional[str] = None,
) -> SubmitResult:
    """Upload the compiled pipeline at `package_path` and start one run of it."""
    kubeflow = _kubeflow(config)
    client = client or connect(kubeflow)
    result = _prepare(client, config, package_path)
    run = client.run_pipeline(
        experiment_id=result.experiment_id,
        job_name=run_name or config.name,
        params=parameters or {},
        pipeline_id=result.pipeline_id,
        version_id=result.version_id,
        service_account=kubeflow.service_account,
    )
    result.run_id = run.run_id
    logging.info("started run %s of pipeline %s in experiment %s", run.run_id, config.name, result.experiment_id)
    return result


def schedule_run(
    config: PipelineConfig,
    package_path: str,
    cron: str,
    *,
    client=None,
    parameters: Optional[dict] = None,
    max_concurrency: Optional[int] = None,
    name: Optional[str] = None,
) -> SubmitResult:
    """Upload the compiled pipeline and create a recurring run on the 5- or 6-field `cron` schedule.

    Missed runs are not caught up (`no_catchup`), and at most `max_concurrency` runs
    (default `kubeflow.max_concurrency`, 1) run at once.
    """
    kubeflow = _kubeflow(config)
    cron = normalize_cron(cron)
    if max_concurrency is None:
        max_concurrency = kubeflow.max_concurrency
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency {max_concurrency} must be >= 1")
    client = client or connect(kubeflow)
    result = _prepare(client, config, package_path)
    recurring_run = client.create_recurring_run(
        experiment_id=result.experiment_id,
        job_name=name or f"{config.name}-scheduled",
        cron_expression=cron,
        max_concurrency=max_concurrency,
        no_catchup=True,
        params=parameters or {},
        pipeline_id=result.pipeline_id,
        version_id=result.version_id,
        service_account=kubeflow.service_account,
    )
    result.recurring_run_id = recurring_run.recurring_run_id
    logging.info(
        "created recurring run %s of pipeline %s: cron %r, max concurrency %d, no catch-up",
        recurring_run.recurring_run_id, config.name, cron, max_concurrency,
    )
    return result


def _prepare(client, config: PipelineConfig, package_path: str) -> SubmitResult:
    if not os.path.isfile(package_path):
        raise FileNotFoundError(
            f"compiled pipeline not found: {package_path}; create it with "
            f"`textxfer compile --config {config.source} --output {package_path}`"
        )
    pipeline_id, version_id = upload_version(client, package_path, config.name)
    kubeflow = _kubeflow(config)
    experiment = client.create_experiment(name=kubeflow.experiment or config.name, namespace=kubeflow.namespace)
    return SubmitResult(pipeline_id=pipeline_id, version_id=version_id, experiment_id=experiment.experiment_id)


def _kubeflow(config: PipelineConfig) -> KubeflowConfig:
    if config.kubeflow is None:
        raise ConfigError(f"{config.source}: no kubeflow section; see kubeflow/README.md for its keys")
    return config.kubeflow


def _file_digest(path: str) -> str:
    with open(path, "rb") as package_file:
        return hashlib.sha256(package_file.read()).hexdigest()[:12]


def _name_filter(name: str) -> str:
    predicate: dict[str, Any] = {"operation": _EQUALS, "key": "display_name", "stringValue": name}
    return json.dumps({"predicates": [predicate]})
