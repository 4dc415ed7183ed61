"""Experiment configuration: one YAML file per experiment, loaded into validated dataclasses.

Loading is strict: an unknown key, a value of the wrong type or settings that conflict raise
`ConfigError` naming the key and the file, before any component runs. Command-line overrides
(`--set training.batch_size=16`) go through the same checks.

This module imports no TensorFlow, so `textxfer --help` and config checks stay fast.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import typing
from typing import Any, Optional, Union

import yaml

# A column is named by its header (or by one of several alternative headers, the first one a
# file contains wins) or, in files without a header, by its 0-based position.
ColumnRef = Union[str, list, int]

FORMATS = ("csv", "tsv", "jsonl")
RUNNERS = ("beam", "local")
BASELINES = ("resolver", "latest_pushed", "none")
TOLERATION_OPERATORS = ("Equal", "Exists")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# Kubernetes quantities as the KFP SDK accepts them: cores or millicores, bytes with a suffix.
_CPU_QUANTITY = re.compile(r"^([0-9]*\.)?[0-9]+m?$")
_MEMORY_QUANTITY = re.compile(r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")
_MEMORY_FACTORS = {
    "": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
# Storage that pods can read; a relative path would be resolved inside the container.
REMOTE_SCHEMES = ("gs://", "s3://", "minio://", "hdfs://", "http://", "https://")
DECAY_SCHEDULES = ("linear", "cosine")
DISTRIBUTIONS = ("default", "mirrored")
MIXED_PRECISION_POLICIES = ("mixed_float16", "mixed_bfloat16")
_TOP_PHASE = re.compile(r"^top:\s*(\d+)$")
_EXPONENT_FLOAT = re.compile(r"^[+-]?\d+(\.\d*)?[eE][+-]?\d+$")


class ConfigError(ValueError):
    """An invalid or inconsistent experiment configuration."""


@dataclasses.dataclass
class ColumnsConfig:
    """Input columns of the text, the optional second text, the label and the slice keys."""

    text: ColumnRef
    label: ColumnRef
    text_pair: Optional[ColumnRef] = None
    slices: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class DataConfig:
    """Location and reading options of the labelled text.

    Exactly one of `dataset` (a name the data step resolves to a directory, downloading or
    using an offline mirror) and `dir` (a directory of files) is set. `train` and `eval` are
    file patterns relative to that directory.
    """

    columns: ColumnsConfig
    train: str
    eval: str
    dataset: Optional[str] = None
    dir: Optional[str] = None
    format: str = "csv"
    header: bool = True
    delimiter: Optional[str] = None
    encoding: str = "utf-8"
    labels: Optional[list] = None
    max_bad_rows: int = 0
    # Curated TFDV schema (a schema.pbtxt file) imported with ImportSchemaGen; when unset,
    # SchemaGen infers one from the statistics.
    schema: Optional[str] = None


@dataclasses.dataclass
class BackboneConfig:
    """The pretrained encoder: a TF Hub / Kaggle URL, a `gs://` path or a local SavedModel."""

    handle: str
    max_seq_length: int = 128


@dataclasses.dataclass
class PhaseConfig:
    """One phase of the freeze schedule.

    `train` is `head` (backbone frozen), `top: N` (the N highest encoder layers, the pooler
    and the head) or `all`.
    """

    train: str
    steps: int

    @property
    def top_layers(self) -> Optional[int]:
        """Number of unfrozen encoder layers for a `top: N` phase, else None."""
        match = _TOP_PHASE.match(self.train)
        return int(match.group(1)) if match else None


@dataclasses.dataclass
class TrainingConfig:
    """Training budget, freeze schedule, optimizer, checkpoint, device and precision settings.

    `distribution` is `default` (one device) or `mirrored` (`tf.distribute.MirroredStrategy`
    over all local GPUs, or the CPU when there is none); `batch_size` is the global batch.
    `mixed_precision` is null, `mixed_float16` (with dynamic loss scaling) or
    `mixed_bfloat16`; the head always computes in float32. `checkpoint_dir` (default
    `<model_run_dir>/checkpoints`) receives a checkpoint every `checkpoint_every_steps` steps
    and at the end of each phase, and a run that finds one there resumes from it. TFX gives
    each Trainer execution a new `model_run_dir`, so a rerun of a failed Trainer resumes
    only from a configured `checkpoint_dir`, which a new experiment must not share.
    """

    phases: list
    batch_size: int = 32
    learning_rate: float = 5e-5
    head_learning_rate: Optional[float] = None
    warmup_fraction: float = 0.1
    decay: str = "linear"
    layer_lr_decay: float = 1.0
    weight_decay: float = 0.01
    clip_norm: Optional[float] = 1.0
    dropout: float = 0.1
    eval_batch_size: int = 64
    seed: int = 42
    distribution: str = "default"
    mixed_precision: Optional[str] = None
    checkpoint_dir: Optional[str] = None
    checkpoint_every_steps: int = 100


@dataclasses.dataclass
class EvaluationConfig:
    """TFMA gates for blessing a model.

    `*_lower_bound` are absolute thresholds; `max_*_drop` are change thresholds against the
    latest blessed model (the candidate may be at most that much worse).
    """

    accuracy_lower_bound: Optional[float] = None
    auc_lower_bound: Optional[float] = None
    max_accuracy_drop: Optional[float] = None
    slices: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ValidationConfig:
    """Data checks that stop a run before Transform (anomalies, label drift) or before training.

    `label_drift_max` is the L-infinity distance allowed between the label distributions of
    this span and the previous span (null turns the drift check off). `max_unk_share` is the
    maximum fraction of [UNK] word pieces in the train split and `max_truncated_share` the
    maximum fraction of examples longer than `backbone.max_seq_length`.
    """

    label_drift_max: Optional[float] = 0.1
    max_unk_share: float = 0.05
    max_truncated_share: float = 0.2


@dataclasses.dataclass
class OutputConfig:
    """Output location: the pipeline root, ML Metadata database and pushed models under `dir`."""

    dir: str

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.dir, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.dir, "metadata.sqlite")

    @property
    def serving_dir(self) -> str:
        return os.path.join(self.dir, "serving")


@dataclasses.dataclass
class RunnerConfig:
    """Local orchestration: TFX's BeamDagRunner (`beam`) or LocalDagRunner (`local`)."""

    kind: str = "beam"
    beam_args: list = dataclasses.field(default_factory=list)
    enable_cache: bool = True


