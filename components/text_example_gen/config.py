"""Reader configuration of TextExampleGen: validation and defaults, without TensorFlow."""

import codecs
import json
from typing import Any

FORMATS = ("csv", "tsv", "jsonl")
DEFAULT_DELIMITERS = {"csv": ",", "tsv": "\t"}
# Feature names that the text columns take in the output tf.train.Example.
TEXT_FEATURE = "text"
TEXT_PAIR_FEATURE = "text_pair"
LABEL_FEATURE = "label"

_TOP_LEVEL_KEYS = {"format", "header", "delimiter", "quotechar", "encoding", "columns", "max_bad_rows"}
_COLUMN_KEYS = {TEXT_FEATURE, TEXT_PAIR_FEATURE, LABEL_FEATURE, "slices"}


def _validate_column(key: str, spec: Any, *, header: bool, file_format: str) -> str | int | list[str]:
    """Check one column spec: a header name, a list of alternative names, or a 0-based index."""
    if isinstance(spec, bool):
        raise ValueError(f"reader_config columns.{key}={spec!r} is invalid: give a header name, "
                         "a list of alternative header names or a 0-based column index")
    if isinstance(spec, int):
        if spec < 0:
            raise ValueError(f"reader_config columns.{key}={spec} is invalid: column indices start at 0")
        if file_format == "jsonl":
            raise ValueError(f"reader_config columns.{key}={spec} is invalid for format 'jsonl': "
                             "JSONL rows are objects, so give the key name")
        return spec
    if isinstance(spec, str):
        if not spec:
            raise ValueError(f"reader_config columns.{key} is an empty string: give a header name")
        names = [spec]
    elif isinstance(spec, (list, tuple)):
        names = list(spec)
        if not names or not all(isinstance(name, str) and name for name in names):
            raise ValueError(f"reader_config columns.{key}={spec!r} is invalid: a list of "
                             "alternative header names must be non-empty and hold non-empty strings")
        if len(set(names)) != len(names):
            raise ValueError(f"reader_config columns.{key}={spec!r} repeats a header name")
    else:
        raise ValueError(f"reader_config columns.{key}={spec!r} has type {type(spec).__name__}: give "
                         "a header name, a list of alternative header names or a 0-based column index")
    if not header and file_format != "jsonl":
        raise ValueError(f"reader_config columns.{key}={spec!r} names a column, but header is false: "
                         "give a 0-based column index, or set header to true")
    return spec if isinstance(spec, str) else names


def _validate_slices(slices: Any, *, header: bool, file_format: str) -> list[dict[str, Any]]:
    """Normalise slice columns to [{"name": feature name, "column": column spec}]."""
    if slices is None:
        return []
    if not isinstance(slices, (list, tuple)):
        raise ValueError(f"reader_config columns.slices={slices!r} is invalid: give a list")
    normalised = []
    for index, entry in enumerate(slices):
        key = f"slices[{index}]"
        if isinstance(entry, str):
            name, column = entry, entry
        elif isinstance(entry, dict) and set(entry) == {"name", "column"}:
            name, column = entry["name"], entry["column"]
        else:
            raise ValueError(f"reader_config columns.{key}={entry!r} is invalid: give a header name, "
                             'or {"name": FEATURE_NAME, "column": COLUMN}')
        if not isinstance(name, str) or not name:
            raise ValueError(f"reader_config columns.{key}.name={name!r} is invalid: give a non-empty string")
        if name in (TEXT_FEATURE, TEXT_PAIR_FEATURE, LABEL_FEATURE):
            raise ValueError(f"reader_config columns.{key}.name={name!r} clashes with a built-in feature; "
                             "choose another feature name")
        if name in {item["name"] for item in normalised}:
            raise ValueError(f"reader_config columns.{key}.name={name!r} is used twice")
        column = _validate_column(key, column, header=header, file_format=file_format)
        normalised.append({"name": name, "column": column})
    return normalised


