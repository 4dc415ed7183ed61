"""ParameterizedTrainer: TFX's Trainer with the training budget and learning rate as run-time inputs.

The Kubeflow V2 compiler exposes a `RuntimeParameter` only when it is a whole execution
property, and the learning rate lives inside `custom_config`. This Trainer adds two scalar
properties, `train_steps` and `learning_rate`, and its executor writes them into
`custom_config["config"]` and `train_args` before the usual `run_fn` starts.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Optional, Union

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.components.trainer.component import Trainer
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import data_types
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import json_utils, proto_utils

TRAIN_STEPS_KEY = "train_steps"
LEARNING_RATE_KEY = "learning_rate"

IntParameter = Union[int, data_types.RuntimeParameter]
FloatParameter = Union[float, data_types.RuntimeParameter]


def scale_phases(phases: list, train_steps: int) -> list:
    """Return copies of the freeze `phases` (dicts with `steps`) rescaled to sum to `train_steps`.

    Each phase keeps its share of the budget, rounded, with at least one step; the last phase
    absorbs the rounding. Raises ValueError when the budget has fewer steps than phases.
    """
    if train_steps < len(phases):
        raise ValueError(f"train_steps {train_steps} is below the number of freeze phases ({len(phases)})")
    total = sum(phase["steps"] for phase in phases)
    scaled = [copy.deepcopy(phase) for phase in phases]
    remaining = train_steps
    for index, phase in enumerate(scaled[:-1]):
        phases_after = len(scaled) - index - 1
        steps = max(1, round(phase["steps"] * train_steps / total))
        phase["steps"] = min(steps, remaining - phases_after)
        remaining -= phase["steps"]
    scaled[-1]["steps"] = remaining
    return scaled


def apply_runtime_parameters(exec_properties: dict[str, Any]) -> dict[str, Any]:
    """Return `exec_properties` with `train_steps` and `learning_rate` written into the Trainer's inputs.

    `train_steps` rescales `training.phases` and sets `train_args.num_steps`; `learning_rate`
    sets `training.learning_rate` (the backbone's rate; `head_learning_rate` is unchanged).
    A missing or zero value leaves the compiled setting in place.
    """
    result = dict(exec_properties)
    custom_config = json.loads(result.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "{}")
    training = custom_config["config"]["training"]

    train_steps = result.get(TRAIN_STEPS_KEY)
    if train_steps:
        training["phases"] = scale_phases(training["phases"], int(train_steps))
        train_args = trainer_pb2.TrainArgs()
        proto_utils.json_to_proto(result[standard_component_specs.TRAIN_ARGS_KEY], train_args)
        train_args.num_steps = int(train_steps)
        result[standard_component_specs.TRAIN_ARGS_KEY] = proto_utils.proto_to_json(train_args)

    learning_rate = result.get(LEARNING_RATE_KEY)
    if learning_rate:
        if float(learning_rate) <= 0:
            raise ValueError(f"learning_rate {learning_rate} must be > 0")
        training["learning_rate"] = float(learning_rate)

    result[standard_component_specs.CUSTOM_CONFIG_KEY] = json_utils.dumps(custom_config)
    return result


class ParameterizedTrainerSpec(standard_component_specs.TrainerSpec):
    """TrainerSpec plus the optional `train_steps` and `learning_rate` overrides."""

    PARAMETERS = {
        **standard_component_specs.TrainerSpec.PARAMETERS,
        TRAIN_STEPS_KEY: ExecutionParameter(type=int, optional=True),
        LEARNING_RATE_KEY: ExecutionParameter(type=float, optional=True),
    }


class Executor(trainer_executor.GenericExecutor):
    """GenericExecutor that applies the run-time overrides first."""

    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]) -> None:
        super().Do(input_dict, output_dict, apply_runtime_parameters(exec_properties))


class ParameterizedTrainer(Trainer):
    """A `run_fn` Trainer whose step budget and learning rate may be `RuntimeParameter`s.

    Example:
        ParameterizedTrainer(
            run_fn="components.trainer.run_fn", examples=..., transform_graph=..., schema=...,
            train_args=TrainArgs(num_steps=750), custom_config={"config": config.to_dict()},
            train_steps=RuntimeParameter(name="train_steps", ptype=int, default=750),
            learning_rate=RuntimeParameter(name="learning_rate", ptype=float, default=5e-5),
        )
    """

    SPEC_CLASS = ParameterizedTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        *,
        run_fn: str,
        examples: types.BaseChannel,
        transform_graph: types.BaseChannel,
        schema: types.BaseChannel,
        train_args: trainer_pb2.TrainArgs,
        eval_args: trainer_pb2.EvalArgs,
        custom_config: dict[str, Any],
        train_steps: Optional[IntParameter] = None,
        learning_rate: Optional[FloatParameter] = None,
    ):
        spec = ParameterizedTrainerSpec(
            examples=examples,
            transform_graph=transform_graph,
            schema=schema,
            train_args=train_args,
            eval_args=eval_args,
            run_fn=run_fn,
            custom_config=json_utils.dumps(custom_config),
            train_steps=train_steps,
            learning_rate=learning_rate,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun),
        )
        # Trainer.__init__ always builds the base TrainerSpec, which lacks the two overrides,
        # so this skips to BaseComponent's constructor with the extended spec.
        super(Trainer, self).__init__(spec=spec)  # pylint: disable=bad-super-call
