"""TextStatisticsGate: check that the backbone's vocabulary and sequence length fit the text.

Runs after Transform and before the Trainer (the Trainer waits for it). It tokenizes the raw
examples with the backbone's own WordPiece vocabulary (the tokenizer of
`components.backbone.tokenizer`) and measures per split:

- the share of word pieces that are [UNK] (1 - vocabulary coverage);
- the share of examples whose untruncated length, with [CLS] and [SEP], exceeds
  `backbone.max_seq_length`, so Transform cuts them;
- the distribution of untruncated lengths (quantiles and maximum).

The train split must stay within `validation.max_unk_share` and
`validation.max_truncated_share`, else `TextStatisticsError` stops the run with the measured
coverage and advice (for example a backbone whose vocabulary covers the text's script).
The measurements are written to `text_statistics.json` in the output artifact.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import unicodedata
from typing import Any, Iterable, Optional

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact, artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import io_utils

from components import features

COMPONENT_ID = "TextStatisticsGate"
EXAMPLES_KEY = "examples"
STATISTICS_KEY = "text_statistics"
BACKBONE_KEY = "backbone_handle"
MAX_SEQ_LENGTH_KEY = "max_seq_length"
MAX_UNK_SHARE_KEY = "max_unk_share"
MAX_TRUNCATED_SHARE_KEY = "max_truncated_share"
REPORT_FILE = "text_statistics.json"
CHECKED_SPLIT = "train"
QUANTILES = (0.5, 0.9, 0.95, 0.99)
_BATCH_SIZE = 1024
# Scripts named by the first word of a character's Unicode name, e.g. "CJK UNIFIED IDEOGRAPH-5F88".
_SCRIPT_ALIASES = {"HIRAGANA": "Japanese", "KATAKANA": "Japanese", "HANGUL": "Korean", "CJK": "CJK"}
_SCRIPT_ADVICE = {
    "CJK": "a Chinese or multilingual BERT (for example bert-base-chinese or bert-base-multilingual-cased)",
    "Japanese": "a Japanese or multilingual BERT",
    "Korean": "a Korean or multilingual BERT",
}


class TextStatisticsError(RuntimeError):
    """Text that the backbone's vocabulary or sequence length does not fit."""


class TextStatistics(artifact.Artifact):
    """Token statistics of each split of raw examples, as `text_statistics.json`."""

    # Kubeflow V2 compiles custom artifact types only with a `namespace.Name` type name and
    # no declared properties.
    TYPE_NAME = "textxfer.TextStatistics"


@dataclasses.dataclass
class SplitTextStatistics:
    """Token counts of one split. Lengths include [CLS] and one [SEP] per segment."""

    examples: int
    word_pieces: int
    unknown_pieces: int
    truncated: int
    max_seq_length: int
    length_quantiles: dict
    max_length: int
    scripts: dict

    @property
    def unk_share(self) -> float:
        return self.unknown_pieces / self.word_pieces if self.word_pieces else 0.0

    @property
    def truncated_share(self) -> float:
        return self.truncated / self.examples if self.examples else 0.0

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.update(unk_share=self.unk_share, truncated_share=self.truncated_share)
        return data


def _script(character: str) -> Optional[str]:
    if not character.isalpha():
        return None
    name = unicodedata.name(character, "")
    first = name.split(" ", 1)[0]
    return _SCRIPT_ALIASES.get(first, first.title()) if first else None


def count_scripts(texts: Iterable[str]) -> dict:
    """Return the share of letters per script (Latin, CJK, Cyrillic, ...) in `texts`."""
    counts = collections.Counter(script for text in texts for script in map(_script, text) if script)
    total = sum(counts.values())
    return {script: count / total for script, count in counts.most_common()} if total else {}