def _validate_columns(columns: Any, *, header: bool, file_format: str) -> dict[str, Any]:
    if not isinstance(columns, dict):
        raise ValueError(f"reader_config columns={columns!r} is invalid: give a mapping with keys "
                         f"{sorted(_COLUMN_KEYS)}")
    unknown = set(columns) - _COLUMN_KEYS
    if unknown:
        raise ValueError(f"reader_config columns has unknown keys {sorted(unknown)}; "
                         f"allowed keys are {sorted(_COLUMN_KEYS)}")
    for required in (TEXT_FEATURE, LABEL_FEATURE):
        if columns.get(required) is None:
            raise ValueError(f"reader_config columns.{required} is missing")
    text_pair = columns.get(TEXT_PAIR_FEATURE)
    return {
        TEXT_FEATURE: _validate_column(TEXT_FEATURE, columns[TEXT_FEATURE], header=header, file_format=file_format),
        TEXT_PAIR_FEATURE: None if text_pair is None else _validate_column(
            TEXT_PAIR_FEATURE, text_pair, header=header, file_format=file_format),
        LABEL_FEATURE: _validate_column(LABEL_FEATURE, columns[LABEL_FEATURE], header=header, file_format=file_format),
        "slices": _validate_slices(columns.get("slices"), header=header, file_format=file_format),
    }


def validate_reader_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Validate a reader config and return a new dict with every default filled in.

    Keys: format ("csv", "tsv" or "jsonl"), header (bool, default true), delimiter (one
    character, default "," for csv and tab for tsv), quotechar (one character or None to turn
    quoting off, default '"'), encoding (a Python codec name, default "utf-8"), columns
    (text, label, optional text_pair and slices) and max_bad_rows (int >= 0, default 0).
    Raises ValueError that names the offending key.
    """
    if not isinstance(cfg, dict):
        raise ValueError(f"reader_config must be a dict, got {type(cfg).__name__}")
    unknown = set(cfg) - _TOP_LEVEL_KEYS
    if unknown:
        raise ValueError(f"reader_config has unknown keys {sorted(unknown)}; allowed keys are "
                         f"{sorted(_TOP_LEVEL_KEYS)}")

    file_format = cfg.get("format")
    if file_format not in FORMATS:
        raise ValueError(f"reader_config format={file_format!r} is invalid: use one of {list(FORMATS)}")

    header = cfg.get("header", True)
    if not isinstance(header, bool):
        raise ValueError(f"reader_config header={header!r} is invalid: give true or false")

    delimiter = cfg.get("delimiter")
    if file_format == "jsonl":
        if delimiter is not None:
            raise ValueError(f"reader_config delimiter={delimiter!r} is set for format 'jsonl'; remove it")
    else:
        delimiter = DEFAULT_DELIMITERS[file_format] if delimiter is None else delimiter
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\r\n":
            raise ValueError(f"reader_config delimiter={delimiter!r} is invalid: give one character "
                             "other than a line break")

    quotechar = cfg.get("quotechar", '"')
    if quotechar is not None and (not isinstance(quotechar, str) or len(quotechar) != 1
                                  or quotechar == delimiter or quotechar in "\r\n"):
        raise ValueError(f"reader_config quotechar={quotechar!r} is invalid: give one character that "
                         "differs from the delimiter, or null to turn quoting off")

    encoding = cfg.get("encoding", "utf-8")
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError) as error:
        raise ValueError(f"reader_config encoding={encoding!r} is not a known Python codec") from error

    max_bad_rows = cfg.get("max_bad_rows", 0)
    if isinstance(max_bad_rows, bool) or not isinstance(max_bad_rows, int) or max_bad_rows < 0:
        raise ValueError(f"reader_config max_bad_rows={max_bad_rows!r} is invalid: give an integer >= 0")

    if "columns" not in cfg:
        raise ValueError("reader_config columns is missing")
    columns = _validate_columns(cfg["columns"], header=header, file_format=file_format)

    return {
        "format": file_format,
        "header": header,
        "delimiter": delimiter,
        "quotechar": quotechar,
        "encoding": encoding,
        "columns": columns,
        "max_bad_rows": max_bad_rows,
    }


def reader_config_to_json(cfg: dict[str, Any]) -> str:
    """Validate a reader config and serialise it as the component's JSON execution property."""
    return json.dumps(validate_reader_config(cfg), sort_keys=True)


def reader_config_from_json(text: str) -> dict[str, Any]:
    """Parse and validate the JSON execution property written by `reader_config_to_json`."""
    try:
        cfg = json.loads(text)
    except (TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"reader_config is not valid JSON ({error}): {text!r:.200}") from error
    return validate_reader_config(cfg)
