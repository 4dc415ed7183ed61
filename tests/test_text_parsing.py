"""Pure-Python tests of TextExampleGen's reader config and row parser (no TensorFlow, no Beam)."""

import json

import pytest

from components.text_example_gen import RowError, iter_rows, parse_rows, validate_reader_config
from components.text_example_gen.config import reader_config_from_json, reader_config_to_json

TSV_SST2 = {"format": "tsv", "columns": {"text": ["sentence", "content"], "label": "label"}}
CSV_BASIC = {"format": "csv", "columns": {"text": "sentence", "label": "label"}}
CSV_NO_HEADER = {"format": "csv", "header": False, "columns": {"text": 1, "label": 0}}
CSV_PAIR = {"format": "csv", "columns": {"text": "sentence1", "text_pair": "sentence2", "label": "label"}}
JSONL = {"format": "jsonl", "columns": {"text": ["text", "review"], "label": "label", "slices": ["lang"]}}

LONG_TEXT = "word " * 4000  # 20,000 characters.

# (case id, reader config, file bytes, expected [(line, features)]).
GOOD_CASES = [
    ("quoted comma and newline", CSV_BASIC,
     b'sentence,label\n"a, b",1\n"first line\nsecond line",0\nplain,1\n',
     [(2, {"text": "a, b", "label": "1"}),
      (3, {"text": "first line\nsecond line", "label": "0"}),
      (5, {"text": "plain", "label": "1"})]),
    ("doubled quote", CSV_BASIC, b'sentence,label\n"say ""hi""",1\n',
     [(2, {"text": 'say "hi"', "label": "1"})]),
    ("utf-8 bom", CSV_BASIC, b"\xef\xbb\xbfsentence,label\nfine,1\n",
     [(2, {"text": "fine", "label": "1"})]),
    ("crlf", CSV_BASIC, b'sentence,label\r\nx,1\r\n"two\r\nlines",0\r\ny,1\r\n',
     [(2, {"text": "x", "label": "1"}),
      (3, {"text": "two\r\nlines", "label": "0"}),
      (5, {"text": "y", "label": "1"})]),
    ("no header by index", CSV_NO_HEADER, b'1,good\n0,"bad, really"\n',
     [(1, {"text": "good", "label": "1"}), (2, {"text": "bad, really", "label": "0"})]),
    ("tsv alternative header names", TSV_SST2, b"label\tcontent\n0\tdull .\n",
     [(2, {"text": "dull .", "label": "0"})]),
    ("tsv columns in other order", TSV_SST2, b"sentence\tlabel\nfun .\t1\n",
     [(2, {"text": "fun .", "label": "1"})]),
    ("blank lines skipped", CSV_BASIC, b"sentence,label\n\nx,1\n\n",
     [(3, {"text": "x", "label": "1"})]),
    ("textual label kept as written", CSV_BASIC, b"sentence,label\nx,positive\n",
     [(2, {"text": "x", "label": "positive"})]),
    ("sentence pair", CSV_PAIR, b"idx,label,sentence1,sentence2\n7,1,A cat sat.,The cat sat.\n",
     [(2, {"text": "A cat sat.", "text_pair": "The cat sat.", "label": "1"})]),
    ("chinese", CSV_NO_HEADER, "1,\"房间很大，床有2M宽\"\n".encode("utf-8"),
     [(1, {"text": "房间很大，床有2M宽", "label": "1"})]),
    ("emoji", CSV_BASIC, "sentence,label\nlove it 😍👍🏽,1\n".encode("utf-8"),
     [(2, {"text": "love it 😍👍🏽", "label": "1"})]),
    ("20000 character text", CSV_BASIC, f"sentence,label\n{LONG_TEXT},1\n".encode("utf-8"),
     [(2, {"text": LONG_TEXT, "label": "1"})]),
    ("latin-1 encoding configured", {**CSV_BASIC, "encoding": "latin-1"}, b"sentence,label\ncaf\xe9,1\n",
     [(2, {"text": "café", "label": "1"})]),
    ("slices", {"format": "csv", "columns": {"text": "t", "label": "y", "slices": [
        "lang", {"name": "source", "column": ["src", "origin"]}]}},
     b"t,y,lang,origin\nhola,1,es,web\n",
     [(2, {"text": "hola", "label": "1", "lang": "es", "source": "web"})]),
    ("jsonl", JSONL,
     '{"text": "great", "label": 1, "lang": "en"}\n\n{"review": "很好\\u2028ok", "label": "pos", "lang": "zh"}\r\n'
     .encode("utf-8"),
     [(1, {"text": "great", "label": "1", "lang": "en"}),
      (3, {"text": "很好\u2028ok", "label": "pos", "lang": "zh"})]),
    ("quoting off", {**TSV_SST2, "quotechar": None}, b'sentence\tlabel\n"quoted" start\t1\n',
     [(2, {"text": '"quoted" start', "label": "1"})]),
]


