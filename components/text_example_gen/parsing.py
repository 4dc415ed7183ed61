"""Pure-Python parsing of CSV, TSV and JSONL files into text rows, with line numbers.

A whole file is parsed at once because quoted CSV fields may contain line breaks, so a
file cannot be split by line. Errors carry the file name and the 1-based line where the
offending record starts.
"""

import csv
import dataclasses
import io
import json
import re
from typing import Any, Iterator

from components.text_example_gen.config import LABEL_FEATURE, TEXT_FEATURE, TEXT_PAIR_FEATURE

# Undecodable bytes become lone surrogates U+DC80..U+DCFF under the "surrogateescape"
# error handler, so one bad row can be reported without giving up on the whole file.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


class RowError(ValueError):
    """A record that cannot be turned into an example, located by file and line."""

    def __init__(self, file: str, line: int, reason: str):
        super().__init__(f"{file}:{line}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason

    def __reduce__(self):
        # Beam pickles exceptions between workers; keep the three fields.
        return (RowError, (self.file, self.line, self.reason))


@dataclasses.dataclass(frozen=True)
class TextRow:
    """One parsed record: `features` maps output feature names to their string values."""

    file: str
    line: int
    features: dict[str, str]


def _decode(data: bytes, file: str, encoding: str) -> str:
    """Decode file bytes, keeping undecodable bytes as escapes, and strip a leading BOM."""
    try:
        text = data.decode(encoding, errors="surrogateescape")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise RowError(file, line, f"cannot decode bytes as {encoding} ({error.reason}); "
                       "set reader_config encoding to the file's encoding") from error
    return text[1:] if text.startswith("\ufeff") else text


def _check_decoded(value: str, column: str, encoding: str) -> None:
    match = _ESCAPED_BYTE.search(value)
    if match:
        byte = ord(match.group()) - 0xDC00
        raise ValueError(f"column {column!r} contains byte 0x{byte:02x} that is invalid in {encoding}; "
                         "set reader_config encoding to the file's encoding or fix the file")


def _resolve_column(spec: str | int | list[str], header: list[str] | None, file: str, key: str) -> int | str:
    """Map a column spec to a field index (delimited files) or keep the key name (JSONL)."""
    if isinstance(spec, int):
        return spec
    names = [spec] if isinstance(spec, str) else spec
    if header is None:
        raise AssertionError("names are resolved against a header only")
    for name in names:
        positions = [index for index, field in enumerate(header) if field == name]
        if len(positions) > 1:
            raise RowError(file, 1, f"duplicate column name {name!r} in header {header!r}, so "
                           f"columns.{key} is ambiguous; rename one of the columns")
        if positions:
            return positions[0]
    raise RowError(file, 1, f"header {header!r} has no column {' or '.join(map(repr, names))} "
                   f"for columns.{key}; fix the header or reader_config columns.{key}")


def _column_plan(cfg: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    """List (feature name, column spec, required non-empty) for every output feature."""
    columns = cfg["columns"]
    plan = [(TEXT_FEATURE, columns[TEXT_FEATURE], True)]
    if columns[TEXT_PAIR_FEATURE] is not None:
        plan.append((TEXT_PAIR_FEATURE, columns[TEXT_PAIR_FEATURE], True))
    plan.append((LABEL_FEATURE, columns[LABEL_FEATURE], True))
    plan.extend((item["name"], item["column"], False) for item in columns["slices"])
    return plan


def _check_value(feature: str, value: str, required: bool, encoding: str) -> None:
    _check_decoded(value, feature, encoding)
    if required and not value.strip():
        reason = "missing label" if feature == LABEL_FEATURE else f"empty {feature}"
        raise ValueError(reason)


def _iter_delimited(text: str, file: str, cfg: dict[str, Any]) -> Iterator[TextRow | RowError]:
    quotechar = cfg["quotechar"]
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=cfg["delimiter"],
        quotechar=quotechar,
        quoting=csv.QUOTE_MINIMAL if quotechar else csv.QUOTE_NONE,
        doublequote=True,
        strict=True,
    )
    plan = _column_plan(cfg)
    header: list[str] | None = None
    indices: list[int] | None = None
    expected_fields: int | None = None
    expected_from = ""
    while True:
        start_line = reader.line_num + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield RowError(file, start_line, f"malformed {cfg['format'].upper()} record ({error})")
            continue
        if not record:  # A blank line.
            continue

        if cfg["header"] and header is None:
            header = record
            for field in header:
                _check_decoded_header(field, file, start_line, cfg["encoding"])
            indices = [_resolve_column(spec, header, file, name) for name, spec, _ in plan]
            expected_fields, expected_from = len(header), f"the header on line {start_line}"
            continue
        if indices is None:
            indices = [spec for _, spec, _ in plan]
        if expected_fields is None:
            expected_fields, expected_from = len(record), f"the first record on line {start_line}"

        if len(record) != expected_fields:
            yield RowError(file, start_line, f"expected {expected_fields} fields as in {expected_from}, "
                           f"found {len(record)}")
            continue
        try:
            features = {}
            for (name, _, required), index in zip(plan, indices):
                if index >= len(record):
                    raise ValueError(f"columns.{name} is index {index}, but the record has "
                                     f"{len(record)} fields")
                _check_value(name, record[index], required, cfg["encoding"])
                features[name] = record[index]
        except ValueError as error:
            yield RowError(file, start_line, str(error))
            continue
        yield TextRow(file, start_line, features)


def _check_decoded_header(field: str, file: str, line: int, encoding: str) -> None:
    try:
        _check_decoded(field, "header", encoding)
    except ValueError as error:
        raise RowError(file, line, str(error)) from None


def _json_scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        # The label as written in the file: 1 -> "1", true -> "true".
        return json.dumps(value)
    raise ValueError(f"value {value!r:.80} is a JSON {type(value).__name__}, expected a string or number")


def _lookup_key(row: dict[str, Any], spec: str | list[str], feature: str) -> Any:
    names = [spec] if isinstance(spec, str) else spec
    for name in names:
        if name in row:
            return row[name]
    raise ValueError(f"key {' or '.join(map(repr, names))} for columns.{feature} is missing")


def _iter_jsonl(text: str, file: str, cfg: dict[str, Any]) -> Iterator[TextRow | RowError]:
    plan = _column_plan(cfg)
    # Split on "\n" only: JSON strings may contain U+2028 or other characters that
    # str.splitlines() would treat as line breaks.
    for line_number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            yield RowError(file, line_number, f"invalid JSON ({error.msg} at column {error.colno})")
            continue
        if not isinstance(row, dict):
            yield RowError(file, line_number, f"expected a JSON object, found {type(row).__name__}")
            continue
        try:
            features = {}
            for name, spec, required in plan:
                value = _lookup_key(row, spec, name)
                if value is None:
                    value = ""
                value = _json_scalar(value)
                _check_value(name, value, required, cfg["encoding"])
                features[name] = value
        except ValueError as error:
            yield RowError(file, line_number, str(error))
            continue
        yield TextRow(file, line_number, features)


def iter_rows(data: bytes, file: str, cfg: dict[str, Any]) -> Iterator[TextRow | RowError]:
    """Parse file bytes and yield a TextRow per good record and a RowError per bad one.

    `cfg` is a validated reader config. Problems that make the whole file unreadable (an
    undecodable byte the codec cannot escape, a header without a configured column, a
    duplicate header name) raise RowError instead of being yielded.
    """
    text = _decode(data, file, cfg["encoding"])
    if cfg["format"] == "jsonl":
        yield from _iter_jsonl(text, file, cfg)
    else:
        yield from _iter_delimited(text, file, cfg)


def parse_rows(data: bytes, file: str, cfg: dict[str, Any]) -> list[TextRow]:
    """Parse file bytes into rows, raising the first RowError."""
    rows = []
    for item in iter_rows(data, file, cfg):
        if isinstance(item, RowError):
            raise item
        rows.append(item)
    return rows