@dataclasses.dataclass
class ResourcesConfig:
    """CPU and memory requests and limits of one container, as Kubernetes quantities.

    CPU is in cores (`2`, `0.5`) or millicores (`500m`); memory is bytes with an optional
    suffix (`8Gi`, `512M`).
    """

    cpu_request: Optional[Union[str, float]] = None
    cpu_limit: Optional[Union[str, float]] = None
    memory_request: Optional[str] = None
    memory_limit: Optional[str] = None


@dataclasses.dataclass
class TolerationConfig:
    """A Kubernetes toleration that lets a pod run on nodes with a matching taint."""

    key: str
    operator: str = "Equal"
    value: Optional[str] = None
    effect: Optional[str] = None


@dataclasses.dataclass
class AcceleratorConfig:
    """GPU request and the node pool that the GPU components run on.

    `resource_type` is the Kubernetes extended resource name (`nvidia.com/gpu`), which the
    open-source KFP backend puts into the container's limits; the GPU model is chosen by
    `node_selector` (on GKE, `cloud.google.com/gke-accelerator: nvidia-tesla-t4`).
    """

    resource_type: str = "nvidia.com/gpu"
    count: int = 1
    node_selector: dict = dataclasses.field(default_factory=dict)
    tolerations: list = dataclasses.field(default_factory=list)
    components: list = dataclasses.field(default_factory=lambda: ["Trainer"])


@dataclasses.dataclass
class KubeflowConfig:
    """Compiling for and submitting to a Kubeflow Pipelines v2 cluster.

    `output_dir`, `data_root` and `backbone_handle` replace `output.dir`, the data directory
    and `backbone.handle` in the compiled pipeline, because pods cannot read the compiling
    machine's files. `resources` maps a component id (`Trainer`) or `default` to its CPU and
    memory; a component's own entry overrides `default` field by field.
    """

    image: str
    output_dir: str
    data_root: str
    backbone_handle: Optional[str] = None
    host: Optional[str] = None
    namespace: Optional[str] = None
    experiment: Optional[str] = None
    service_account: Optional[str] = None
    token_env: str = "KFP_API_TOKEN"
    baseline: str = "latest_pushed"
    max_concurrency: int = 1
    resources: dict = dataclasses.field(default_factory=dict)
    accelerator: Optional[AcceleratorConfig] = None

    def component_resources(self, component_id: str) -> ResourcesConfig:
        """Return the resources of `component_id`: its own entry over `default`."""
        merged = dataclasses.replace(self.resources.get("default", ResourcesConfig()))
        own = self.resources.get(component_id)
        if own is not None:
            for field in dataclasses.fields(ResourcesConfig):
                value = getattr(own, field.name)
                if value is not None:
                    setattr(merged, field.name, value)
        return merged


