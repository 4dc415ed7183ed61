"""Run `preprocessing_fn` through tf.Transform's Beam implementation in this process."""

import functools
import os
from typing import Dict, List, Optional, Tuple

import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from components import transform
from pipeline.config import PipelineConfig, config_from_dict


def make_config(handle: str, *, text_pair: bool = False, labels: Optional[list] = ("neg", "pos"),
                max_seq_length: int = 16, phases=None, **training) -> PipelineConfig:
    """Return a valid config for a backbone at `handle`, with small training settings."""
    columns = {"text": "sentence", "label": "label"}
    if text_pair:
        columns["text_pair"] = "sentence2"
    raw = {
        "name": "test",
        "data": {"dir": "/nonexistent", "train": "train.csv", "eval": "eval.csv",
                 "columns": columns, "labels": list(labels) if labels else None},
        "backbone": {"handle": handle, "max_seq_length": max_seq_length},
        "training": {"phases": phases or [{"train": "head", "steps": 2}], **training},
        "evaluation": {"accuracy_lower_bound": 0.5},
        "output": {"dir": "/nonexistent"},
    }
    return config_from_dict(raw)


def raw_feature_spec(text_pair: bool = False, fixed_shape: bool = False) -> Dict:
    """Raw bytes features: variable-length, as SchemaGen infers them without shapes, or
    of shape [1], as with `infer_feature_shape=True` or a curated schema."""
    names = ["text", "label"] + (["text_pair"] if text_pair else [])
    if fixed_shape:
        return {name: tf.io.FixedLenFeature([1], tf.string) for name in names}
    return {name: tf.io.VarLenFeature(tf.string) for name in names}


def analyze_and_transform(config: PipelineConfig, rows: List[Dict], work_dir: str,
                          text_pair: bool = False, read_back: bool = True,
                          fixed_shape: bool = False) -> Tuple[List[Dict], str]:
    """Analyze and transform `rows` (dicts of lists of bytes) with the in-memory runner.

    Returns the transformed rows (unless `read_back` is False) as dicts of NumPy arrays, in
    input order, and the
    directory of the written transform output. The transformed examples are written as
    GZIP TFRecords to `work_dir/transformed/part*`, as TFX Transform writes them.
    """
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(raw_feature_spec(text_pair, fixed_shape)))
    output_dir = os.path.join(work_dir, "transform_output")
    transformed_prefix = os.path.join(work_dir, "transformed", "part")
    preprocessing_fn = functools.partial(
        transform.preprocessing_fn, custom_config={"config": config.to_dict()})
    options = PipelineOptions(direct_running_mode="in_memory")
    with beam.Pipeline(runner="DirectRunner", options=options) as pipeline:
        with tft_beam.Context(temp_dir=os.path.join(work_dir, "tmp"), force_tf_compat_v1=False):
            raw = pipeline | "Rows" >> beam.Create(rows, reshuffle=False)
            (transformed, transformed_metadata), transform_fn = (
                (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn))
            coder = tft.coders.ExampleProtoCoder(transformed_metadata.schema)
            _ = (transformed
                 | "Encode" >> beam.Map(coder.encode)
                 | "Write" >> beam.io.WriteToTFRecord(transformed_prefix, file_name_suffix=".gz",
                                              num_shards=1))
            _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    # TFX's Transform component stores the raw schema beside the transform graph.
    metadata_io.write_metadata(
        metadata, os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    output = tft.TFTransformOutput(output_dir)
    if not read_back:
        return [], output_dir
    spec = output.transformed_feature_spec()
    records = tf.data.TFRecordDataset(tf.io.gfile.glob(transformed_prefix + "*"),
                                      compression_type="GZIP")
    parsed = [tf.io.parse_single_example(record, spec) for record in records]
    return [{name: value.numpy() for name, value in row.items()} for row in parsed], output_dir


def sentiment_rows(count: int) -> List[Dict]:
    """Return `count` rows of a learnable toy task: sentences with "good" are "pos"."""
    rows = []
    for index in range(count):
        positive = index % 2 == 0
        words = ["good" if positive else "bad", "movie"] + ["so"] * (index % 4)
        rows.append({"text": [" ".join(words).encode()],
                     "label": [b"pos" if positive else b"neg"]})
    return rows


def train_tiny_classifier(handle: str, work_dir: str, rows: List[Dict],
                          fixed_shape: bool = False, **config_args):
    """Transform `rows` and train and export a classifier on them.

    Returns (config, transform output dir, serving model dir, history).
    """
    from components import trainer  # pylint: disable=import-outside-toplevel

    config = make_config(handle, **config_args)
    _, transform_dir = analyze_and_transform(config, rows, work_dir,
                                             text_pair=config.data.columns.text_pair is not None,
                                             read_back=False, fixed_shape=fixed_shape)
    files = [os.path.join(work_dir, "transformed", "part*")]
    serving_dir = os.path.join(work_dir, "serving")
    history = trainer.train_and_export(config, transform_dir, files, files, serving_dir,
                                       os.path.join(work_dir, "run"))
    return config, transform_dir, serving_dir, history
