"""TextExampleGen: CSV, TSV and JSONL files to tf.train.Example.

Import `component.TextExampleGen` for the TFX component; this package's top level loads
only the TensorFlow-free reader config and parser.
"""

from components.text_example_gen.config import validate_reader_config
from components.text_example_gen.parsing import RowError, TextRow, iter_rows, parse_rows

__all__ = ["RowError", "TextRow", "iter_rows", "parse_rows", "validate_reader_config"]