# Ids of the components that the Kubeflow pipeline contains, whatever the baseline.
KUBEFLOW_COMPONENT_IDS = (
    "TextExampleGen",
    "StatisticsGen",
    "SchemaGen",
    "ImportSchemaGen",
    "ExampleValidator",
    "AnomalyGate",
    "Transform",
    "TextStatisticsGate",
    "Trainer",
    "Evaluator",
    "Pusher",
    "Report",
    "latest_pushed_model",
)


@dataclasses.dataclass
class PipelineConfig:
    """A whole experiment, as loaded from one YAML file."""

    name: str
    data: DataConfig
    backbone: BackboneConfig
    training: TrainingConfig
    evaluation: EvaluationConfig
    output: OutputConfig
    runner: RunnerConfig = dataclasses.field(default_factory=RunnerConfig)
    validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig)
    kubeflow: Optional[KubeflowConfig] = None
    # Path of the file this config was loaded from; set by the loader, not a YAML key.
    source: str = dataclasses.field(default="<dict>", compare=False)

    def to_dict(self) -> dict:
        """Return the config as plain data (what components receive in `custom_config`)."""
        data = dataclasses.asdict(self)
        data.pop("source")
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def load_config(path: str, overrides: Optional[list] = None) -> PipelineConfig:
    """Load, override and validate the experiment config in the YAML file at `path`.

    `overrides` are `dotted.key=value` strings; each value is parsed as YAML, so numbers,
    booleans and lists keep their types.
    """
    try:
        with open(path, encoding="utf-8") as config_file:
            raw = yaml.safe_load(config_file)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    for override in overrides or []:
        _apply_override(raw, override, path)
    return config_from_dict(raw, source=path)


def config_from_dict(raw: dict, source: str = "<dict>") -> PipelineConfig:
    """Build and validate a `PipelineConfig` from plain data, e.g. `PipelineConfig.to_dict()`."""
    config = _build(PipelineConfig, raw, "", source)
    config.source = source
    _validate(config)
    return config


def _apply_override(raw: dict, override: str, path: str) -> None:
    key, separator, value = override.partition("=")
    if not separator or not key:
        raise ConfigError(f"invalid override {override!r}: expected KEY=VALUE, e.g. training.batch_size=16")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{path}: cannot override {key}: {part} is not a mapping")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid value in override {override!r}: {error}") from None


def _build(cls, raw: Any, prefix: str, source: str):
    """Construct dataclass `cls` from `raw`, rejecting unknown keys and wrong types."""
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls) if field.name != "source"}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {prefix}{unknown[0]}; valid keys at {where}: {', '.join(sorted(fields))}"
        )
    values = {}
    for name, field in fields.items():
        key = prefix + name
        if name not in raw:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: missing required key {key}")
            continue
        values[name] = _convert(hints[name], raw[name], key, source)
    return cls(**values)


def _convert(hint, value: Any, key: str, source: str):
    # YAML 1.1 reads `1e-4` (no dot) as a string; accept it where a float is expected.
    if isinstance(value, str) and _EXPONENT_FLOAT.match(value) and float in (hint, *typing.get_args(hint)):
        value = float(value)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".", source)
    if key == "kubeflow.resources":
        return _build_resources(value, key, source)
    if key == "kubeflow.accelerator.tolerations":
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key}: expected a list of tolerations")
        return [_build(TolerationConfig, item, f"{key}[{index}].", source) for index, item in enumerate(value)]
    if key == "training.phases":
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key}: expected a list of phases")
        return [_build_phase(item, f"{key}[{index}]", source) for index, item in enumerate(value)]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Union:
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{source}: {key} must not be null")
        allowed = tuple(arg for arg in args if arg is not type(None))
        if len(allowed) == 1 and dataclasses.is_dataclass(allowed[0]):
            return _build(allowed[0], value, key + ".", source)
        if any(_matches(arg, value) for arg in allowed):
            return float(value) if float in allowed and isinstance(value, int) and not isinstance(value, bool) else value
        names = " or ".join(getattr(arg, "__name__", str(arg)) for arg in allowed)
        raise ConfigError(f"{source}: {key} must be {names}, got {value!r}")
    if not _matches(hint, value):
        raise ConfigError(f"{source}: {key} must be {hint.__name__}, got {value!r}")
    if hint is float:
        return float(value)
    return value


