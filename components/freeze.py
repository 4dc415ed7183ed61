"""Freeze schedule: which variables each configured phase trains.

`hub.KerasLayer` can only make the whole backbone trainable or frozen, so a phase is the
list of variables its train step differentiates and updates. Every other variable stays
bit-identical during that phase.
"""

import collections
import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from components.backbone.loading import layer_index, resolve_backbone
from components.optimization import HEAD_GROUP, variable_group
from pipeline.config import ConfigError, PhaseConfig, PipelineConfig


@dataclasses.dataclass
class Phase:
    """One phase of training: its steps, first global step and the variables it updates."""

    name: str
    steps: int
    start_step: int
    variables: List[tf.Variable]
    groups: Dict[str, int]
    # Lowest encoder layer that trains, None when the backbone is frozen (head only) or
    # when the embeddings train too (all).
    lowest_layer: Optional[int]
    trains_backbone: bool

    @property
    def end_step(self) -> int:
        return self.start_step + self.steps

    @property
    def lowest_trainable(self) -> str:
        """Lowest trained part of the backbone: `none`, `embeddings` or a layer number."""
        if not self.trains_backbone:
            return "none"
        if self.lowest_layer is None:
            return "embeddings"
        return str(self.lowest_layer)


def group_counts(variables: Sequence[Tuple[tf.Variable, str]]) -> Dict[str, int]:
    """Return the number of variables per group, in backbone order, head last."""
    counts = collections.Counter(group for _, group in variables)

    def order(group: str):
        if group == "embeddings":
            return (0, 0)
        if group.startswith("layer_"):
            return (1, int(group[len("layer_"):]))
        return (2, 0) if group == "pooler" else (3, 0)

    return {group: counts[group] for group in sorted(counts, key=order)}


def check_phase_depth(phases: Sequence[PhaseConfig], num_layers: int,
                      source: str = "config") -> None:
    """Raise ConfigError (a ValueError) if a `top: N` phase requests more than `num_layers`."""
    for index, phase in enumerate(phases):
        top = phase.top_layers
        if top is not None and top > num_layers:
            raise ConfigError(
                f"{source}: training.phases[{index}].train is 'top: {top}' but the "
                f"backbone has {num_layers} layers; use top: {num_layers} or all.")


def check_schedule_depth(config: PipelineConfig) -> int:
    """Resolve the backbone and check each `top: N` phase against its layer count.

    Runs before any pipeline work so that an impossible schedule fails in seconds. Returns
    the number of encoder layers.

    Raises:
      ValueError: a `top: N` phase has N larger than the backbone's layer count.
    """
    backbone = resolve_backbone(config.backbone.handle)
    check_phase_depth(config.training.phases, backbone.num_layers, config.source)
    return backbone.num_layers


def plan_phases(phases: Sequence[PhaseConfig], backbone_variables: Sequence[tf.Variable],
                head_variables: Sequence[tf.Variable], num_layers: int,
                source: str = "config") -> List[Phase]:
    """Return the phases with the variables each trains.

    Raises:
      ValueError: a `top: N` phase requests more layers than the backbone has, or the
        backbone variables do not follow the `transformer/layer_N/...` naming.
    """
    tagged_backbone = [(variable, variable_group(variable.name, True))
                       for variable in backbone_variables]
    tagged_head = [(variable, HEAD_GROUP) for variable in head_variables]
    layers_found = {layer_index(variable.name) for variable in backbone_variables} - {None}
    if backbone_variables and len(layers_found) != num_layers:
        raise ValueError(
            f"backbone variables name {len(layers_found)} encoder layers but the backbone has "
            f"{num_layers}; freezing by layer needs official TF Hub BERT variable names "
            f"(transformer/layer_N/...), e.g. a backbone exported by `textxfer export-backbone`.")

    check_phase_depth(phases, num_layers, source)
    planned = []
    start = 0
    for index, phase in enumerate(phases):
        lowest = None
        if phase.train == "head":
            selected = tagged_head
        elif phase.train == "all":
            selected = tagged_backbone + tagged_head
        else:
            lowest = num_layers - phase.top_layers
            selected = [(variable, group) for variable, group in tagged_backbone
                        if group == "pooler" or (group.startswith("layer_")
                                                 and int(group[len("layer_"):]) >= lowest)]
            selected += tagged_head
        planned.append(Phase(
            name=f"{index}:{phase.train.replace(' ', '')}",
            steps=phase.steps,
            start_step=start,
            variables=[variable for variable, _ in selected],
            groups=group_counts(selected),
            lowest_layer=lowest,
            trains_backbone=phase.train != "head",
        ))
        start += phase.steps
    return planned


def tagged_variables(phases: Sequence[Phase], backbone_variables: Sequence[tf.Variable]
                     ) -> List[Tuple[tf.Variable, str]]:
    """Return (variable, group) for each variable any phase trains, each once."""
    backbone_ids = {id(variable) for variable in backbone_variables}
    seen = set()
    tagged = []
    for phase in phases:
        for variable in phase.variables:
            if id(variable) in seen:
                continue
            seen.add(id(variable))
            tagged.append((variable, variable_group(variable.name, id(variable) in backbone_ids)))
    return tagged
