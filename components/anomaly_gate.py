"""AnomalyGate: stop a run before Transform when a span's data breaks its contract.

TFX 1.16's ExampleValidator writes an anomalies artifact but never fails, and it does not
compare a span with the previous one. This component sits between ExampleValidator and
Transform (Transform runs only after it succeeds) and raises `DataValidationError` with one
line per problem, naming the split, the feature, the anomaly and the number of examples:

- every anomaly ExampleValidator found against the schema (a missing text, a label outside
  the schema's string domain, ...);
- label values outside the config's `data.labels`, when it is set and the schema has not
  reported them already (an inferred schema knows only the labels of the first span);
- empty text values, read from the statistics;
- label drift: the L-infinity distance between the train-split label distributions of this
  span and of the last span that passed this gate, above `label_drift_max`, checked by
  TFDV's `validate_statistics(..., previous_statistics=...)` with a `drift_comparator`.

A span that passes is published as a `ValidatedStatistics` artifact (a copy of its
statistics); the next run's resolver hands the newest one back as the drift baseline, so a
rejected span never becomes the baseline.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy
from tfx.types import artifact, artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import io_utils

from components import features

COMPONENT_ID = "AnomalyGate"
RESOLVER_ID = "last_validated_statistics_resolver"
ANOMALIES_KEY = "anomalies"
EXAMPLES_KEY = "examples"
STATISTICS_KEY = "statistics"
SCHEMA_KEY = "schema"
PREVIOUS_KEY = "previous_statistics"
VALIDATED_KEY = "validated_statistics"
LABEL_DRIFT_MAX_KEY = "label_drift_max"
LABELS_KEY = "labels"
REPORT_FILE = "report.json"
# Files that TFX 1.16 components write inside each `Split-<name>` folder.
ANOMALIES_FILE = "SchemaDiff.pb"
STATISTICS_FILE = "FeatureStats.pb"
DRIFT_SPLIT = "train"


class DataValidationError(RuntimeError):
    """A span whose data breaks the schema or drifts; the message lists every problem."""


class ValidatedStatistics(artifact.Artifact):
    """Statistics of a span that passed AnomalyGate, laid out like ExampleStatistics.

    The span and split names are custom properties (`span`, `split_names`), because the
    Kubeflow V2 compiler rejects custom artifact types that declare properties.
    """

    # Kubeflow V2 compiles custom artifact types only with a `namespace.Name` type name.
    TYPE_NAME = "textxfer.ValidatedStatistics"


class LatestValidatedStatisticsStrategy(LatestArtifactStrategy):
    """The newest ValidatedStatistics, or none before the first span passes.

    TFX's LatestArtifactStrategy fails its resolver node when there is no artifact yet,
    which would fail every first run. NOTE: the Kubeflow V2 compiler accepts only TFX's own
    two strategy classes, so a pipeline compiled for Vertex AI must leave this resolver out.
    """

    def resolve_artifacts(self, store, input_dict):
        return self._resolve(input_dict)


@dataclasses.dataclass
class Problem:
    """One reason to stop the run."""

    split: str
    feature: str
    anomaly: str
    count: Optional[int]
    detail: str

    def __str__(self) -> str:
        if self.count is None:
            count = "count unknown"
        else:
            count = f"{self.count} example" if self.count == 1 else f"{self.count} examples"
        return f"split {self.split}: feature {self.feature!r}: {self.anomaly} ({count}): {self.detail}"


def _feature_stats(
    statistics: statistics_pb2.DatasetFeatureStatisticsList, name: str
) -> Optional[statistics_pb2.FeatureNameStatistics]:
    if not statistics.datasets:
        return None
    for feature in statistics.datasets[0].features:
        if feature.path.step == [name] or feature.name == name:
            return feature
    return None


def _num_examples(statistics: statistics_pb2.DatasetFeatureStatisticsList) -> int:
    return int(statistics.datasets[0].num_examples) if statistics.datasets else 0


def value_counts(statistics: statistics_pb2.DatasetFeatureStatisticsList, name: str) -> dict[str, int]:
    """Return value -> count of string feature `name` from its rank histogram (top values as fallback).

    TFDV keeps the 1,000 most frequent values in the rank histogram by default, so this is
    exact for labels and for any value of a text feature frequent enough to be ranked.
    """
    feature = _feature_stats(statistics, name)
    if feature is None or not feature.HasField("string_stats"):
        return {}
    buckets = feature.string_stats.rank_histogram.buckets
    if buckets:
        return {bucket.label: int(bucket.sample_count) for bucket in buckets}
    return {value.value: int(value.frequency) for value in feature.string_stats.top_values}


def _missing_count(statistics: statistics_pb2.DatasetFeatureStatisticsList, name: str) -> Optional[int]:
    feature = _feature_stats(statistics, name)
    if feature is None:
        return _num_examples(statistics)
    common = feature.string_stats.common_stats if feature.HasField("string_stats") else None
    if common is None:
        return None
    # An example with an empty value list counts as present in num_non_missing.
    empty_lists = sum(
        int(bucket.sample_count) for bucket in common.num_values_histogram.buckets if bucket.high_value < 1
    )
    return int(common.num_missing) + empty_lists


def _anomaly_count(
    info: anomalies_pb2.AnomalyInfo,
    feature: str,
    schema: schema_pb2.Schema,
    statistics: Optional[statistics_pb2.DatasetFeatureStatisticsList],
) -> Optional[int]:
    """Count the examples behind one anomaly from the split's statistics, or return None."""
    if statistics is None:
        return None
    reasons = {anomalies_pb2.AnomalyInfo.Type.Name(reason.type) for reason in info.reason}
    if any("UNEXPECTED_STRING_VALUES" in reason for reason in reasons):
        allowed = _domain_values(schema, feature)
        return sum(count for value, count in value_counts(statistics, feature).items() if value not in allowed)
    if any(word in reason for reason in reasons for word in ("FRACTION_PRESENT", "NUMBER_PRESENT", "LOW_NUMBER_VALUES", "SCHEMA_MISSING_COLUMN")):
        return _missing_count(statistics, feature)
    return None


