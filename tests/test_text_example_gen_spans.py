"""TextExampleGen with `{SPAN}` file patterns under a TFX runner, and empty inputs."""

import json
import os

import pytest
import tensorflow as tf
from apache_beam.testing.util import equal_to
from ml_metadata.metadata_store import metadata_store
from tfx import v1 as tfx
from tfx.proto import example_gen_pb2

from components.text_example_gen.component import TextExampleGen
from test_text_example_gen import BEAM_ARGS, _run_transform

CONFIG = {"format": "csv", "columns": {"text": "review", "label": "label"}}


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _span_pipeline(tmp_path) -> tfx.dsl.Pipeline:
    example_gen = TextExampleGen(
        input_base=str(tmp_path / "data"),
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="train", pattern="span-{SPAN}/train.csv"),
            example_gen_pb2.Input.Split(name="eval", pattern="span-{SPAN}/eval.csv"),
        ]),
        reader_config=CONFIG,
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    return tfx.dsl.Pipeline(
        pipeline_name="text-example-gen-spans",
        pipeline_root=str(tmp_path / "root"),
        components=[example_gen, statistics_gen],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.sqlite")),
        beam_pipeline_args=BEAM_ARGS,
    )


def _latest(store, type_name: str):
    return max(store.get_artifacts_by_type(type_name), key=lambda artifact: artifact.id)


def _texts(examples_uri: str, split: str) -> list:
    files = tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*.gz"))
    return sorted(
        tf.train.Example.FromString(record.numpy()).features.feature["text"].bytes_list.value[0].decode()
        for record in tf.data.TFRecordDataset(files, "GZIP")
    )


def test_latest_span_is_read_and_recorded(tmp_path):
    data = tmp_path / "data"
    _write(data / "span-1" / "train.csv", "review,label\nold,0\n")
    _write(data / "span-1" / "eval.csv", "review,label\nold eval,1\n")
    _write(data / "span-2" / "train.csv", "review,label\nnew a,1\nnew b,0\n")
    _write(data / "span-2" / "eval.csv", "review,label\nnew eval,0\n")
    pipeline = _span_pipeline(tmp_path)
    tfx.orchestration.LocalDagRunner().run(pipeline)

    store = metadata_store.MetadataStore(pipeline.metadata_connection_config)
    examples = _latest(store, "Examples")
    # TFX 1.16's FileBasedDriver records the span as a custom property; the `span` property
    # stays 0, and StatisticsGen copies that 0 to its output.
    assert examples.custom_properties["span"].int_value == 2
    assert json.loads(examples.properties["split_names"].string_value) == ["train", "eval"]
    assert _texts(examples.uri, "train") == ["new a", "new b"]
    assert _texts(examples.uri, "eval") == ["new eval"]

    # A newer span whose train file holds only a header stops the run in ExampleGen.
    _write(data / "span-3" / "train.csv", "review,label\n")
    _write(data / "span-3" / "eval.csv", "review,label\nlater,1\n")
    with pytest.raises(Exception, match=r"no examples in .*span-3/train\.csv"):
        tfx.orchestration.LocalDagRunner().run(_span_pipeline(tmp_path))
    assert _latest(store, "Examples").id == examples.id


# (case id, file bytes): inputs that parse to zero examples.
EMPTY_INPUTS = [
    ("empty file", b""),
    ("header only", b"review,label\n"),
    ("byte-order mark and blank lines", b"\xef\xbb\xbfreview,label\r\n\r\n\r\n"),
]


@pytest.mark.parametrize("data", [case[1] for case in EMPTY_INPUTS], ids=[case[0] for case in EMPTY_INPUTS])
def test_empty_input_fails(tmp_path, data):
    (tmp_path / "in.csv").write_bytes(data)
    with pytest.raises(Exception, match=r"no examples in .*in\.csv: the matched files are empty"):
        _run_transform(tmp_path, "in.csv", CONFIG, equal_to([]))


def test_every_row_dropped_fails(tmp_path):
    (tmp_path / "in.csv").write_bytes(b"review,label\n,1\n")
    with pytest.raises(Exception, match=r"no examples in .*every row was dropped"):
        _run_transform(tmp_path, "in.csv", {**CONFIG, "max_bad_rows": 1}, equal_to([]))


def test_empty_file_beside_data_is_fine(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"")
    (tmp_path / "b.csv").write_bytes(b"review,label\nkept,1\n")
    _run_transform(tmp_path, "*.csv", CONFIG, equal_to([{"text": b"kept", "label": b"1"}]))


def test_empty_texts_over_budget_fail(tmp_path):
    # Within the budget empty texts are dropped; the first one over it stops the run, named by
    # file and line, before any example is written.
    (tmp_path / "in.csv").write_bytes(b'review,label\nfine,1\n"",0\n  ,1\n"",0\n')
    with pytest.raises(Exception, match=r"in\.csv:5: empty text"):
        _run_transform(tmp_path, "in.csv", {**CONFIG, "max_bad_rows": 2}, equal_to([]))
    _run_transform(tmp_path, "in.csv", {**CONFIG, "max_bad_rows": 3}, equal_to([{"text": b"fine", "label": b"1"}]))
