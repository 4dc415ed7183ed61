"""Read a finished local run back from ML Metadata: component states, metrics, blessing, push, report."""

from __future__ import annotations

from typing import Optional

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline.config import PipelineConfig
from pipeline.local_runner import ComponentResult, RunResult

_STATE_NAMES = {
    value: name for name, value in metadata_store_pb2.Execution.State.items()
}
# Metric names as TFMA reports them, mapped to the names the summary prints.
_SUMMARY_METRICS = {
    "accuracy": "accuracy",
    "binary_accuracy": "accuracy",
    "sparse_categorical_accuracy": "accuracy",
    "auc": "auc",
}


def open_store(config: PipelineConfig) -> metadata_store.MetadataStore:
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = config.output.metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(connection)


def latest_run_result(config: PipelineConfig, *, since: float, seconds: dict) -> RunResult:
    """Summarise the newest `pipeline_run` context of `config.name` created after `since`.

    `seconds` maps node ids to wall times measured from the orchestrator's log; ML Metadata's
    own timestamps are the fallback.
    """
    store = open_store(config)
    runs = [
        context
        for context in store.get_contexts_by_type("pipeline_run")
        if context.create_time_since_epoch >= since * 1000 - 1000
        and _belongs_to(store, context, config.name)
    ]
    if not runs:
        return RunResult(succeeded=False, error="no pipeline run was recorded in ML Metadata")
    run = max(runs, key=lambda context: context.create_time_since_epoch)
    executions = store.get_executions_by_context(run.id)

    result = RunResult(succeeded=True, run_id=run.name)
    outputs = {}
    for execution in sorted(executions, key=lambda item: item.create_time_since_epoch):
        node_id = _node_id(store, execution, config.name)
        state = _STATE_NAMES.get(execution.last_known_state, "UNKNOWN")
        wall = seconds.get(node_id)
        if wall is None and execution.last_update_time_since_epoch:
            wall = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
        result.components.append(ComponentResult(node_id=node_id, state=state, seconds=wall))
        if state not in ("COMPLETE", "CACHED"):
            result.succeeded = False
        outputs[node_id] = _output_artifacts(store, execution.id)

    evaluation = _first(outputs.get("Evaluator", {}).get("evaluation"))
    if evaluation is not None:
        result.metrics = read_overall_metrics(evaluation.uri)
    blessing = _first(outputs.get("Evaluator", {}).get("blessing"))
    if blessing is not None:
        result.blessed = bool(_custom_int(blessing, "blessed"))
    report = _first(outputs.get("Report", {}).get("report"))
    if report is not None:
        result.report_uri = report.uri
    pushed = _first(outputs.get("Pusher", {}).get("pushed_model"))
    if pushed is not None and _custom_int(pushed, "pushed"):
        result.pushed_path = pushed.custom_properties["pushed_destination"].string_value
    return result


def read_overall_metrics(evaluation_uri: str) -> dict:
    """Return the candidate model's overall-slice accuracy and AUC from a TFMA output."""
    import tensorflow_model_analysis as tfma

    metrics = {}
    for slice_metrics in tfma.load_metrics(evaluation_uri):
        if slice_metrics.slice_key.single_slice_keys:
            continue
        for entry in slice_metrics.metric_keys_and_values:
            key = entry.key
            name = _SUMMARY_METRICS.get(key.name)
            if name is None or key.is_diff or key.model_name == "baseline":
                continue
            if entry.value.HasField("double_value"):
                metrics.setdefault(name, entry.value.double_value.value)
    return metrics


def _belongs_to(store, context, pipeline_name: str) -> bool:
    return any(
        parent.name == pipeline_name for parent in store.get_parent_contexts_by_context(context.id)
    ) or context.name.startswith(pipeline_name)


def _node_id(store, execution, pipeline_name: str) -> str:
    prefix = pipeline_name + "."
    for context in store.get_contexts_by_execution(execution.id):
        if context.name.startswith(prefix):
            return context.name[len(prefix):]
    return execution.properties.get("component_id", metadata_store_pb2.Value()).string_value or str(
        execution.id
    )


def _output_artifacts(store, execution_id: int) -> dict:
    """Map output keys of an execution to its output artifacts."""
    outputs = {}
    events = store.get_events_by_execution_ids([execution_id])
    output_events = [
        event
        for event in events
        if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    ]
    artifacts = {
        artifact.id: artifact
        for artifact in store.get_artifacts_by_id([event.artifact_id for event in output_events])
    }
    for event in output_events:
        key = event.path.steps[0].key if event.path.steps else ""
        outputs.setdefault(key, []).append(artifacts[event.artifact_id])
    return outputs


def _first(items: Optional[list]):
    return items[0] if items else None


def _custom_int(artifact, name: str) -> int:
    value = artifact.custom_properties.get(name)
    return value.int_value if value is not None else 0