def _domain_values(schema: schema_pb2.Schema, name: str) -> set[str]:
    for feature in schema.feature:
        if feature.name != name:
            continue
        if feature.HasField("string_domain"):
            return set(feature.string_domain.value)
        for domain in schema.string_domain:
            if domain.name == feature.domain:
                return set(domain.value)
    return set()


def anomaly_problems(
    split: str,
    anomalies: anomalies_pb2.Anomalies,
    schema: schema_pb2.Schema,
    statistics: Optional[statistics_pb2.DatasetFeatureStatisticsList] = None,
) -> list[Problem]:
    """Turn one split's ExampleValidator anomalies into problems, counted from its statistics."""
    problems = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        names = ", ".join(anomalies_pb2.AnomalyInfo.Type.Name(reason.type) for reason in info.reason)
        detail = "; ".join(reason.description for reason in info.reason) or info.description
        problems.append(Problem(split, feature, f"{info.short_description} [{names}]",
                                _anomaly_count(info, feature, schema, statistics), detail))
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        problems.append(Problem(split, "*", info.short_description or "dataset anomaly", None, info.description))
    return problems


def unknown_label_problems(
    split: str, statistics: statistics_pb2.DatasetFeatureStatisticsList, labels: list[str]
) -> list[Problem]:
    """Report label values outside the configured label set `labels` (the config's data.labels)."""
    unknown = {value: count for value, count in value_counts(statistics, features.LABEL).items() if value not in labels}
    if not unknown:
        return []
    first_values = ", ".join(f"{value!r}: {count}" for value, count in sorted(unknown.items())[:10])
    return [Problem(split, features.LABEL, "label not in data.labels", sum(unknown.values()),
                    f"values {first_values} are not in {labels}; fix the data or add the labels to data.labels")]


def empty_text_problems(split: str, statistics: statistics_pb2.DatasetFeatureStatisticsList) -> list[Problem]:
    """Report empty or whitespace-only values of the text features in one split's statistics.

    NOTE: this sees only the values in TFDV's rank histogram (the 1,000 most frequent by
    default), so a rare empty text in a large split can be missed. TextExampleGen already
    rejects empty texts, so this check guards examples that come from other sources.
    """
    problems = []
    for name in (features.TEXT, features.TEXT_PAIR):
        empty = sum(count for value, count in value_counts(statistics, name).items() if not value.strip())
        if empty:
            problems.append(Problem(split, name, "empty text", empty,
                                    "examples whose text is empty or whitespace; fix or drop those rows"))
    return problems


