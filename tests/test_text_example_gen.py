"""TextExampleGen under Beam: exact tf.Example values, real dataset row counts, TFX runners."""

import json
import os
import pathlib

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from tfx import v1 as tfx
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts

from components.text_example_gen import executor
from components.text_example_gen.component import TextExampleGen
from components.text_example_gen.config import reader_config_to_json

DATASETS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
BEAM_ARGS = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
SST2_CONFIG = {"format": "tsv", "columns": {"text": ["sentence", "content"], "label": "label"}}
CHNSENTICORP_CONFIG = {"format": "csv", "header": False, "columns": {"text": 1, "label": 0}}


def _decode(serialized: bytes) -> dict[str, bytes]:
    example = tf.train.Example.FromString(serialized)
    return {name: feature.bytes_list.value[0] for name, feature in example.features.feature.items()}


def _run_transform(input_base, pattern: str, reader_config: dict, matcher) -> None:
    """Run TextToExample on `pattern` in-process and apply `matcher` to the decoded examples."""
    exec_properties = {
        "input_base": str(input_base),
        executor.READER_CONFIG_KEY: reader_config_to_json(reader_config),
    }
    with beam.Pipeline(options=PipelineOptions(BEAM_ARGS)) as pipeline:
        decoded = (
            pipeline
            | "Read" >> executor.TextToExample(exec_properties, pattern)  # pylint: disable=no-value-for-parameter
            | "Serialize" >> beam.Map(lambda example: example.SerializeToString())
            | "Decode" >> beam.Map(_decode)
        )
        assert_that(decoded, matcher)


def _run_executor(tmp_path, input_base, splits: dict[str, str], reader_config: dict) -> dict[str, list[dict]]:
    """Run the executor's Do() like a TFX runner would and read back every output split."""
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    exec_properties = {
        "input_base": str(input_base),
        "input_config": json.dumps({"splits": [{"name": n, "pattern": p} for n, p in splits.items()]}),
        "output_config": json.dumps({}),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        executor.READER_CONFIG_KEY: reader_config_to_json(reader_config),
    }
    context = BaseBeamExecutor.Context(beam_pipeline_args=BEAM_ARGS, tmp_dir=str(tmp_path / "tmp"))
    executor.Executor(context).Do({}, {"examples": [examples]}, exec_properties)
    result = {}
    for name in artifact_utils.decode_split_names(examples.split_names):
        files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], name), "*.gz"))
        result[name] = [_decode(record.numpy()) for record in tf.data.TFRecordDataset(files, "GZIP")]
    return result


SMALL_CSV = (
    b"\xef\xbb\xbfid,review,label,lang\r\n"
    b'1,"Great, really great",positive,en\r\n'
    b'2,"two\nlines",negative,en\r\n'
    b"3,\xe5\xbe\x88\xe5\xa5\xbd,positive,zh\r\n"
)
SMALL_CONFIG = {"format": "csv", "columns": {"text": "review", "label": "label", "slices": ["lang"]}}
SMALL_EXPECTED = [
    {"text": b"Great, really great", "label": b"positive", "lang": b"en"},
    {"text": b"two\nlines", "label": b"negative", "lang": b"en"},
    {"text": "很好".encode("utf-8"), "label": b"positive", "lang": b"zh"},
]


def test_transform_exact_example_values(tmp_path):
    (tmp_path / "small.csv").write_bytes(SMALL_CSV)
    _run_transform(tmp_path, "small.csv", SMALL_CONFIG, equal_to(SMALL_EXPECTED))


def test_transform_sentence_pairs(tmp_path):
    (tmp_path / "pairs.jsonl").write_text(
        '{"premise": "A man sleeps.", "hypothesis": "A person rests.", "label": 1}\n', encoding="utf-8")
    cfg = {"format": "jsonl", "columns": {"text": "premise", "text_pair": "hypothesis", "label": "label"}}
    expected = [{"text": b"A man sleeps.", "text_pair": b"A person rests.", "label": b"1"}]
    _run_transform(tmp_path, "*.jsonl", cfg, equal_to(expected))


def test_transform_bad_row_fails_with_location(tmp_path):
    (tmp_path / "bad.csv").write_bytes(b"review,label\nfine,1\ncaf\xe9,0\n")
    cfg = {"format": "csv", "columns": {"text": "review", "label": "label"}}
    with pytest.raises(Exception, match=r"bad\.csv:3: column 'text' contains byte 0xe9"):
        _run_transform(tmp_path, "bad.csv", cfg, equal_to([]))


def test_transform_budget_drops_bad_rows(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"review,label\nfine,1\n,0\n")
    (tmp_path / "b.csv").write_bytes(b"review,label\nok,0\nno label,\n")
    cfg = {"format": "csv", "columns": {"text": "review", "label": "label"}, "max_bad_rows": 2}
    expected = [{"text": b"fine", "label": b"1"}, {"text": b"ok", "label": b"0"}]
    _run_transform(tmp_path, "*.csv", cfg, equal_to(expected))


def test_transform_budget_counts_across_files(tmp_path):
    # Each file alone stays within max_bad_rows=1, but together they exceed it.
    (tmp_path / "a.csv").write_bytes(b"review,label\nfine,1\n,0\n")
    (tmp_path / "b.csv").write_bytes(b"review,label\nok,0\nno label,\n")
    cfg = {"format": "csv", "columns": {"text": "review", "label": "label"}, "max_bad_rows": 1}
    with pytest.raises(Exception, match=r"2 bad rows in .* exceed reader_config max_bad_rows=1"):
        _run_transform(tmp_path, "*.csv", cfg, equal_to([]))


def test_transform_no_matching_files(tmp_path):
    with pytest.raises(Exception, match="absent.csv"):
        _run_transform(tmp_path, "absent.csv", SMALL_CONFIG, equal_to([]))


