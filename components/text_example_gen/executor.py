"""Beam executor of TextExampleGen: CSV, TSV and JSONL files to tf.train.Example."""

import os
from typing import Any, Iterator

import apache_beam as beam
import tensorflow as tf
from absl import logging
from apache_beam.io import fileio
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.types import standard_component_specs

from components.text_example_gen.config import reader_config_from_json
from components.text_example_gen.parsing import RowError, TextRow, iter_rows

READER_CONFIG_KEY = "reader_config"
_BAD_ROW_TAG = "bad_rows"
# How many bad rows per file are logged one by one; all of them are counted.
_MAX_LOGGED_BAD_ROWS = 20


def row_to_example(row: TextRow) -> tf.train.Example:
    """Build a tf.train.Example with one UTF-8 bytes feature per configured column."""
    feature = {
        name: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))
        for name, value in row.features.items()
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


class _ParseFileFn(beam.DoFn):
    """Parse one matched file whole, emitting examples and, within the budget, bad rows.

    NOTE: a file is read into memory at once and parsed by one worker, so parallelism comes
    from the number of files. Shard inputs of several GB into many files.
    """

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self._cfg = cfg
        self._rows = beam.metrics.Metrics.counter("text_example_gen", "rows")
        self._bad_rows = beam.metrics.Metrics.counter("text_example_gen", "bad_rows")

    def process(self, readable_file: fileio.ReadableFile) -> Iterator[Any]:
        path = readable_file.metadata.path
        budget = self._cfg["max_bad_rows"]
        good = bad = 0
        for item in iter_rows(readable_file.read(), path, self._cfg):
            if isinstance(item, RowError):
                bad += 1
                # Fail at the first bad row when there is no budget, or once this file
                # alone exceeds it. _check_budget checks the total over all files.
                if bad > budget:
                    raise item
                self._bad_rows.inc()
                if bad <= _MAX_LOGGED_BAD_ROWS:
                    logging.warning("TextExampleGen dropped bad row %s", item)
                yield beam.pvalue.TaggedOutput(_BAD_ROW_TAG, str(item))
                continue
            good += 1
            self._rows.inc()
            yield row_to_example(item)
        logging.info("TextExampleGen read %s: %d rows, %d bad rows dropped", path, good, bad)


def _check_budget(bad_rows: list[str], max_bad_rows: int, pattern: str) -> int:
    if len(bad_rows) > max_bad_rows:
        shown = "; ".join(sorted(bad_rows)[:5])
        raise ValueError(f"{len(bad_rows)} bad rows in {pattern} exceed reader_config max_bad_rows="
                         f"{max_bad_rows}; first ones: {shown}. Fix the data or raise max_bad_rows")
    if bad_rows:
        logging.warning("TextExampleGen dropped %d bad rows in %s (max_bad_rows=%d)",
                        len(bad_rows), pattern, max_bad_rows)
    return len(bad_rows)


def _check_not_empty(example_count: int, pattern: str) -> int:
    if example_count == 0:
        raise ValueError(f"no examples in {pattern}: the matched files are empty, hold only a header, "
                         "or every row was dropped as bad. Check the file pattern and the data")
    return example_count


def _pass_through(example: tf.train.Example, unused_bad_row_count: int, unused_example_count: int) -> tf.train.Example:
    return example


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def TextToExample(  # pylint: disable=invalid-name
    pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str
) -> beam.pvalue.PCollection:
    """Read the files that match `split_pattern` under input_base into tf.train.Examples."""
    cfg = reader_config_from_json(exec_properties[READER_CONFIG_KEY])
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    pattern = os.path.join(input_base, split_pattern)
    logging.info("TextExampleGen reading %s as %s", pattern, cfg["format"])

    parsed = (
        pipeline
        | "MatchFiles" >> fileio.MatchFiles(pattern, empty_match_treatment=fileio.EmptyMatchTreatment.DISALLOW)
        | "ReadMatches" >> fileio.ReadMatches()
        | "ParseFiles" >> beam.ParDo(_ParseFileFn(cfg)).with_outputs(_BAD_ROW_TAG, main="examples")
    )
    # The examples wait on the pipeline-wide count of bad rows, so none are written when
    # the files together exceed the budget.
    bad_row_count = (
        parsed[_BAD_ROW_TAG]
        | "CollectBadRows" >> beam.combiners.ToList()
        | "CheckBadRowBudget" >> beam.Map(_check_budget, cfg["max_bad_rows"], pattern)
    )
    # An empty split fails here rather than as a shapeless error in a later component.
    example_count = (
        parsed["examples"]
        | "CountExamples" >> beam.combiners.Count.Globally()
        | "CheckNotEmpty" >> beam.Map(_check_not_empty, pattern)
    )
    return parsed["examples"] | "AfterBudgetCheck" >> beam.Map(
        _pass_through, beam.pvalue.AsSingleton(bad_row_count), beam.pvalue.AsSingleton(example_count))


class Executor(BaseExampleGenExecutor):
    """TFX ExampleGen executor for delimited text and JSONL files."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return TextToExample
