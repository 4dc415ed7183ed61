"""Report: one self-contained HTML page per run, after the Evaluator.

The page shows the blessing decision with the result of every threshold, the comparison with
the baseline model, the training curves with the freeze-phase boundaries, the confusion
matrix, the metrics per slice and the calibration (`components.report_html`). It runs whether
or not the Evaluator blessed the model, and on a first run without a baseline.

The output artifact's type is named `system.HTML`, the type that the Kubeflow Pipelines v2 UI
renders: its run page shows artifacts of that MLMD type name with a `display_name` custom
property in an iframe, reading the artifact URI as one file (kubeflow/pipelines frontend,
`MetricsVisualizations.tsx`). TFX's Kubeflow V2 compiler writes the type name as the title of
the artifact's instance schema, and the KFP v2 launcher names the MLMD type after that title.
So the executor writes the page at the artifact URI itself, not into a folder.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, Optional, Sequence

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact, artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

COMPONENT_ID = "Report"
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"
MODEL_RUN_KEY = "model_run"
REPORT_KEY = "report"
LABELS_KEY = "labels"
EVAL_CONFIG_KEY = "eval_config"
TITLE_KEY = "title"
DISPLAY_NAME = "run report"


class ReportHTML(artifact.Artifact):
    """An HTML page stored as one file at the artifact URI.

    `system.HTML` is KFP's own type name for HTML artifacts; it also fits the Kubeflow V2
    compiler's `namespace.Name` rule for custom types.
    """

    TYPE_NAME = "system.HTML"


class ReportSpec(ComponentSpec):
    """Evaluator and Trainer outputs in, one HTML page out."""

    PARAMETERS = {
        # JSON list of class names by class id; an empty list labels classes by id.
        LABELS_KEY: ExecutionParameter(type=str),
        TITLE_KEY: ExecutionParameter(type=str),
        # The Evaluator's tfma.EvalConfig as JSON; its change thresholds are reported as
        # skipped on a run without a baseline.
        EVAL_CONFIG_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {
        EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
        MODEL_RUN_KEY: ChannelParameter(type=standard_artifacts.ModelRun),
    }
    OUTPUTS = {REPORT_KEY: ChannelParameter(type=ReportHTML)}


def blessing_decision(blessing: Optional[artifact.Artifact]) -> Optional[bool]:
    """Return the Evaluator's decision from its ModelBlessing artifact, or None if it has none."""
    if blessing is None or not blessing.has_custom_property("blessed"):
        return None
    return bool(blessing.get_int_custom_property("blessed"))


def write_report(page: str, uri: str) -> None:
    """Write `page` as the single file at `uri`, replacing the empty folder TFX created there.

    TFX's local launchers create that folder; its Kubeflow V2 entrypoint creates none, so the
    parent folder is made here.
    """
    if fileio.isdir(uri):
        fileio.rmtree(uri)
    fileio.makedirs(os.path.dirname(uri))
    with fileio.open(uri, "w") as report_file:
        report_file.write(page)


def _parse_eval_config(text: Optional[str]):
    if not text:
        return None
    import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel
    from google.protobuf import json_format  # pylint: disable=import-outside-toplevel

    return json_format.Parse(text, tfma.EvalConfig())


class Executor(base_executor.BaseExecutor):
    """Collect the run's results and write the report page."""

    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]) -> None:
        from components.report_content import collect_report_data  # pylint: disable=import-outside-toplevel
        from components.report_html import render_report  # pylint: disable=import-outside-toplevel

        evaluation = artifact_utils.get_single_instance(input_dict[EVALUATION_KEY])
        blessings = input_dict.get(BLESSING_KEY) or []
        model_runs = input_dict.get(MODEL_RUN_KEY) or []
        report = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
        blessed = blessing_decision(blessings[0] if blessings else None)
        data = collect_report_data(
            evaluation_dir=evaluation.uri,
            model_run_dir=model_runs[0].uri if model_runs else None,
            blessed=blessed,
            labels=json.loads(exec_properties.get(LABELS_KEY) or "[]"),
            eval_config=_parse_eval_config(exec_properties.get(EVAL_CONFIG_KEY)),
            title=exec_properties.get(TITLE_KEY) or "Run report",
            run_label=f"pipeline run {getattr(self._context, 'pipeline_run_id', None) or 'unknown'}",
            created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        )
        write_report(render_report(data), report.uri)
        report.set_string_custom_property("display_name", DISPLAY_NAME)
        report.set_int_custom_property("blessed", -1 if data.blessed is None else int(data.blessed))
        failed = [f"{check.metric} {check.bound} on {check.slice_name}" for check in data.checks
                  if check.status == "failed"]
        logging.info("Wrote the run report to %s (blessed: %s; failed thresholds: %s).", report.uri,
                     data.blessed, "; ".join(failed) or "none")


class Report(base_component.BaseComponent):
    """The run report: an HTML page from the Evaluator's and the Trainer's outputs.

    Example:
        report = Report(evaluation=evaluator.outputs["evaluation"], blessing=evaluator.outputs["blessing"],
                        model_run=trainer.outputs["model_run"], eval_config=eval_config,
                        labels=["negative", "positive"])
    """

    SPEC_CLASS = ReportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, evaluation: types.BaseChannel, blessing: types.BaseChannel, model_run: types.BaseChannel,
                 eval_config, labels: Optional[Sequence[str]] = None, title: str = "Run report"):
        from google.protobuf import json_format  # pylint: disable=import-outside-toplevel

        super().__init__(
            spec=ReportSpec(
                evaluation=evaluation,
                blessing=blessing,
                model_run=model_run,
                labels=json.dumps(list(labels or [])),
                title=title,
                eval_config=json_format.MessageToJson(eval_config, indent=None, sort_keys=True),
                report=types.Channel(type=ReportHTML),
            )
        )
