"""LatestPushedModel: the Evaluator's baseline, taken from the Pusher's serving directory.

TFX's `Resolver` with `LatestBlessedModelStrategy` compiles for Kubeflow V2 into tasks with
`resolver` executors, which only Vertex AI Pipelines runs. The open-source KFP v2 backend
rejects them ("resolver executors not implemented"), so on a self-hosted Kubeflow this
component replaces it: it copies the newest model that the Pusher wrote under its
filesystem destination into its own Model artifact. It is plain container code and runs on
every orchestrator.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import io_utils, path_utils

COMPONENT_ID = "latest_pushed_model"
SERVING_DIR_KEY = "serving_dir"
CANDIDATE_KEY = "candidate"
MODEL_KEY = "model"
# Custom property of the output: `pushed` (a model from serving_dir) or `candidate`.
SOURCE_PROPERTY = "baseline_source"


def find_latest_pushed_model(serving_dir: str) -> Optional[str]:
    """Return the newest `<serving_dir>/<version>` SavedModel directory, or None if there is none.

    Pushers name each version with an integer that grows with every push (TFX's stock Pusher
    its Unix time in seconds, `VersionedPusher` the next number), so the largest integer
    directory name that contains a `saved_model.pb` is the newest push.
    """
    if not fileio.isdir(serving_dir):
        return None
    versions = []
    for name in fileio.listdir(serving_dir):
        name = name.rstrip("/")
        path = os.path.join(serving_dir, name)
        if name.isdigit() and fileio.exists(os.path.join(path, "saved_model.pb")):
            versions.append((int(name), path))
    return max(versions)[1] if versions else None


class LatestPushedModelSpec(ComponentSpec):
    """Serving directory to search, the candidate model to fall back to, and the baseline output."""

    PARAMETERS = {SERVING_DIR_KEY: ExecutionParameter(type=str)}
    INPUTS = {CANDIDATE_KEY: ChannelParameter(type=standard_artifacts.Model)}
    OUTPUTS = {MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


class Executor(base_executor.BaseExecutor):
    """Copy the newest pushed model, or the candidate when nothing was pushed, into the output."""

    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]) -> None:
        serving_dir = exec_properties[SERVING_DIR_KEY]
        output = artifact_utils.get_single_instance(output_dict[MODEL_KEY])
        source = find_latest_pushed_model(serving_dir)
        if source is None:
            # NOTE: with the candidate as its own baseline, change thresholds such as
            # max_accuracy_drop pass trivially, so only the absolute thresholds gate the first push.
            candidate = artifact_utils.get_single_instance(input_dict[CANDIDATE_KEY])
            source = path_utils.serving_model_path(candidate.uri)
            output.set_string_custom_property(SOURCE_PROPERTY, "candidate")
            logging.warning("no pushed model under %s; using the candidate model %s as the baseline", serving_dir, source)
        else:
            output.set_string_custom_property(SOURCE_PROPERTY, "pushed")
            logging.info("baseline model: %s", source)
        io_utils.copy_dir(source, path_utils.serving_model_dir(output.uri))


class LatestPushedModel(base_component.BaseComponent):
    """The newest model pushed to `serving_dir`, as a Model artifact for the Evaluator's baseline.

    Example:
        baseline = LatestPushedModel(serving_dir="gs://bucket/serving", candidate=trainer.outputs["model"])
        Evaluator(..., baseline_model=baseline.outputs["model"])
    """

    SPEC_CLASS = LatestPushedModelSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, serving_dir: str, candidate: types.BaseChannel):
        super().__init__(
            spec=LatestPushedModelSpec(
                serving_dir=serving_dir,
                candidate=candidate,
                model=types.Channel(type=standard_artifacts.Model),
            )
        )