def _matches(hint, value) -> bool:
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _build_phase(item: Any, key: str, source: str) -> PhaseConfig:
    # `train: {top: 2}` in YAML reads more naturally than the string form; accept both.
    if isinstance(item, dict) and isinstance(item.get("train"), dict):
        train = item["train"]
        if set(train) != {"top"}:
            raise ConfigError(f"{source}: {key}.train: expected head, all or {{top: N}}, got {train!r}")
        item = dict(item, train=f"top: {train['top']}")
    return _build(PhaseConfig, item, key + ".", source)


def _validate(config: PipelineConfig) -> None:
    source = config.source
    data = config.data

    def fail(key: str, message: str):
        raise ConfigError(f"{source}: {key}: {message}")

    if not re.match(r"^[a-z0-9][a-z0-9-]{0,62}$", config.name):
        fail("name", f"{config.name!r} must be lowercase letters, digits and '-' (it names the pipeline)")
    if (data.dataset is None) == (data.dir is None):
        fail("data", "set exactly one of data.dataset (a named dataset) and data.dir (a directory of files)")
    if data.format not in FORMATS:
        fail("data.format", f"{data.format!r} is not one of {', '.join(FORMATS)}")
    if data.delimiter is not None and len(data.delimiter) != 1:
        fail("data.delimiter", f"{data.delimiter!r} must be one character")
    if data.max_bad_rows < 0:
        fail("data.max_bad_rows", "must be >= 0")
    columns = data.columns
    for name in ("text", "label", "text_pair"):
        _validate_column(getattr(columns, name), data.header, f"data.columns.{name}", fail)
    if columns.text_pair is not None and columns.text_pair == columns.text:
        fail("data.columns.text_pair", "names the same column as data.columns.text")
    if data.labels is not None:
        labels = [str(label) for label in data.labels]
        if len(labels) < 2:
            fail("data.labels", "needs at least two classes")
        if len(set(labels)) != len(labels):
            fail("data.labels", f"contains duplicates: {labels}")
        data.labels = labels
    if data.schema is not None and not data.schema.endswith(".pbtxt"):
        fail("data.schema", f"{data.schema!r} must be a text-format TFDV schema file ending in .pbtxt")

    backbone = config.backbone
    if not backbone.handle:
        fail("backbone.handle", "must not be empty")
    if not 8 <= backbone.max_seq_length <= 512:
        fail("backbone.max_seq_length", f"{backbone.max_seq_length} is outside 8..512")

    training = config.training
    if not training.phases:
        fail("training.phases", "needs at least one phase")
    for index, phase in enumerate(training.phases):
        key = f"training.phases[{index}]"
        if phase.train not in ("head", "all") and phase.top_layers is None:
            fail(f"{key}.train", f"{phase.train!r} is not head, all or top: N")
        if phase.top_layers is not None and phase.top_layers < 1:
            fail(f"{key}.train", "top: N needs N >= 1")
        if phase.steps <= 0:
            fail(f"{key}.steps", f"{phase.steps} must be > 0")
    for key in ("batch_size", "eval_batch_size"):
        if getattr(training, key) <= 0:
            fail(f"training.{key}", "must be > 0")
    if training.learning_rate <= 0:
        fail("training.learning_rate", "must be > 0")
    if training.head_learning_rate is not None and training.head_learning_rate <= 0:
        fail("training.head_learning_rate", "must be > 0")
    if not 0 <= training.warmup_fraction < 1:
        fail("training.warmup_fraction", "must be in [0, 1)")
    if training.decay not in DECAY_SCHEDULES:
        fail("training.decay", f"{training.decay!r} is not one of {', '.join(DECAY_SCHEDULES)}")
    if not 0 < training.layer_lr_decay <= 1:
        fail("training.layer_lr_decay", "must be in (0, 1]")
    if training.weight_decay < 0:
        fail("training.weight_decay", "must be >= 0")
    if training.clip_norm is not None and training.clip_norm <= 0:
        fail("training.clip_norm", "must be > 0 or null")
    if not 0 <= training.dropout < 1:
        fail("training.dropout", "must be in [0, 1)")
    if training.distribution not in DISTRIBUTIONS:
        fail("training.distribution",
             f"{training.distribution!r} is not one of {', '.join(DISTRIBUTIONS)}")
    if (training.mixed_precision is not None
            and training.mixed_precision not in MIXED_PRECISION_POLICIES):
        fail("training.mixed_precision", f"{training.mixed_precision!r} is not null or one of "
                                         f"{', '.join(MIXED_PRECISION_POLICIES)}")
    if training.checkpoint_every_steps <= 0:
        fail("training.checkpoint_every_steps", "must be > 0")

    evaluation = config.evaluation
    if evaluation.accuracy_lower_bound is None and evaluation.auc_lower_bound is None:
        # Without a threshold TFX writes no blessing and the Pusher silently pushes nothing.
        fail("evaluation", "set accuracy_lower_bound or auc_lower_bound; without a threshold no model is ever blessed")
    for key in ("accuracy_lower_bound", "auc_lower_bound", "max_accuracy_drop"):
        value = getattr(evaluation, key)
        if value is not None and not 0 <= value <= 1:
            fail(f"evaluation.{key}", f"{value} is outside [0, 1]")

    validation = config.validation
    if validation.label_drift_max is not None and not 0 < validation.label_drift_max <= 1:
        fail("validation.label_drift_max", f"{validation.label_drift_max} is outside (0, 1]; use null to turn the drift check off")
    for key in ("max_unk_share", "max_truncated_share"):
        value = getattr(validation, key)
        if not 0 <= value <= 1:
            fail(f"validation.{key}", f"{value} is outside [0, 1]")

    if config.runner.kind not in RUNNERS:
        fail("runner.kind", f"{config.runner.kind!r} is not one of {', '.join(RUNNERS)}")
    if config.kubeflow is not None:
        _validate_kubeflow(config.kubeflow, fail)