def measure_texts(
    tokenizer, unknown_id: int, texts: list, text_pairs: Optional[list], max_seq_length: int
) -> SplitTextStatistics:
    """Tokenize `texts` (and `text_pairs`) and count word pieces, [UNK] pieces and lengths."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    pieces_total = unknown_total = 0
    lengths = []
    segments = [texts] if text_pairs is None else [texts, text_pairs]
    for start in range(0, len(texts), _BATCH_SIZE):
        batch_lengths = np.full(len(texts[start:start + _BATCH_SIZE]), 1 + len(segments))
        for segment in segments:
            ids = tokenizer.tokenize(segment[start:start + _BATCH_SIZE]).merge_dims(1, 2)
            flat = ids.flat_values.numpy()
            pieces_total += flat.size
            unknown_total += int((flat == unknown_id).sum())
            batch_lengths += ids.row_lengths().numpy()
        lengths.append(batch_lengths)
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    quantiles = {f"p{round(q * 100)}": float(np.quantile(lengths, q)) for q in QUANTILES} if lengths.size else {}
    return SplitTextStatistics(
        examples=int(lengths.size),
        word_pieces=int(pieces_total),
        unknown_pieces=int(unknown_total),
        truncated=int((lengths > max_seq_length).sum()),
        max_seq_length=max_seq_length,
        length_quantiles=quantiles,
        max_length=int(lengths.max()) if lengths.size else 0,
        scripts=count_scripts(texts[:10_000]),
    )


def check_statistics(
    statistics: SplitTextStatistics, *, backbone: str, max_unk_share: float, max_truncated_share: float,
    split: str = CHECKED_SPLIT,
) -> list[str]:
    """Return one message per threshold that `statistics` exceeds (empty when all hold)."""
    problems = []
    if statistics.unk_share > max_unk_share:
        dominant = next(iter(statistics.scripts), None)
        scripts = ", ".join(f"{script} {share:.0%}" for script, share in list(statistics.scripts.items())[:3])
        advice = _SCRIPT_ADVICE.get(dominant, f"a backbone pretrained on {dominant or 'this'} text")
        problems.append(
            f"split {split}: {statistics.unk_share:.1%} of {statistics.word_pieces} word pieces are [UNK] "
            f"(vocabulary coverage {1 - statistics.unk_share:.1%}) with backbone {backbone}, above "
            f"validation.max_unk_share={max_unk_share}. Letters by script: {scripts or 'none'}. The backbone's "
            f"vocabulary does not cover this text: use {advice}, or raise validation.max_unk_share"
        )
    if statistics.truncated_share > max_truncated_share:
        quantiles = ", ".join(f"{name} {value:.0f}" for name, value in statistics.length_quantiles.items())
        problems.append(
            f"split {split}: {statistics.truncated} of {statistics.examples} examples "
            f"({statistics.truncated_share:.1%}) are longer than backbone.max_seq_length="
            f"{statistics.max_seq_length} tokens and get truncated, above validation.max_truncated_share="
            f"{max_truncated_share}. Lengths: {quantiles}, max {statistics.max_length}. Raise "
            "backbone.max_seq_length (at most the backbone's position limit) or validation.max_truncated_share"
        )
    return problems


def _read_split(examples: artifact.Artifact, split: str) -> tuple[list, Optional[list]]:
    # NOTE: the split is read into memory in this process (about 1 s for SST-2's 67k rows);
    # splits of many millions of rows would need a Beam pipeline here.
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    pattern = os.path.join(artifact_utils.get_split_uri([examples], split), "*")
    texts, pairs = [], []
    for record in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        texts.append(feature[features.TEXT].bytes_list.value[0].decode("utf-8") if features.TEXT in feature else "")
        if features.TEXT_PAIR in feature:
            pairs.append(feature[features.TEXT_PAIR].bytes_list.value[0].decode("utf-8"))
    return texts, (pairs if pairs else None)


class TextStatisticsGateSpec(ComponentSpec):
    """Raw examples, the backbone and thresholds; token statistics as output."""

    PARAMETERS = {
        BACKBONE_KEY: ExecutionParameter(type=str),
        MAX_SEQ_LENGTH_KEY: ExecutionParameter(type=int),
        MAX_UNK_SHARE_KEY: ExecutionParameter(type=float),
        MAX_TRUNCATED_SHARE_KEY: ExecutionParameter(type=float),
    }
    INPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {STATISTICS_KEY: ChannelParameter(type=TextStatistics)}


class Executor(base_executor.BaseExecutor):
    """Measure every split, write the report, and raise TextStatisticsError on the train split."""

    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]) -> None:
        from components.backbone.loading import resolve_backbone  # pylint: disable=import-outside-toplevel
        from components.backbone.tokenizer import UNKNOWN_TOKEN, tokenizer_for_backbone  # pylint: disable=import-outside-toplevel

        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        backbone = exec_properties[BACKBONE_KEY]
        max_seq_length = exec_properties[MAX_SEQ_LENGTH_KEY]
        info = resolve_backbone(backbone)
        tokenizer = tokenizer_for_backbone(info)
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        with tf.io.gfile.GFile(info.vocab_file) as vocab:
            unknown_id = [line.rstrip("\n") for line in vocab].index(UNKNOWN_TOKEN)

        report = {}
        splits = artifact_utils.decode_split_names(examples.split_names)
        for split in splits:
            texts, pairs = _read_split(examples, split)
            report[split] = measure_texts(tokenizer, unknown_id, texts, pairs, max_seq_length)
            stats = report[split]
            logging.info(
                "TextStatisticsGate: split %s: %d examples, [UNK] share %.4f, truncated share %.4f, "
                "length quantiles %s, max %d", split, stats.examples, stats.unk_share, stats.truncated_share,
                stats.length_quantiles, stats.max_length)

        output = artifact_utils.get_single_instance(output_dict[STATISTICS_KEY])
        io_utils.write_string_file(
            os.path.join(output.uri, REPORT_FILE),
            json.dumps({split: stats.to_dict() for split, stats in report.items()}, indent=2, sort_keys=True))

        if CHECKED_SPLIT not in report:
            logging.warning("TextStatisticsGate: no %s split in %s; thresholds not checked", CHECKED_SPLIT, splits)
            return
        problems = check_statistics(
            report[CHECKED_SPLIT], backbone=backbone, max_unk_share=exec_properties[MAX_UNK_SHARE_KEY],
            max_truncated_share=exec_properties[MAX_TRUNCATED_SHARE_KEY])
        if problems:
            message = "text statistics check failed; nothing was trained or pushed:\n" + "\n".join(
                f"  - {problem}" for problem in problems)
            logging.error("%s", message)
            raise TextStatisticsError(message)


class TextStatisticsGate(base_component.BaseComponent):
    """Fail the run when the backbone's vocabulary or max_seq_length does not fit the text.

    Example:
        text_stats = TextStatisticsGate(examples=example_gen.outputs["examples"],
                                        backbone_handle="backbones/minilm", max_seq_length=128,
                                        max_unk_share=0.05, max_truncated_share=0.2)
        text_stats.add_upstream_node(transform)
        trainer.add_upstream_node(text_stats)
    """

    SPEC_CLASS = TextStatisticsGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        backbone_handle: str,
        max_seq_length: int,
        max_unk_share: float,
        max_truncated_share: float,
    ):
        super().__init__(
            spec=TextStatisticsGateSpec(
                examples=examples,
                backbone_handle=backbone_handle,
                max_seq_length=max_seq_length,
                max_unk_share=max_unk_share,
                max_truncated_share=max_truncated_share,
                text_statistics=types.Channel(type=TextStatistics),
            )
        )
