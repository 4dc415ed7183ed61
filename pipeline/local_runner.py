"""Run the textxfer pipeline on this machine with TFX's BeamDagRunner or LocalDagRunner.

The runner resolves the data directory, builds the DAG with `create_pipeline`, shows which
component is running, and ends with a summary read back from ML Metadata: each component's
status and wall time, the evaluation metrics, the blessing and the pushed model path. It
copies the run report to `<output.dir>/report.html` and prints that path too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import sys
import time
from typing import Optional

from absl import logging as absl_logging

from pipeline.config import PipelineConfig

# Components create their Beam pipelines with these options. The in-memory DirectRunner
# executes on the FnApiRunner inside this process, which starts no worker processes and
# fetches no runner binary.
DEFAULT_BEAM_ARGS = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]

# The run report's copy in the output directory.
REPORT_FILE = "report.html"
_NODE_EVENT = re.compile(r"^(?:node|Component) (\S+) is (running|finished)\.$")
_PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Log records from these folders are shown on the console; the rest go to run.log only.
_PROJECT_PACKAGES = tuple(os.path.join(_PROJECT_DIR, name) + os.sep for name in ("pipeline", "components"))


@dataclasses.dataclass
class ComponentResult:
    """One component's outcome in a run, as recorded in ML Metadata."""

    node_id: str
    state: str
    seconds: Optional[float]


@dataclasses.dataclass
class RunResult:
    """The outcome of one pipeline run: component states, metrics, blessing and push."""

    succeeded: bool
    run_id: Optional[str] = None
    components: list = dataclasses.field(default_factory=list)
    metrics: dict = dataclasses.field(default_factory=dict)
    blessed: Optional[bool] = None
    pushed_path: Optional[str] = None
    # The Report component's page in the pipeline root, and its copy in the output directory.
    report_uri: Optional[str] = None
    report_path: Optional[str] = None
    error: Optional[str] = None


class ProgressHandler(logging.Handler):
    """Print a line when a component starts or finishes, and our own modules' INFO logs."""

    def __init__(self, stream=None):
        super().__init__(level=logging.INFO)
        self.stream = stream or sys.stdout
        self.started = {}
        self.seconds = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return
        match = _NODE_EVENT.match(message)
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        if match:
            node_id, event = match.groups()
            if event == "running":
                self.started[node_id] = record.created
                self._write(f"[{stamp}] {node_id} running")
            else:
                seconds = record.created - self.started.get(node_id, record.created)
                self.seconds[node_id] = seconds
                self._write(f"[{stamp}] {node_id} finished in {seconds:.1f} s")
        elif record.name.startswith("apache_beam"):
            # Beam logs a failing component's exception again, with its traceback. The
            # component's own message and the run summary already report it, and run.log keeps it.
            return
        elif record.levelno >= logging.ERROR or (
            record.levelno >= logging.INFO and record.pathname.startswith(_PROJECT_PACKAGES)
        ):
            level = "" if record.levelno == logging.INFO else record.levelname + ": "
            self._write(f"[{stamp}]   {level}{message}")

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