def _validate_column(ref, header: bool, key: str, fail) -> None:
    if ref is None:
        return
    if isinstance(ref, bool):
        fail(key, f"{ref!r} is not a column name or index")
    if isinstance(ref, int):
        if ref < 0:
            fail(key, f"column index {ref} must be >= 0")
        return
    if not header:
        fail(key, f"{ref!r} names a column, but data.header is false: give a 0-based column index")
    names = ref if isinstance(ref, list) else [ref]
    if not names or not all(isinstance(name, str) and name for name in names):
        fail(key, f"{ref!r} must be a column name, a list of alternative names or an index")


def _build_resources(value: Any, key: str, source: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {key}: expected a mapping of component id to resources")
    return {name: _build(ResourcesConfig, item, f"{key}.{name}.", source) for name, item in value.items()}


def _validate_kubeflow(kubeflow: KubeflowConfig, fail) -> None:
    if not kubeflow.image or any(char.isspace() for char in kubeflow.image):
        fail("kubeflow.image", f"{kubeflow.image!r} must be an image reference such as registry/textxfer:1.0")
    for name in ("output_dir", "data_root", "backbone_handle"):
        path = getattr(kubeflow, name)
        if path is not None and not (path.startswith(REMOTE_SCHEMES) or path.startswith("/")):
            fail(
                f"kubeflow.{name}",
                f"{path!r} is a relative path, which pods cannot read: use gs://, s3:// or minio:// "
                "storage, or an absolute path on a volume mounted in every pod",
            )
    if kubeflow.baseline not in BASELINES:
        fail("kubeflow.baseline", f"{kubeflow.baseline!r} is not one of {', '.join(BASELINES)}")
    if kubeflow.max_concurrency < 1:
        fail("kubeflow.max_concurrency", f"{kubeflow.max_concurrency} must be >= 1")
    if not kubeflow.token_env:
        fail("kubeflow.token_env", "must name the environment variable that holds the API token")

    for name in kubeflow.resources:
        if name != "default" and name not in KUBEFLOW_COMPONENT_IDS:
            fail(f"kubeflow.resources.{name}", f"is not default or a component id ({', '.join(KUBEFLOW_COMPONENT_IDS)})")
    for resources in kubeflow.resources.values():
        for field in ("cpu_request", "cpu_limit"):
            value = getattr(resources, field)
            if value is not None:
                setattr(resources, field, _cpu_string(value))
    for component_id in KUBEFLOW_COMPONENT_IDS:
        _validate_resources(kubeflow.component_resources(component_id), component_id, fail)

    accelerator = kubeflow.accelerator
    if accelerator is None:
        return
    if not re.match(r"^[A-Za-z0-9.-]+/[A-Za-z0-9_.-]+$", accelerator.resource_type):
        fail(
            "kubeflow.accelerator.resource_type",
            f"{accelerator.resource_type!r} must be a Kubernetes extended resource name such as nvidia.com/gpu",
        )
    if accelerator.count < 1:
        fail("kubeflow.accelerator.count", f"{accelerator.count} must be >= 1")
    for label, value in accelerator.node_selector.items():
        if not isinstance(label, str) or not isinstance(value, str):
            fail("kubeflow.accelerator.node_selector", f"{label!r}: {value!r} must map a label to a string value")
    for index, toleration in enumerate(accelerator.tolerations):
        key = f"kubeflow.accelerator.tolerations[{index}]"
        if toleration.operator not in TOLERATION_OPERATORS:
            fail(f"{key}.operator", f"{toleration.operator!r} is not one of {', '.join(TOLERATION_OPERATORS)}")
        if toleration.operator == "Exists" and toleration.value is not None:
            fail(f"{key}.value", "must be unset when operator is Exists")
        if toleration.effect is not None and toleration.effect not in TOLERATION_EFFECTS:
            fail(f"{key}.effect", f"{toleration.effect!r} is not one of {', '.join(TOLERATION_EFFECTS)}")
    if not accelerator.components:
        fail("kubeflow.accelerator.components", "needs at least one component id, e.g. [Trainer]")
    for component_id in accelerator.components:
        if component_id not in KUBEFLOW_COMPONENT_IDS:
            fail(
                "kubeflow.accelerator.components",
                f"{component_id!r} is not a component id ({', '.join(KUBEFLOW_COMPONENT_IDS)})",
            )


def _cpu_string(value) -> str:
    # YAML reads `cpu_limit: 2` as a number; Kubernetes quantities are strings.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _validate_resources(resources: ResourcesConfig, component_id: str, fail) -> None:
    key = f"kubeflow.resources.{component_id}"
    for field in dataclasses.fields(ResourcesConfig):
        if getattr(resources, field.name) is None:
            fail(key, f"{field.name} is not set: set it for {component_id} or under kubeflow.resources.default")
    for field in ("cpu_request", "cpu_limit"):
        if not _CPU_QUANTITY.match(getattr(resources, field)):
            fail(f"{key}.{field}", f"{getattr(resources, field)!r} must be cores (2, 0.5) or millicores (500m)")
    for field in ("memory_request", "memory_limit"):
        if not _MEMORY_QUANTITY.match(getattr(resources, field)):
            fail(f"{key}.{field}", f"{getattr(resources, field)!r} must be bytes with an optional suffix, e.g. 8Gi")
    if cpu_cores(resources.cpu_request) > cpu_cores(resources.cpu_limit):
        fail(key, f"cpu_request {resources.cpu_request} is above cpu_limit {resources.cpu_limit}")
    if memory_bytes(resources.memory_request) > memory_bytes(resources.memory_limit):
        fail(key, f"memory_request {resources.memory_request} is above memory_limit {resources.memory_limit}")


def cpu_cores(quantity: str) -> float:
    """Convert a validated Kubernetes CPU quantity (`2`, `500m`) to cores."""
    if quantity.endswith("m"):
        return float(quantity[:-1]) / 1000
    return float(quantity)


def memory_bytes(quantity: str) -> int:
    """Convert a validated Kubernetes memory quantity (`8Gi`, `512M`) to bytes."""
    match = re.match(r"^([0-9]+)([A-Za-z]*)$", quantity)
    return int(match.group(1)) * _MEMORY_FACTORS[match.group(2)]