def label_distribution(statistics: statistics_pb2.DatasetFeatureStatisticsList) -> dict[str, float]:
    """Return the share of each label value in `statistics`."""
    counts = value_counts(statistics, features.LABEL)
    total = sum(counts.values())
    return {label: count / total for label, count in sorted(counts.items())} if total else {}


def label_drift_problems(
    current: statistics_pb2.DatasetFeatureStatisticsList,
    previous: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    threshold: float,
    *,
    split: str = DRIFT_SPLIT,
    previous_span: Optional[int] = None,
) -> list[Problem]:
    """Compare the label distributions of two spans with TFDV's L-infinity drift comparator."""
    import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel

    schema = schema_pb2.Schema.FromString(schema.SerializeToString())
    label = next((feature for feature in schema.feature if feature.name == features.LABEL), None)
    if label is None:
        label = schema.feature.add(name=features.LABEL, type=schema_pb2.BYTES)
    label.drift_comparator.infinity_norm.threshold = threshold
    # Only drift is checked here; ExampleValidator already validated the span against the schema.
    anomalies = tfdv.validate_statistics(current, schema, previous_statistics=previous)
    info = anomalies.anomaly_info.get(features.LABEL)
    drift = [reason for reason in (info.reason if info else []) if "L_INFTY" in anomalies_pb2.AnomalyInfo.Type.Name(reason.type)]
    if not drift:
        return []
    before, after = label_distribution(previous), label_distribution(current)
    distance = max(abs(after.get(key, 0.0) - before.get(key, 0.0)) for key in set(before) | set(after))
    shares = ", ".join(f"{key}: {before.get(key, 0.0):.3f} -> {after.get(key, 0.0):.3f}" for key in sorted(set(before) | set(after)))
    baseline = "the last validated span" if previous_span is None else f"span {previous_span}"
    return [Problem(
        split, features.LABEL, "label distribution drift", _num_examples(current),
        f"L-infinity distance {distance:.3f} to {baseline} is above validation.label_drift_max={threshold} "
        f"(label shares {shares}); check the new data, or raise validation.label_drift_max if the shift is expected",
    )]


def format_problems(problems: list[Problem], span: Optional[int]) -> str:
    """Format the message of `DataValidationError`: a header line, then one line per problem."""
    where = "" if span is None else f" in span {span}"
    lines = [f"data validation failed{where}: {len(problems)} problem(s); nothing was trained or pushed"]
    lines += [f"  - {problem}" for problem in problems]
    return "\n".join(lines)


def span_of(artifact_: artifact.Artifact) -> Optional[int]:
    """Return the span of an artifact: its `span` custom property, else its `span` property.

    TFX 1.16's FileBasedDriver stores the span of ExampleGen's output as a custom property and
    leaves the `span` property at 0, which StatisticsGen then copies, so the custom property
    comes first.
    """
    custom = artifact_.mlmd_artifact.custom_properties
    if "span" in custom:
        return int(custom["span"].int_value)
    return artifact_.span if artifact_.has_property("span") else None


def _split_file(artifact_: artifact.Artifact, split: str, name: str) -> str:
    return os.path.join(artifact_.uri, f"Split-{split}", name)


def _load_statistics(artifact_: artifact.Artifact, split: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    return statistics_pb2.DatasetFeatureStatisticsList.FromString(
        io_utils.read_bytes_file(_split_file(artifact_, split, STATISTICS_FILE)))


class AnomalyGateSpec(ComponentSpec):
    """Anomalies, statistics and schema of this span, the last validated statistics, the drift bound."""

    PARAMETERS = {
        LABEL_DRIFT_MAX_KEY: ExecutionParameter(type=float, optional=True),
        # JSON list of the configured labels; unset when data.labels is.
        LABELS_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics),
        SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
        PREVIOUS_KEY: ChannelParameter(type=ValidatedStatistics, optional=True),
    }
    OUTPUTS = {VALIDATED_KEY: ChannelParameter(type=ValidatedStatistics)}


