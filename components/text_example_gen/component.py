"""TextExampleGen: a file-based TFX ExampleGen for CSV, TSV and JSONL text data."""

from typing import Any

from tfx import types
from tfx.components.example_gen import utils
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from components.text_example_gen import executor
from components.text_example_gen.config import reader_config_to_json


class TextExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    """FileBasedExampleGen's spec plus `reader_config`, the reader config as a JSON string."""

    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        executor.READER_CONFIG_KEY: ExecutionParameter(type=str),
    }


class TextExampleGen(FileBasedExampleGen):
    """Read delimited text or JSONL files into tf.train.Examples with text and label features.

    The reader config travels as a JSON string execution property rather than in
    FileBasedExampleGen's `custom_config`, which is an `example_gen_pb2.CustomConfig` proto
    wrapping a `google.protobuf.Any`. A string stays readable in the compiled Kubeflow spec.
    The class stays a FileBasedExampleGen, so the Kubeflow V2 compiler gives it the
    file-based ExampleGen driver that resolves spans and fingerprints.

    Example:
        TextExampleGen(
            input_base="/data/sst2",
            input_config=example_gen_pb2.Input(splits=[
                example_gen_pb2.Input.Split(name="train", pattern="train.tsv"),
                example_gen_pb2.Input.Split(name="eval", pattern="dev.tsv"),
            ]),
            reader_config={"format": "tsv", "columns": {
                "text": ["sentence", "content"], "label": "label"}},
        )
    """

    SPEC_CLASS = TextExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        input_base: str,
        input_config: example_gen_pb2.Input,
        reader_config: dict[str, Any],
        output_config: example_gen_pb2.Output | None = None,
    ):
        """Validate `reader_config` (ValueError names the key) and build the component.

        Without `output_config`, the input splits are kept as they are when there are
        several, and a single input split is hashed 2:1 into train and eval, as
        FileBasedExampleGen does.
        """
        output_config = output_config or utils.make_default_output_config(input_config)
        spec = TextExampleGenSpec(
            input_base=input_base,
            input_config=input_config,
            output_config=output_config,
            custom_config=None,
            range_config=None,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            reader_config=reader_config_to_json(reader_config),
            examples=types.Channel(type=standard_artifacts.Examples),
        )
        # FileBasedExampleGen.__init__ always builds the base spec class, which lacks
        # reader_config, so this skips to BaseComponent's constructor with our own spec.
        super(FileBasedExampleGen, self).__init__(spec=spec)  # pylint: disable=bad-super-call