@pytest.mark.parametrize("cfg,data,expected", [case[1:] for case in GOOD_CASES],
                         ids=[case[0] for case in GOOD_CASES])
def test_parse_rows_values(cfg, data, expected):
    rows = parse_rows(data, "in.csv", validate_reader_config(cfg))
    assert [(row.line, row.features) for row in rows] == expected
    assert all(row.file == "in.csv" for row in rows)


# (case id, reader config, file bytes, expected line, expected text in the reason).
BAD_ROW_CASES = [
    ("latin-1 byte in utf-8 file", CSV_BASIC, b"sentence,label\nok,1\ncaf\xe9,1\n", 3, "byte 0xe9"),
    ("empty text", CSV_BASIC, b'sentence,label\nok,1\n"",0\n', 3, "empty text"),
    ("whitespace text", CSV_BASIC, b"sentence,label\n   ,0\n", 2, "empty text"),
    ("missing label", CSV_BASIC, b"sentence,label\nok,\n", 2, "missing label"),
    ("too few fields", CSV_BASIC, b"sentence,label\nok,1\nlonely\n", 3, "expected 2 fields"),
    ("too many fields", CSV_BASIC, b"sentence,label\na,b,1\n", 2, "found 3"),
    ("no header column count from first row", CSV_NO_HEADER, b"1,a\n0,b,c\n", 2, "first record on line 1"),
    ("empty pair", CSV_PAIR, b"label,sentence1,sentence2\n1,a,\n", 2, "empty text_pair"),
    ("bad quote", CSV_BASIC, b'sentence,label\n"ok"x,1\n', 2, "malformed CSV"),
    ("unterminated quote", CSV_BASIC, b'sentence,label\nok,1\n"never closed,1\nx,0\n', 3, "malformed CSV"),
    ("index out of range", {"format": "csv", "header": False, "columns": {"text": 3, "label": 0}},
     b"1,a\n", 1, "index 3"),
    ("invalid json", JSONL, b'{"text": "a", "label": 1, "lang": "en"}\n{"text": \n', 2, "invalid JSON"),
    ("json not object", JSONL, b'["a", 1]\n', 1, "expected a JSON object"),
    ("json missing label", JSONL, b'{"text": "a", "lang": "en"}\n', 1, "'label' for columns.label is missing"),
    ("json null label", JSONL, b'{"text": "a", "label": null, "lang": "en"}\n', 1, "missing label"),
    ("json nested value", JSONL, b'{"text": {"a": 1}, "label": 1, "lang": "en"}\n', 1, "JSON dict"),
]


@pytest.mark.parametrize("cfg,data,line,reason", [case[1:] for case in BAD_ROW_CASES],
                         ids=[case[0] for case in BAD_ROW_CASES])
def test_parse_rows_bad_row(cfg, data, line, reason):
    with pytest.raises(RowError) as caught:
        parse_rows(data, "data/in.csv", validate_reader_config(cfg))
    assert caught.value.file == "data/in.csv"
    assert caught.value.line == line
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"data/in.csv:{line}: ")


def test_iter_rows_continues_after_bad_rows():
    data = b"sentence,label\na,1\n,0\nb,\nc,0\n"
    items = list(iter_rows(data, "f.csv", validate_reader_config(CSV_BASIC)))
    assert [type(item).__name__ for item in items] == ["TextRow", "RowError", "RowError", "TextRow"]
    assert [item.line for item in items] == [2, 3, 4, 5]
    assert items[3].features == {"text": "c", "label": "0"}


# (case id, reader config, file bytes, expected text in the message): whole-file errors.
FILE_ERROR_CASES = [
    ("duplicate header", CSV_BASIC, b"sentence,sentence,label\na,b,1\n", "duplicate column name 'sentence'"),
    ("header lacks column", TSV_SST2, b"label\ttext\n1\tx\n", "no column 'sentence' or 'content'"),
    ("undecodable header", CSV_BASIC, b"sent\xffence,label\nx,1\n", "byte 0xff"),
    ("codec without escapes", {**CSV_BASIC, "encoding": "utf-16"}, b"s\x00,\x00\n", "cannot decode"),
]


@pytest.mark.parametrize("cfg,data,message", [case[1:] for case in FILE_ERROR_CASES],
                         ids=[case[0] for case in FILE_ERROR_CASES])
def test_iter_rows_file_error(cfg, data, message):
    with pytest.raises(RowError, match="^f.csv:1: ") as caught:
        list(iter_rows(data, "f.csv", validate_reader_config(cfg)))
    assert message in caught.value.reason


def test_duplicate_unused_header_allowed():
    rows = parse_rows(b"x,x,sentence,label\n1,2,a,0\n", "f.csv", validate_reader_config(CSV_BASIC))
    assert rows[0].features == {"text": "a", "label": "0"}


def test_row_error_pickles():
    import pickle  # pylint: disable=import-outside-toplevel

    error = pickle.loads(pickle.dumps(RowError("a.csv", 7, "empty text")))
    assert (error.file, error.line, error.reason, str(error)) == ("a.csv", 7, "empty text", "a.csv:7: empty text")


def test_validate_reader_config_defaults():
    cfg = validate_reader_config(TSV_SST2)
    assert cfg == {
        "format": "tsv", "header": True, "delimiter": "\t", "quotechar": '"', "encoding": "utf-8",
        "columns": {"text": ["sentence", "content"], "text_pair": None, "label": "label", "slices": []},
        "max_bad_rows": 0,
    }
    assert validate_reader_config(CSV_BASIC)["delimiter"] == ","
    assert validate_reader_config({**CSV_BASIC, "delimiter": ";"})["delimiter"] == ";"


def test_reader_config_json_round_trip():
    text = reader_config_to_json(JSONL)
    assert json.loads(text)["columns"]["slices"] == [{"name": "lang", "column": "lang"}]
    assert reader_config_from_json(text) == validate_reader_config(JSONL)
    with pytest.raises(ValueError, match="not valid JSON"):
        reader_config_from_json("{format: csv")


# (case id, config change, key the error must name).
INVALID_CONFIGS = [
    ("unknown key", {"sep": ","}, "sep"),
    ("bad format", {"format": "xlsx"}, "format"),
    ("header not bool", {"header": "yes"}, "header"),
    ("long delimiter", {"delimiter": "::"}, "delimiter"),
    ("newline delimiter", {"delimiter": "\n"}, "delimiter"),
    ("quotechar equals delimiter", {"quotechar": ","}, "quotechar"),
    ("unknown encoding", {"encoding": "utf-9"}, "encoding"),
    ("negative budget", {"max_bad_rows": -1}, "max_bad_rows"),
    ("bool budget", {"max_bad_rows": True}, "max_bad_rows"),
    ("columns missing", {"columns": None}, "columns"),
    ("text missing", {"columns": {"label": "label"}}, "columns.text"),
    ("label missing", {"columns": {"text": "t"}}, "columns.label"),
    ("unknown column key", {"columns": {"text": "t", "label": "y", "id": "i"}}, "id"),
    ("negative index", {"columns": {"text": -1, "label": "y"}}, "columns.text"),
    ("bool column", {"columns": {"text": True, "label": "y"}}, "columns.text"),
    ("empty alternatives", {"columns": {"text": [], "label": "y"}}, "columns.text"),
    ("repeated alternative", {"columns": {"text": ["a", "a"], "label": "y"}}, "columns.text"),
    ("float column", {"columns": {"text": 1.5, "label": "y"}}, "columns.text"),
    ("name without header", {"header": False, "columns": {"text": "t", "label": 0}}, "columns.text"),
    ("slice clashes", {"columns": {"text": "t", "label": "y", "slices": ["label"]}}, "slices[0]"),
    ("slice twice", {"columns": {"text": "t", "label": "y", "slices": ["a", "a"]}}, "slices[1]"),
    ("slice bad entry", {"columns": {"text": "t", "label": "y", "slices": [{"name": "a"}]}}, "slices[0]"),
    ("slices not list", {"columns": {"text": "t", "label": "y", "slices": "lang"}}, "slices"),
]


@pytest.mark.parametrize("change,key", [case[1:] for case in INVALID_CONFIGS],
                         ids=[case[0] for case in INVALID_CONFIGS])
def test_validate_reader_config_names_key(change, key):
    with pytest.raises(ValueError, match=key.replace("[", r"\[").replace("]", r"\]")):
        validate_reader_config({**CSV_BASIC, **change})


def test_validate_reader_config_jsonl_rules():
    with pytest.raises(ValueError, match="delimiter"):
        validate_reader_config({**JSONL, "delimiter": ","})
    with pytest.raises(ValueError, match="columns.text"):
        validate_reader_config({**JSONL, "columns": {"text": 0, "label": "label"}})
    assert validate_reader_config({**JSONL, "header": False})["columns"]["text"] == ["text", "review"]