class Executor(base_executor.BaseExecutor):
    """Collect every problem of the span; raise DataValidationError, or publish its statistics."""

    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]) -> None:
        anomalies = artifact_utils.get_single_instance(input_dict[ANOMALIES_KEY])
        statistics = artifact_utils.get_single_instance(input_dict[STATISTICS_KEY])
        schema = io_utils.SchemaReader().read(
            io_utils.get_only_uri_in_dir(artifact_utils.get_single_uri(input_dict[SCHEMA_KEY])))
        examples = input_dict.get(EXAMPLES_KEY) or []
        span = span_of(examples[0]) if examples else span_of(statistics)

        labels = json.loads(exec_properties[LABELS_KEY]) if exec_properties.get(LABELS_KEY) else None
        problems = []
        splits = artifact_utils.decode_split_names(statistics.split_names)
        for split in splits:
            split_stats = _load_statistics(statistics, split)
            split_anomalies = anomalies_pb2.Anomalies.FromString(
                io_utils.read_bytes_file(_split_file(anomalies, split, ANOMALIES_FILE)))
            split_problems = anomaly_problems(split, split_anomalies, schema, split_stats)
            # With a schema whose label domain is data.labels, ExampleValidator already reported them.
            schema_reported = any(
                problem.feature == features.LABEL and "UNEXPECTED_STRING_VALUES" in problem.anomaly
                for problem in split_problems)
            if labels is not None and not schema_reported:
                split_problems += unknown_label_problems(split, split_stats, labels)
            problems += split_problems + empty_text_problems(split, split_stats)

        threshold = exec_properties.get(LABEL_DRIFT_MAX_KEY)
        previous = input_dict.get(PREVIOUS_KEY) or []
        if threshold is None:
            logging.info("AnomalyGate: label drift check is off (validation.label_drift_max is null)")
        elif not previous:
            logging.info("AnomalyGate: no validated span before span %s; label drift is not checked", span)
        elif DRIFT_SPLIT in splits:
            previous = previous[0]
            previous_span = span_of(previous)
            problems += label_drift_problems(
                _load_statistics(statistics, DRIFT_SPLIT), _load_statistics(previous, DRIFT_SPLIT), schema,
                threshold, previous_span=previous_span)
            logging.info("AnomalyGate: label drift of span %s checked against span %s", span, previous_span)

        report = {"span": span, "problems": [dataclasses.asdict(problem) for problem in problems]}
        if problems:
            message = format_problems(problems, span)
            logging.error("%s", message)
            raise DataValidationError(message)

        output = artifact_utils.get_single_instance(output_dict[VALIDATED_KEY])
        io_utils.copy_dir(statistics.uri, output.uri)
        io_utils.write_string_file(os.path.join(output.uri, REPORT_FILE), json.dumps(report, indent=2))
        output.set_string_custom_property("split_names", statistics.split_names)
        if span is not None:
            output.set_int_custom_property("span", span)
        logging.info("AnomalyGate: span %s passed (splits %s)", span, ", ".join(splits))


class AnomalyGate(base_component.BaseComponent):
    """Fail the run on ExampleValidator anomalies, empty texts or label drift; see the module doc.

    Example:
        gate = AnomalyGate(anomalies=example_validator.outputs["anomalies"],
                           statistics=statistics_gen.outputs["statistics"],
                           schema=schema_gen.outputs["schema"],
                           examples=example_gen.outputs["examples"], label_drift_max=0.1)
        transform.add_upstream_node(gate)
    """

    SPEC_CLASS = AnomalyGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        anomalies: types.BaseChannel,
        statistics: types.BaseChannel,
        schema: types.BaseChannel,
        examples: Optional[types.BaseChannel] = None,
        previous_statistics: Optional[types.BaseChannel] = None,
        label_drift_max: Optional[float] = None,
        labels: Optional[list[str]] = None,
    ):
        super().__init__(
            spec=AnomalyGateSpec(
                anomalies=anomalies,
                statistics=statistics,
                schema=schema,
                examples=examples,
                previous_statistics=previous_statistics,
                label_drift_max=label_drift_max,
                labels=json.dumps(labels) if labels is not None else None,
                validated_statistics=types.Channel(type=ValidatedStatistics),
            )
        )
