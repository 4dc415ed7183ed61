"""Measure TextExampleGen's parse throughput on the SST-2 train file, against plain-Python baselines.

Runs, in this process and on the same file:

- `text_example_gen`: the executor's Beam transform `TextToExample` under the in-memory
  DirectRunner, ending in a count (no TFRecord writing);
- `csv_to_examples`: `csv.reader` plus building and serializing one tf.train.Example per
  row, in a plain loop (what the parse costs without Beam);
- `csv_reader`: `csv.reader` alone.

Each is run `--repeats` times; the median rows/s and its ratio to `csv_to_examples` are printed.

Usage:
    .venv/bin/python bench/example_gen_throughput.py [--file PATH] [--repeats 3]
"""

from pipeline.environment import configure_environment

configure_environment()

import argparse  # noqa: E402  (the environment must be set before TensorFlow loads)
import csv
import os
import statistics
import time

import apache_beam as beam
import tensorflow as tf
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from components.text_example_gen import executor
from components.text_example_gen.config import reader_config_to_json

DEFAULT_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "sst2", "train.tsv")
BEAM_ARGS = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
_EXAMPLES_COUNTER = "bench_examples"
_EXAMPLES = beam.metrics.Metrics.counter("bench", _EXAMPLES_COUNTER)
READER_CONFIG = {"format": "tsv", "columns": {"text": ["sentence", "content"], "label": "label"}}


def run_text_example_gen(path: str) -> int:
    """Run TextToExample on `path` and return the number of examples it produced."""
    exec_properties = {
        "input_base": os.path.dirname(path),
        executor.READER_CONFIG_KEY: reader_config_to_json(READER_CONFIG),
    }
    pipeline = beam.Pipeline(options=PipelineOptions(BEAM_ARGS))
    _ = (
        pipeline
        | "Read" >> executor.TextToExample(exec_properties, os.path.basename(path))  # pylint: disable=no-value-for-parameter
        | "Count" >> beam.combiners.Count.Globally()
        | "Report" >> beam.Map(lambda count: _EXAMPLES.inc(count))
    )
    result = pipeline.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_name(_EXAMPLES_COUNTER))["counters"]
    return int(sum(counter.committed for counter in counters))


def run_csv_to_examples(path: str) -> int:
    """Parse `path` with csv.reader and serialize one tf.train.Example per row."""
    rows = 0
    with open(path, encoding="utf-8", newline="") as file:
        reader = csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        label_index, text_index = header.index("label"), header.index("sentence")
        for record in reader:
            feature = {
                "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[record[text_index].encode("utf-8")])),
                "label": tf.train.Feature(bytes_list=tf.train.BytesList(value=[record[label_index].encode("utf-8")])),
            }
            tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
            rows += 1
    return rows


def run_csv_reader(path: str) -> int:
    """Parse `path` with csv.reader alone."""
    with open(path, encoding="utf-8", newline="") as file:
        return sum(1 for _ in csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE)) - 1


def measure(function, path: str, repeats: int) -> tuple:
    """Return (rows, [seconds per repeat]) of `function(path)`."""
    seconds, rows = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        rows = function(path)
        seconds.append(time.perf_counter() - started)
    return rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--file", default=DEFAULT_FILE, help="SST-2 style TSV file (label and sentence columns)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method; the median is reported")
    args = parser.parse_args()
    path = os.path.abspath(args.file)

    results = {}
    for name, function in (("text_example_gen", run_text_example_gen),
                           ("csv_to_examples", run_csv_to_examples),
                           ("csv_reader", run_csv_reader)):
        rows, seconds = measure(function, path, args.repeats)
        results[name] = (rows, seconds, rows / statistics.median(seconds))

    baseline = results["csv_to_examples"][2]
    print(f"file: {path}")
    print(f"{'method':<18} {'rows':>8} {'median s':>9} {'min s':>7} {'max s':>7} {'rows/s':>10} {'vs csv_to_examples':>19}")
    for name, (rows, seconds, rate) in results.items():
        print(f"{name:<18} {rows:>8} {statistics.median(seconds):>9.2f} {min(seconds):>7.2f} {max(seconds):>7.2f} "
              f"{rate:>10,.0f} {rate / baseline:>18.2f}x")


if __name__ == "__main__":
    main()