class _NotAbsl(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "absl"


@contextlib.contextmanager
def _captured_logs(log_path: str, progress: ProgressHandler):
    """Send every INFO record to `log_path` and only `progress`'s selection to the console.

    TFX, the components and this project log through absl, so `progress` and the log file
    sit on absl's logger, which keeps them even when a library replaces the root logger's
    handlers mid-run. A second file handler on the root logger takes the other libraries'
    records. Handlers already on the root logger and TensorFlow's own handler are raised to
    CRITICAL meanwhile, so the console shows each record once, through `progress`.
    """
    root = logging.getLogger()
    absl_logger = absl_logging.get_absl_logger()
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    absl_file_handler = logging.FileHandler(log_path)
    other_file_handler = logging.FileHandler(log_path)
    other_file_handler.addFilter(_NotAbsl())
    for handler in (absl_file_handler, other_file_handler):
        handler.setFormatter(formatter)

    console_handlers = root.handlers + logging.getLogger("tensorflow").handlers
    previous_handler_levels = [(handler, handler.level) for handler in console_handlers]
    previous_root_level = root.level
    previous_verbosity = absl_logging.get_verbosity()
    for handler, _ in previous_handler_levels:
        handler.setLevel(max(handler.level, logging.CRITICAL))
    root.setLevel(logging.INFO)
    # Through the absl flag, not the logger: TensorFlow's SavedModel code saves and restores
    # the verbosity with get/set_verbosity, which would reset a level set on the logger.
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logger.propagate = False
    logging.captureWarnings(True)
    absl_logger.addHandler(progress)
    absl_logger.addHandler(absl_file_handler)
    root.addHandler(other_file_handler)
    try:
        yield
    finally:
        absl_logger.removeHandler(progress)
        absl_logger.removeHandler(absl_file_handler)
        root.removeHandler(other_file_handler)
        logging.captureWarnings(False)
        absl_logging.set_verbosity(previous_verbosity)
        absl_logger.propagate = True
        root.setLevel(previous_root_level)
        for handler, level in previous_handler_levels:
            handler.setLevel(level)
        absl_file_handler.close()
        other_file_handler.close()


def resolve_data_root(config: PipelineConfig, data_mirror: Optional[str] = None) -> str:
    """Return the local directory holding `config`'s data files, fetching a named dataset."""
    if config.data.dir:
        if not os.path.isdir(config.data.dir):
            raise FileNotFoundError(f"{config.source}: data.dir {config.data.dir!r} is not a directory")
        return config.data.dir
    from pipeline.datasets import ensure_dataset

    return ensure_dataset(config.data.dataset, mirror=data_mirror)


def build_runner(kind: str):
    from tfx import v1 as tfx
    from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

    if kind == "beam":
        return BeamDagRunner()
    return tfx.orchestration.LocalDagRunner()


def run(config: PipelineConfig, *, data_mirror: Optional[str] = None, stream=None) -> RunResult:
    """Run the whole pipeline for `config` and print progress and a summary to `stream`."""
    stream = stream or sys.stdout
    from tfx import v1 as tfx

    from components.freeze import check_schedule_depth
    from pipeline.pipeline import create_pipeline

    # A `top: N` phase deeper than the backbone fails here, before any component runs.
    check_schedule_depth(config)
    data_root = os.path.abspath(resolve_data_root(config, data_mirror))
    os.makedirs(config.output.dir, exist_ok=True)
    config = dataclasses.replace(
        config,
        output=dataclasses.replace(config.output, dir=os.path.abspath(config.output.dir)),
    )
    if config.data.schema:
        schema_path = os.path.abspath(config.data.schema)
        if not os.path.isfile(schema_path):
            raise FileNotFoundError(
                f"{config.source}: data.schema {config.data.schema!r} is not a file (resolved to "
                f"{schema_path}); give the path of a schema.pbtxt, or remove data.schema to infer one"
            )
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, schema=schema_path))
    log_path = os.path.join(config.output.dir, "run.log")
    metadata_config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        config.output.metadata_path
    )
    pipeline = create_pipeline(
        config,
        data_root=data_root,
        metadata_connection_config=metadata_config,
        beam_pipeline_args=DEFAULT_BEAM_ARGS + list(config.runner.beam_args),
    )

    stream.write(
        f"textxfer: running pipeline {config.name!r} with the {config.runner.kind} runner\n"
        f"  data: {data_root}\n  output: {config.output.dir}\n  full log: {log_path}\n"
    )
    progress = ProgressHandler(stream)
    started = time.time()
    error = None
    with _captured_logs(log_path, progress):
        try:
            build_runner(config.runner.kind).run(pipeline)
        except Exception as exception:  # The summary and the exit code report it; the log has the trace.
            error = f"{type(exception).__name__}: {exception}"
            absl_logging.exception("pipeline run failed")

    result = collect_result(config, since=started, seconds=progress.seconds)
    result.report_path = copy_report(result.report_uri, config.output.dir)
    if error:
        result.succeeded = False
        result.error = error
    stream.write(format_summary(result, time.time() - started) + "\n")
    return result


def collect_result(config: PipelineConfig, *, since: float, seconds: Optional[dict] = None) -> RunResult:
    """Read the latest run of `config`'s pipeline (started after `since`) back from ML Metadata."""
    from pipeline import run_metadata

    return run_metadata.latest_run_result(config, since=since, seconds=seconds or {})


def copy_report(report_uri: Optional[str], output_dir: str) -> Optional[str]:
    """Copy the run's report page to `<output_dir>/report.html` and return that path.

    Returns None when the run wrote no report (it failed before the Report component).
    """
    if not report_uri or not os.path.isfile(report_uri):
        return None
    path = os.path.join(output_dir, REPORT_FILE)
    shutil.copyfile(report_uri, path)
    return path


def format_summary(result: RunResult, total_seconds: float) -> str:
    """Format `result` as the table printed at the end of a run."""
    lines = ["", f"{'component':<34} {'status':<10} {'wall time':>10}"]
    for component in result.components:
        wall = f"{component.seconds:.1f} s" if component.seconds is not None else "-"
        lines.append(f"{component.node_id:<34} {component.state:<10} {wall:>10}")
    lines.append(f"{'total':<34} {'':<10} {total_seconds:.1f} s".rstrip())
    lines.append("")
    for name, value in sorted(result.metrics.items()):
        lines.append(f"eval {name}: {value:.4f}")
    if result.blessed is not None:
        lines.append(f"blessed: {'yes' if result.blessed else 'no'}")
    lines.append(f"pushed model: {result.pushed_path or 'none'}")
    lines.append(f"report: {result.report_path or 'none'}")
    if result.error:
        lines.append(f"run failed: {result.error}")
    return "\n".join(lines)