def test_executor_writes_splits(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_bytes(SMALL_CSV)
    (data / "eval.csv").write_bytes(b"review,label,lang\nmeh,negative,fr\n")
    result = _run_executor(tmp_path, data, {"train": "train.csv", "eval": "eval.csv"}, SMALL_CONFIG)
    assert sorted(result) == ["eval", "train"]
    assert sorted(result["train"], key=lambda row: row["text"]) == sorted(SMALL_EXPECTED, key=lambda row: row["text"])
    assert result["eval"] == [{"text": b"meh", "label": b"negative", "lang": b"fr"}]


@pytest.mark.skipif(not (DATASETS / "sst2" / "train.tsv").exists(), reason="no SST-2 mirror")
def test_executor_real_sst2_mirror(tmp_path):
    result = _run_executor(tmp_path, DATASETS / "sst2", {"train": "train.tsv", "eval": "dev.tsv"}, SST2_CONFIG)
    assert len(result["train"]) == 67_349
    assert len(result["eval"]) == 872
    for split in result.values():
        assert {label for label in (row["label"] for row in split)} == {b"0", b"1"}
        assert all(row["text"].strip() and set(row) == {"text", "label"} for row in split)
    assert {"text": b"hide new secretions from the parental units", "label": b"0"} in result["train"]
    assert {"text": b"one long string of cliches .", "label": b"0"} in result["eval"]


CHNSENTICORP = DATASETS / "chnsenticorp" / "ChnSentiCorp_htl_all.csv"


@pytest.mark.skipif(not CHNSENTICORP.exists(), reason="no ChnSentiCorp mirror")
def test_transform_chnsenticorp_empty_review():
    # The one empty review (line 6375) fails the run by default ...
    with pytest.raises(Exception, match=r"ChnSentiCorp_htl_all\.csv:6375: empty text"):
        _run_transform(CHNSENTICORP.parent, CHNSENTICORP.name, CHNSENTICORP_CONFIG, equal_to([]))

    # ... and with a budget of one bad row it is dropped, keeping the other 7,765 of 7,766.
    def check(examples):
        labels = [example["label"] for example in examples]
        assert len(examples) == 7_765
        assert (labels.count(b"1"), labels.count(b"0")) == (5_322, 2_443)
        assert all(example["text"].strip() for example in examples)
        assert max(len(example["text"].decode("utf-8")) for example in examples) == 2_924

    _run_transform(CHNSENTICORP.parent, CHNSENTICORP.name, {**CHNSENTICORP_CONFIG, "max_bad_rows": 1}, check)


def test_component_exec_properties_are_json():
    component = TextExampleGen(
        input_base="/data",
        input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(name="all", pattern="*.csv")]),
        reader_config=SMALL_CONFIG,
    )
    assert isinstance(component, FileBasedExampleGen)
    properties = component.exec_properties
    assert json.loads(properties["reader_config"])["columns"]["slices"] == [{"name": "lang", "column": "lang"}]
    # A single input split is hashed 2:1 into train and eval, as in FileBasedExampleGen.
    splits = json.loads(properties["output_config"])["split_config"]["splits"]
    assert [(split["name"], split["hash_buckets"]) for split in splits] == [("train", 2), ("eval", 1)]
    with pytest.raises(ValueError, match="columns.label"):
        TextExampleGen(input_base="/data", input_config=example_gen_pb2.Input(),
                       reader_config={"format": "csv", "columns": {"text": "a"}})


def _one_component_pipeline(tmp_path, input_base) -> tfx.dsl.Pipeline:
    example_gen = TextExampleGen(
        input_base=str(input_base),
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="train", pattern="train.csv"),
            example_gen_pb2.Input.Split(name="eval", pattern="eval.csv"),
        ]),
        reader_config=SMALL_CONFIG,
    )
    return tfx.dsl.Pipeline(
        pipeline_name="text-example-gen-test",
        pipeline_root=str(tmp_path / "root"),
        components=[example_gen],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.sqlite")),
        beam_pipeline_args=BEAM_ARGS,
    )


@pytest.mark.parametrize("runner_class", [tfx.orchestration.LocalDagRunner, BeamDagRunner])
def test_dag_runner_runs_component(tmp_path, runner_class):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_bytes(SMALL_CSV)
    (data / "eval.csv").write_bytes(b"review,label,lang\nmeh,negative,fr\n")
    runner_class().run(_one_component_pipeline(tmp_path, data))
    written = sorted(str(path.relative_to(tmp_path / "root")).split(os.sep)[-2]
                     for path in (tmp_path / "root").rglob("*.gz"))
    assert written == ["Split-eval", "Split-train"]


def test_kubeflow_v2_compiles_reader_config(tmp_path):
    output = tmp_path / "pipeline.json"
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image="textxfer:test"),
        output_filename=str(output))
    runner.run(_one_component_pipeline(tmp_path, "gs://bucket/data"))
    spec = json.loads(output.read_text())["pipelineSpec"]
    executor_spec = spec["deploymentSpec"]["executors"]["TextExampleGen_executor"]["container"]
    # The file-based ExampleGen driver resolves spans before the executor runs.
    assert "file_based_example_gen" in " ".join(executor_spec["lifecycle"]["preCacheCheck"]["command"])
    parameters = spec["root"]["dag"]["tasks"]["TextExampleGen"]["inputs"]["parameters"]
    reader_config = json.loads(parameters["reader_config"]["runtimeValue"]["constantValue"]["stringValue"])
    assert reader_config["columns"]["text"] == "review"
    assert reader_config["max_bad_rows"] == 0
    assert executor_spec["args"][:2] == ["--executor_class_path", "components.text_example_gen.executor.Executor"]
