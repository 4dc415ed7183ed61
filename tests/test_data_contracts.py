"""Data contracts: the curated schema, AnomalyGate, TextStatisticsGate and their config keys.

Statistics come from TFDV's in-memory generator on small tables, so every case runs in this
process in well under a second.
"""

import json
import os

import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from components import anomaly_gate, text_statistics
from components.anomaly_gate import DataValidationError, ValidatedStatistics
from components.backbone.tokenizer import build_tokenizer
from pipeline.config import ConfigError, config_from_dict
from test_pipeline_e2e import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_PATH = os.path.join(REPO, "schemas", "sst2", "schema.pbtxt")
CHNSENTICORP = os.path.join(REPO, "..", "shared", "datasets", "chnsenticorp", "ChnSentiCorp_htl_all.csv")
BALANCED = [("a fine film", "0"), ("dull", "1")] * 10


@pytest.fixture(scope="module")
def schema():
    return io_utils.SchemaReader().read(SCHEMA_PATH)


def _statistics(rows) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV statistics of (text, label) rows; None marks a missing value."""
    return tfdv.generate_statistics_from_dataframe(pd.DataFrame(rows, columns=["text", "label"]))


def _with_labels(positive_share: float, total: int = 20) -> list:
    positives = round(total * positive_share)
    return [("good", "1")] * positives + [("bad", "0")] * (total - positives)


def _problems(schema, rows, previous_rows=None, drift_max=0.1) -> list:
    statistics = _statistics(rows)
    anomalies = tfdv.validate_statistics(statistics, schema)
    problems = anomaly_gate.anomaly_problems("train", anomalies, schema, statistics)
    problems += anomaly_gate.empty_text_problems("train", statistics)
    if previous_rows is not None:
        problems += anomaly_gate.label_drift_problems(
            statistics, _statistics(previous_rows), schema, drift_max, previous_span=1)
    return problems


# (case id, rows, rows of the previous span or None, expected [(feature, text in the anomaly, count)]).
# Each non-empty expectation is a named anomaly that stops the run before Transform.
GATE_CASES = [
    ("valid span", BALANCED, None, []),
    ("valid span within drift bound", _with_labels(0.55), _with_labels(0.5), []),
    ("numeric label outside the set", BALANCED + [("odd", "2")], None,
     [("label", "ENUM_TYPE_UNEXPECTED_STRING_VALUES", 1)]),
    ("label as word where schema has numbers", BALANCED + [("odd", "positive")] * 3, None,
     [("label", "ENUM_TYPE_UNEXPECTED_STRING_VALUES", 3)]),
    ("label with stray whitespace", BALANCED + [("odd", " 1")], None,
     [("label", "ENUM_TYPE_UNEXPECTED_STRING_VALUES", 1)]),
    ("missing text", BALANCED + [(None, "1")] * 2, None, [("text", "FEATURE_TYPE_LOW_FRACTION_PRESENT", 2)]),
    ("missing label", BALANCED + [("no label", None)], None, [("label", "FEATURE_TYPE_LOW_FRACTION_PRESENT", 1)]),
    ("empty text", BALANCED + [("", "0")] * 2, None, [("text", "empty text", 2)]),
    ("whitespace text", BALANCED + [("  \t", "0")], None, [("text", "empty text", 1)]),
    ("label drift", _with_labels(0.9), _with_labels(0.5), [("label", "label distribution drift", 20)]),
    ("unseen label also drifts", _with_labels(0.5)[:10] + [("new", "2")] * 10, _with_labels(0.5),
     [("label", "ENUM_TYPE_UNEXPECTED_STRING_VALUES", 10), ("label", "label distribution drift", 20)]),
]


@pytest.mark.parametrize("rows,previous_rows,expected", [case[1:] for case in GATE_CASES],
                         ids=[case[0] for case in GATE_CASES])
def test_gate_problems(schema, rows, previous_rows, expected):
    problems = _problems(schema, rows, previous_rows)
    found = [(problem.feature, problem.count) for problem in problems]
    assert found == [(feature, count) for feature, _, count in expected], [str(p) for p in problems]
    for problem, (_, anomaly, _) in zip(problems, expected):
        assert anomaly in str(problem)
        assert problem.split == "train"


def test_drift_message_names_shares_and_bound(schema):
    (problem,) = _problems(schema, _with_labels(0.9), _with_labels(0.5), drift_max=0.25)
    message = str(problem)
    assert "L-infinity distance 0.400 to span 1" in message
    assert "validation.label_drift_max=0.25" in message
    assert "0: 0.500 -> 0.100" in message
    assert "1: 0.500 -> 0.900" in message


def test_drift_bound_is_inclusive_below(schema):
    assert _problems(schema, _with_labels(0.7), _with_labels(0.5), drift_max=0.25) == []
    assert len(_problems(schema, _with_labels(0.8), _with_labels(0.5), drift_max=0.25)) == 1


def test_format_problems_summary(schema):
    problems = _problems(schema, BALANCED + [("odd", "2"), ("", "1")])
    message = anomaly_gate.format_problems(problems, span=7)
    lines = message.splitlines()
    assert lines[0] == "data validation failed in span 7: 2 problem(s); nothing was trained or pushed"
    assert lines[1].startswith("  - split train: feature 'label': ")
    assert "(1 example)" in lines[1]
    assert lines[2].startswith("  - split train: feature 'text': empty text (1 example)")


def test_schema_file_contract(schema):
    features = {feature.name: feature for feature in schema.feature}
    assert set(features) == {"text", "label"}
    for feature in features.values():
        assert feature.presence.min_fraction == 1.0
        assert [dim.size for dim in feature.shape.dim] == [1]
    assert list(schema.string_domain[0].value) == ["0", "1"]
    assert features["label"].domain == schema.string_domain[0].name
    assert features["label"].drift_comparator.infinity_norm.threshold == pytest.approx(0.1)


def _write_split_artifact(artifact, uri: str, files: dict) -> None:
    artifact.uri = uri
    artifact.split_names = json.dumps(sorted(files))
    for split, (name, proto) in files.items():
        io_utils.write_bytes_file(os.path.join(uri, f"Split-{split}", name), proto.SerializeToString())


def _gate_inputs(tmp_path, schema, rows: list, span: int) -> dict:
    statistics_proto = _statistics(rows)
    statistics = standard_artifacts.ExampleStatistics()
    _write_split_artifact(statistics, str(tmp_path / f"stats{span}"),
                          {"train": (anomaly_gate.STATISTICS_FILE, statistics_proto)})
    statistics.span = span
    anomalies = standard_artifacts.ExampleAnomalies()
    _write_split_artifact(anomalies, str(tmp_path / f"anomalies{span}"),
                          {"train": (anomaly_gate.ANOMALIES_FILE, tfdv.validate_statistics(statistics_proto, schema))})
    schema_artifact = standard_artifacts.Schema()
    schema_artifact.uri = str(tmp_path / "schema")
    io_utils.copy_file(SCHEMA_PATH, os.path.join(schema_artifact.uri, "schema.pbtxt"), overwrite=True)
    return {"anomalies": [anomalies], "statistics": [statistics], "schema": [schema_artifact]}


def _run_gate(tmp_path, inputs: dict, span: int, labels=None) -> ValidatedStatistics:
    output = ValidatedStatistics()
    output.uri = str(tmp_path / f"validated{span}")
    properties = {"label_drift_max": 0.2, "labels": json.dumps(labels) if labels else None}
    anomaly_gate.Executor().Do(inputs, {"validated_statistics": [output]}, properties)
    return output


def test_gate_executor_publishes_then_rejects_drift(tmp_path, schema):
    first = _run_gate(tmp_path, _gate_inputs(tmp_path, schema, _with_labels(0.5), span=1), span=1)
    assert first.get_int_custom_property("span") == 1
    assert json.loads(first.get_string_custom_property("split_names")) == ["train"]
    copied = os.path.join(first.uri, "Split-train", anomaly_gate.STATISTICS_FILE)
    assert statistics_pb2.DatasetFeatureStatisticsList.FromString(io_utils.read_bytes_file(copied)).datasets
    assert json.loads(io_utils.read_string_file(os.path.join(first.uri, "report.json"))) == {"span": 1, "problems": []}

    inputs = _gate_inputs(tmp_path, schema, _with_labels(0.9) + [("odd", "2")], span=2)
    with pytest.raises(DataValidationError) as caught:
        _run_gate(tmp_path, {**inputs, "previous_statistics": [first]}, span=2)
    message = str(caught.value)
    assert message.startswith("data validation failed in span 2: 2 problem(s)")
    assert "ENUM_TYPE_UNEXPECTED_STRING_VALUES" in message
    assert "label distribution drift" in message
    assert "to span 1 is above validation.label_drift_max=0.2" in message
    assert not os.path.exists(tmp_path / "validated2")


def test_gate_executor_without_previous_span_skips_drift(tmp_path, schema):
    output = _run_gate(tmp_path, _gate_inputs(tmp_path, schema, _with_labels(0.9), span=3), span=3)
    assert output.get_int_custom_property("span") == 3


def test_unknown_labels_against_config():
    rows = BALANCED + [("odd", "2")] * 2 + [("odd", "neutral")]
    statistics = _statistics(rows)
    # A schema inferred from this very span accepts every label it contains.
    inferred = tfdv.infer_schema(statistics)
    assert tfdv.validate_statistics(statistics, inferred).anomaly_info == {}
    (problem,) = anomaly_gate.unknown_label_problems("eval", statistics, ["0", "1"])
    assert (problem.split, problem.feature, problem.count) == ("eval", "label", 3)
    assert "values '2': 2, 'neutral': 1 are not in ['0', '1']" in problem.detail
    assert anomaly_gate.unknown_label_problems("eval", statistics, ["0", "1", "2", "neutral"]) == []


def test_gate_executor_reports_unknown_label_once(tmp_path, schema):
    inputs = _gate_inputs(tmp_path, schema, BALANCED + [("odd", "2")], span=4)
    with pytest.raises(DataValidationError) as caught:
        _run_gate(tmp_path, inputs, span=4, labels=["0", "1"])
    message = str(caught.value)
    assert message.startswith("data validation failed in span 4: 1 problem(s)")
    assert "ENUM_TYPE_UNEXPECTED_STRING_VALUES" in message
    assert "label not in data.labels" not in message


# Text statistics on a hand-written vocabulary, so every count is known.
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "movie", "##s", "."]


@pytest.fixture(scope="module")
def small_tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(VOCABULARY) + "\n", encoding="utf-8")
    return build_tokenizer(str(path), True)


def test_measure_texts_counts(small_tokenizer):
    texts = ["Good movies.", "很好", "good good good good good good good"]
    stats = text_statistics.measure_texts(small_tokenizer, 1, texts, None, max_seq_length=8)
    # good movie ##s . | [UNK] [UNK] | 7 x good; each sequence adds [CLS] and [SEP].
    assert stats.examples == 3
    assert stats.word_pieces == 4 + 2 + 7
    assert stats.unknown_pieces == 2
    assert stats.unk_share == pytest.approx(2 / 13)
    assert stats.max_length == 9
    assert stats.truncated == 1
    assert stats.truncated_share == pytest.approx(1 / 3)
    assert stats.length_quantiles["p50"] == 6
    assert stats.scripts == pytest.approx({"Latin": 38 / 40, "CJK": 2 / 40})


def test_measure_texts_pairs_count_both_segments(small_tokenizer):
    stats = text_statistics.measure_texts(small_tokenizer, 1, ["good", "movie"], ["good .", "很"], max_seq_length=5)
    # [CLS] good [SEP] good . [SEP] and [CLS] movie [SEP] [UNK] [SEP].
    assert stats.word_pieces == 5
    assert stats.unknown_pieces == 1
    assert stats.max_length == 6
    assert stats.truncated == 1


def test_check_statistics_thresholds(small_tokenizer):
    stats = text_statistics.measure_texts(small_tokenizer, 1, ["good movie"] * 9 + ["很好"], None, max_seq_length=64)
    assert text_statistics.check_statistics(stats, backbone="b", max_unk_share=0.1, max_truncated_share=0.0) == []
    (problem,) = text_statistics.check_statistics(stats, backbone="b", max_unk_share=0.05, max_truncated_share=0.0)
    assert "10.0% of 20 word pieces are [UNK] (vocabulary coverage 90.0%) with backbone b" in problem
    assert "validation.max_unk_share=0.05" in problem


@pytest.mark.skipif(not os.path.exists(CHNSENTICORP), reason="no ChnSentiCorp mirror")
def test_chinese_reviews_on_english_vocabulary(minilm_backbone):
    import csv  # pylint: disable=import-outside-toplevel

    with open(CHNSENTICORP, encoding="utf-8", newline="") as file:
        reviews = [row[1] for row in csv.reader(file) if row[1].strip()]
    tokenizer = build_tokenizer(minilm_backbone.vocab_file, minilm_backbone.do_lower_case)
    with tf.io.gfile.GFile(minilm_backbone.vocab_file) as vocab:
        unknown_id = [line.rstrip("\n") for line in vocab].index("[UNK]")
    stats = text_statistics.measure_texts(tokenizer, unknown_id, reviews, None, max_seq_length=128)
    assert stats.examples == 7_765
    assert 0.6 < stats.unk_share < 0.7
    assert next(iter(stats.scripts)) == "CJK"
    problems = text_statistics.check_statistics(
        stats, backbone="backbones/minilm", max_unk_share=0.05, max_truncated_share=1.0)
    assert len(problems) == 1
    assert f"vocabulary coverage {1 - stats.unk_share:.1%}" in problems[0]
    assert "bert-base-chinese" in problems[0]


def _write_examples(path: str, texts: list) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for text in texts:
            feature = {
                "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode("utf-8")])),
                "label": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"1"])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


def test_text_statistics_executor(tmp_path, tiny_backbone):
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = json.dumps(["train", "eval"])
    _write_examples(str(tmp_path / "examples" / "Split-train" / "data.gz"), ["good", "很好很好"])
    _write_examples(str(tmp_path / "examples" / "Split-eval" / "data.gz"), ["ok"])
    output = text_statistics.TextStatistics()
    output.uri = str(tmp_path / "out")
    properties = {"backbone_handle": tiny_backbone.path, "max_seq_length": 16,
                  "max_unk_share": 0.5, "max_truncated_share": 0.0}
    executor = text_statistics.Executor()
    # "good" is g ##o ##o ##d in the tiny vocabulary; the four Chinese characters are [UNK].
    with pytest.raises(text_statistics.TextStatisticsError, match=r"50\.0% of 8 word pieces are \[UNK\]"):
        executor.Do({"examples": [examples]}, {"text_statistics": [output]}, {**properties, "max_unk_share": 0.4})
    executor.Do({"examples": [examples]}, {"text_statistics": [output]}, properties)
    report = json.loads(io_utils.read_string_file(os.path.join(output.uri, "text_statistics.json")))
    assert report["train"]["unknown_pieces"] == 4
    assert report["train"]["word_pieces"] == 8
    assert report["eval"]["examples"] == 1
    assert report["eval"]["max_length"] == 4


def _config(**validation):
    raw = tiny_config("/data", "/out", "/backbone").to_dict()
    raw["validation"] = validation
    return config_from_dict(raw, source="test.yaml")


def test_validation_config_defaults():
    raw = tiny_config("/data", "/out", "/backbone").to_dict()
    del raw["validation"]
    config = config_from_dict(raw, source="test.yaml")
    assert config.data.schema is None
    assert config.validation.label_drift_max == 0.1
    assert config.validation.max_unk_share == 0.05
    assert config.validation.max_truncated_share == 0.2
    assert _config(label_drift_max=None).validation.label_drift_max is None


@pytest.mark.parametrize("key,value", [
    ("label_drift_max", 0.0), ("label_drift_max", 1.5), ("max_unk_share", -0.1), ("max_truncated_share", 2),
])
def test_validation_config_rejects(key, value):
    with pytest.raises(ConfigError, match=f"test.yaml: validation.{key}: "):
        _config(**{key: value})


def test_schema_key_must_be_pbtxt():
    raw = tiny_config("/data", "/out", "/backbone").to_dict()
    raw["data"]["schema"] = "schemas/sst2/schema.json"
    with pytest.raises(ConfigError, match="data.schema: 'schemas/sst2/schema.json' must be a text-format"):
        config_from_dict(raw, source="test.yaml")


def test_sst2_config_imports_curated_schema():
    from pipeline.config import load_config  # pylint: disable=import-outside-toplevel
    from pipeline.pipeline import create_pipeline  # pylint: disable=import-outside-toplevel

    config = load_config(os.path.join(REPO, "configs", "sst2.yaml"))
    assert os.path.normpath(os.path.join(REPO, config.data.schema)) == SCHEMA_PATH
    pipeline = create_pipeline(config, data_root="/data")
    ids = [component.id for component in pipeline.components]
    assert "ImportSchemaGen" in ids
    assert "SchemaGen" not in ids
    assert ids.index("AnomalyGate") < ids.index("Transform") < ids.index("TextStatisticsGate") < ids.index("Trainer")
    by_id = {component.id: component for component in pipeline.components}
    assert "AnomalyGate" in {node.id for node in by_id["Transform"].upstream_nodes}
    assert "TextStatisticsGate" in {node.id for node in by_id["Trainer"].upstream_nodes}
