"""The data-check components of the DAG, built from the config's `validation` section.

`AnomalyGate` runs between ExampleValidator and Transform and `TextStatisticsGate` between
Transform and the Trainer; `create_pipeline` makes Transform and the Trainer wait for them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tfx import v1 as tfx

from components import anomaly_gate
from components.anomaly_gate import AnomalyGate, ValidatedStatistics
from components.text_statistics import COMPONENT_ID as TEXT_STATISTICS_ID
from components.text_statistics import TextStatisticsGate
from pipeline.config import PipelineConfig


@dataclasses.dataclass
class DataChecks:
    """The gates, and the resolvers that feed them (empty when none is used)."""

    anomaly_gate: Any
    text_statistics_gate: Any
    resolvers: list


def data_check_components(
    config: PipelineConfig,
    *,
    statistics,
    schema,
    anomalies,
    examples,
    previous_statistics_resolver: bool,
) -> DataChecks:
    """Build the gates for `config`'s thresholds on the given ExampleGen, StatisticsGen,
    schema and ExampleValidator channels.

    With `previous_statistics_resolver`, a Resolver hands AnomalyGate the newest
    `ValidatedStatistics` (the last span that passed) for the label drift check. It runs
    before this run's gate publishes anything, so it never returns the current span.
    """
    validation = config.validation
    resolvers = []
    previous = None
    if previous_statistics_resolver and validation.label_drift_max is not None:
        resolver = tfx.dsl.Resolver(
            strategy_class=anomaly_gate.LatestValidatedStatisticsStrategy,
            statistics=tfx.dsl.Channel(type=ValidatedStatistics),
        ).with_id(anomaly_gate.RESOLVER_ID)
        previous = resolver.outputs["statistics"]
        resolvers.append(resolver)
    gate = AnomalyGate(
        anomalies=anomalies,
        statistics=statistics,
        schema=schema,
        examples=examples,
        previous_statistics=previous,
        label_drift_max=validation.label_drift_max,
        labels=config.data.labels,
    ).with_id(anomaly_gate.COMPONENT_ID)
    text_gate = TextStatisticsGate(
        examples=examples,
        backbone_handle=config.backbone.handle,
        max_seq_length=config.backbone.max_seq_length,
        max_unk_share=validation.max_unk_share,
        max_truncated_share=validation.max_truncated_share,
    ).with_id(TEXT_STATISTICS_ID)
    return DataChecks(anomaly_gate=gate, text_statistics_gate=text_gate, resolvers=resolvers)
