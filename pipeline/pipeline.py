"""The textxfer DAG, built from a `PipelineConfig` by one pure factory.

`create_pipeline` builds components and wires them; it reads no file and touches no network,
so the local runner and the Kubeflow compiler share it unchanged.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Union

from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from components.evaluation import COMPONENT_ID as EVALUATOR_ID
from components.evaluation import Evaluator, build_eval_config
from components.latest_pushed_model import COMPONENT_ID as LATEST_PUSHED_ID
from components.latest_pushed_model import LatestPushedModel
from components.parameterized_trainer import ParameterizedTrainer
from components.pusher import COMPONENT_ID as PUSHER_ID
from components.pusher import VersionedPusher
from components.report import COMPONENT_ID as REPORT_ID
from components.report import Report
from components.text_example_gen.component import TextExampleGen
from pipeline.config import PipelineConfig
from pipeline.data_checks import data_check_components

# Module code is referenced by dotted path, so the installed package is used locally and in
# the Kubeflow image alike, and TFX does not pack module files into wheels at run time.
PREPROCESSING_FN = "components.transform.preprocessing_fn"
RUN_FN = "components.trainer.run_fn"

RESOLVER_ID = "latest_blessed_model_resolver"
# Baselines for the Evaluator: TFX's latest-blessed-model Resolver (local runs and Vertex AI;
# open-source Kubeflow rejects its `resolver` executors), or the newest model in the
# Pusher's serving directory (every orchestrator).
BASELINE_RESOLVER = "resolver"
BASELINE_LATEST_PUSHED = "latest_pushed"


def reader_config(config: PipelineConfig) -> dict:
    """Return the ExampleGen reader settings (format and column mapping) of `config`."""
    data = config.data
    return {
        "format": data.format,
        "header": data.header,
        "delimiter": data.delimiter,
        "encoding": data.encoding,
        "columns": {
            "text": data.columns.text,
            "text_pair": data.columns.text_pair,
            "label": data.columns.label,
            "slices": list(data.columns.slices),
        },
        "max_bad_rows": data.max_bad_rows,
    }


def create_pipeline(
    config: PipelineConfig,
    *,
    data_root: Optional[str] = None,
    metadata_connection_config=None,
    beam_pipeline_args: Optional[list] = None,
    include_baseline: bool = True,
    baseline: str = BASELINE_RESOLVER,
    train_steps: Optional[Union[int, Any]] = None,
    learning_rate: Optional[Union[float, Any]] = None,
    platform_configs: Optional[Mapping[str, Any]] = None,
    previous_statistics_resolver: Optional[bool] = None,
) -> tfx.dsl.Pipeline:
    """Build the textxfer TFX pipeline for `config`.

    Args:
      config: the validated experiment config.
      data_root: directory that the data file patterns are relative to; defaults to
        `config.data.dir` (the local runner resolves named datasets before calling this).
      metadata_connection_config: ML Metadata connection; None lets the orchestrator choose
        (Kubeflow supplies its own).
      beam_pipeline_args: options for the Beam pipelines inside components.
      include_baseline: give the Evaluator a baseline model, chosen by `baseline`.
      baseline: `resolver` (the latest blessed model, through TFX's Resolver) or
        `latest_pushed` (the newest model in the serving directory, `LatestPushedModel`).
      train_steps: step budget that overrides the sum of `training.phases`, rescaling each
        phase; an int or a `RuntimeParameter`. With this or `learning_rate` set, the
        Trainer is a `ParameterizedTrainer` (its id stays `Trainer`).
      learning_rate: backbone learning rate overriding `training.learning_rate`; a float or
        a `RuntimeParameter`.
      platform_configs: component id to platform config (for Kubeflow V2 a
        `PipelineContainerSpec.ResourceSpec`), applied with `with_platform_config`.
      previous_statistics_resolver: resolve the last validated span's statistics with TFX's
        Resolver, for AnomalyGate's label drift check. Defaults to true when the Evaluator's
        baseline uses the Resolver too (orchestrators that run resolvers); without it the
        drift check is skipped.

    Returns:
      A `tfx.dsl.Pipeline` with ExampleGen, StatisticsGen, SchemaGen (ImportSchemaGen when
      `data.schema` is set), ExampleValidator, AnomalyGate (with its resolver), Transform,
      TextStatisticsGate, Trainer, the baseline resolver, Evaluator, Pusher and Report.
    """
    data_root = data_root or config.data.dir
    if not data_root:
        raise ValueError(
            f"{config.source}: no data directory: set data.dir, or resolve data.dataset first"
        )
    custom_config = {"config": config.to_dict()}

    example_gen = TextExampleGen(
        input_base=data_root,
        input_config=example_gen_pb2.Input(
            splits=[
                example_gen_pb2.Input.Split(name="train", pattern=config.data.train),
                example_gen_pb2.Input.Split(name="eval", pattern=config.data.eval),
            ]
        ),
        reader_config=reader_config(config),
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    if config.data.schema:
        schema_gen = tfx.components.ImportSchemaGen(schema_file=config.data.schema)
    else:
        schema_gen = tfx.components.SchemaGen(
            statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
        )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
    )
    data_checks = data_check_components(
        config,
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
        anomalies=example_validator.outputs["anomalies"],
        examples=example_gen.outputs["examples"],
        previous_statistics_resolver=(
            include_baseline and baseline == BASELINE_RESOLVER
            if previous_statistics_resolver is None
            else previous_statistics_resolver
        ),
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config=custom_config,
    )
    # Nothing downstream runs when the span's data fails its checks.
    transform.add_upstream_node(data_checks.anomaly_gate)
    data_checks.text_statistics_gate.add_upstream_node(transform)
    trainer_args = dict(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=sum(phase.steps for phase in config.training.phases)),
        eval_args=tfx.proto.EvalArgs(num_steps=None),
        custom_config=custom_config,
    )
    if train_steps is None and learning_rate is None:
        trainer = tfx.components.Trainer(**trainer_args)
    else:
        trainer = ParameterizedTrainer(
            **trainer_args, train_steps=train_steps, learning_rate=learning_rate
        ).with_id("Trainer")
    trainer.add_upstream_node(data_checks.text_statistics_gate)
    components = [
        example_gen,
        statistics_gen,
        schema_gen,
        example_validator,
        *data_checks.resolvers,
        data_checks.anomaly_gate,
        transform,
        data_checks.text_statistics_gate,
        trainer,
    ]

    baseline_model = None
    if include_baseline and baseline == BASELINE_LATEST_PUSHED:
        latest_pushed = LatestPushedModel(
            serving_dir=config.output.serving_dir, candidate=trainer.outputs["model"]
        ).with_id(LATEST_PUSHED_ID)
        baseline_model = latest_pushed.outputs["model"]
        components.append(latest_pushed)
    elif include_baseline and baseline != BASELINE_RESOLVER:
        raise ValueError(
            f"unknown baseline {baseline!r}: use {BASELINE_RESOLVER!r} or {BASELINE_LATEST_PUSHED!r}"
        )
    elif include_baseline:
        model_resolver = tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
            model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
            model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
        ).with_id(RESOLVER_ID)
        baseline_model = model_resolver.outputs["model"]
        components.append(model_resolver)

    eval_config = build_eval_config(config)
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline_model,
        eval_config=eval_config,
    ).with_id(EVALUATOR_ID)
    pusher = VersionedPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=config.output.serving_dir
            )
        ),
    ).with_id(PUSHER_ID)
    # The report runs whether or not the model was blessed, so a rejected run explains itself.
    report = Report(
        evaluation=evaluator.outputs["evaluation"],
        blessing=evaluator.outputs["blessing"],
        model_run=trainer.outputs["model_run"],
        eval_config=eval_config,
        labels=config.data.labels,
        title=f"{config.name}: run report",
    ).with_id(REPORT_ID)
    components += [evaluator, pusher, report]
    for component in components:
        if platform_configs and component.id in platform_configs:
            component.with_platform_config(platform_configs[component.id])

    return tfx.dsl.Pipeline(
        pipeline_name=config.name,
        pipeline_root=config.output.pipeline_root,
        components=components,
        enable_cache=config.runner.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )
