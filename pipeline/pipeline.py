"""The textxfer DAG, built from a `PipelineConfig` by one pure factory.

`create_pipeline` builds components and wires them; it reads no file and touches no network,
so the local runner and the Kubeflow compiler share it unchanged.
"""

from __future__ import annotations

from typing import Optional

from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from components.evaluation import build_eval_config
from components.text_example_gen.component import TextExampleGen
from pipeline.config import PipelineConfig

# Module code is referenced by dotted path, so the installed package is used locally and in
# the Kubeflow image alike, and TFX does not pack module files into wheels at run time.
PREPROCESSING_FN = "components.transform.preprocessing_fn"
RUN_FN = "components.trainer.run_fn"

RESOLVER_ID = "latest_blessed_model_resolver"


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
) -> tfx.dsl.Pipeline:
    """Build the textxfer TFX pipeline for `config`.

    Args:
      config: the validated experiment config.
      data_root: directory that the data file patterns are relative to; defaults to
        `config.data.dir` (the local runner resolves named datasets before calling this).
      metadata_connection_config: ML Metadata connection; None lets the orchestrator choose
        (Kubeflow supplies its own).
      beam_pipeline_args: options for the Beam pipelines inside components.
      include_baseline: add the latest-blessed-model resolver as the Evaluator's baseline.

    Returns:
      A `tfx.dsl.Pipeline` with ExampleGen, StatisticsGen, SchemaGen, ExampleValidator,
      Transform, Trainer, the baseline resolver, Evaluator and Pusher.
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
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config=custom_config,
    )
    train_steps = sum(phase.steps for phase in config.training.phases)
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=None),
        custom_config=custom_config,
    )
    components = [
        example_gen,
        statistics_gen,
        schema_gen,
        example_validator,
        transform,
        trainer,
    ]

    baseline_model = None
    if include_baseline:
        model_resolver = tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
            model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
            model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
        ).with_id(RESOLVER_ID)
        baseline_model = model_resolver.outputs["model"]
        components.append(model_resolver)

    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline_model,
        eval_config=build_eval_config(config),
    )
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=config.output.serving_dir
            )
        ),
    )
    components += [evaluator, pusher]

    return tfx.dsl.Pipeline(
        pipeline_name=config.name,
        pipeline_root=config.output.pipeline_root,
        components=components,
        enable_cache=config.runner.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )
