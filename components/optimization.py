"""Learning-rate schedule and AdamW with a per-group learning rate (head, layer-wise decay).

Keras optimizers have one learning rate, so each distinct rate gets its own AdamW. All of
them read one shared `global_step`, because a group that a phase freezes must not fall
behind in the schedule.
"""

import math
import re
from typing import Dict, Iterable, List, Sequence, Tuple

import tensorflow as tf
import tf_keras

from components.backbone.loading import layer_index
from pipeline.config import TrainingConfig

# Variables whose names match any of these get no weight decay: biases and LayerNorm
# scales and offsets (`.../layer_norm/gamma`, `.../LayerNorm/beta`).
NO_WEIGHT_DECAY = (r"bias", r"layer_norm", r"LayerNorm")
HEAD_GROUP = "head"


class WarmupDecaySchedule(tf_keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then linear or cosine decay to 0.

    The rate is computed from `global_step`, not from the step the optimizer passes in.
    """

    def __init__(self, global_step: tf.Variable, peak: float, total_steps: int,
                 warmup_steps: int, decay: str):
        super().__init__()
        if decay not in ("linear", "cosine"):
            raise ValueError(f"decay {decay!r} is not linear or cosine")
        self.global_step = global_step
        self.peak = peak
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.decay = decay

    def __call__(self, step=None):
        del step  # The optimizer's own counter stops while its group is frozen.
        step = tf.cast(self.global_step, tf.float32)
        warmup = tf.cast(max(self.warmup_steps, 1), tf.float32)
        decay_steps = tf.cast(max(self.total_steps - self.warmup_steps, 1), tf.float32)
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        if self.decay == "linear":
            decayed = 1.0 - progress
        else:
            decayed = 0.5 * (1.0 + tf.cos(math.pi * progress))
        factor = tf.where(step < self.warmup_steps, (step + 1.0) / warmup, decayed)
        return self.peak * factor

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "decay": self.decay}


def variable_group(variable_name: str, backbone_variable: bool) -> str:
    """Return the group of a variable: `head`, `pooler`, `layer_N` or `embeddings`."""
    if not backbone_variable:
        return HEAD_GROUP
    index = layer_index(variable_name)
    if index is not None:
        return f"layer_{index}"
    if "pooler" in variable_name:
        return "pooler"
    return "embeddings"


def learning_rate_scale(group: str, num_layers: int, layer_lr_decay: float) -> float:
    """Return the factor on the backbone learning rate for a variable group.

    The pooler and the top encoder layer get the full rate. Each lower layer gets the rate
    of the layer above times `layer_lr_decay`, and the embeddings one step below layer 0.
    """
    if group in (HEAD_GROUP, "pooler"):
        return 1.0
    if group == "embeddings":
        return layer_lr_decay ** num_layers
    index = int(group[len("layer_"):])
    return layer_lr_decay ** (num_layers - 1 - index)


class GroupedAdamW:
    """AdamW with decoupled weight decay and one learning rate per variable group."""

    def __init__(self, training: TrainingConfig, total_steps: int, num_layers: int,
                 global_step: tf.Variable, loss_scale: bool = False):
        """Set up the schedules; `build` creates the optimizers.

        With `loss_scale` each group's AdamW is wrapped in a dynamic `LossScaleOptimizer`
        (for float16). The caller scales the loss with `scaled_loss` and unscales with
        `unscaled_gradients`, and must pass all-or-none non-finite gradients so that every
        group skips the same steps and all loss scales stay equal.
        """
        self._training = training
        self._loss_scale = loss_scale
        self._num_layers = num_layers
        self._global_step = global_step
        self._total_steps = total_steps
        self._warmup_steps = int(round(training.warmup_fraction * total_steps))
        self._optimizers: Dict[float, tf_keras.optimizers.Optimizer] = {}
        self._optimizer_of: Dict[int, tf_keras.optimizers.Optimizer] = {}
        self.head_schedule = self._schedule(training.head_learning_rate or training.learning_rate)
        self.backbone_schedule = self._schedule(training.learning_rate)

    def _schedule(self, peak: float) -> WarmupDecaySchedule:
        return WarmupDecaySchedule(self._global_step, peak, self._total_steps,
                                   self._warmup_steps, self._training.decay)

    def _peak_rate(self, group: str) -> float:
        if group == HEAD_GROUP:
            return self._training.head_learning_rate or self._training.learning_rate
        scale = learning_rate_scale(group, self._num_layers, self._training.layer_lr_decay)
        return self._training.learning_rate * scale

    def build(self, variables: Sequence[Tuple[tf.Variable, str]]) -> Dict[str, float]:
        """Create the optimizer state for every (variable, group) any phase will train.

        Returns the peak learning rate of each group. Building everything before training
        lets later phases add variables without a new optimizer.
        """
        members: Dict[float, List[tf.Variable]] = {}
        peaks: Dict[str, float] = {}
        for variable, group in variables:
            peak = self._peak_rate(group)
            peaks[group] = peak
            members.setdefault(peak, []).append(variable)
        for peak, group_variables in sorted(members.items()):
            optimizer = tf_keras.optimizers.AdamW(
                learning_rate=self._schedule(peak),
                weight_decay=self._training.weight_decay,
                epsilon=1e-6,
            )
            optimizer.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY))
            if self._loss_scale:
                optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
            optimizer.build(group_variables)
            self._optimizers[peak] = optimizer
            for variable in group_variables:
                self._optimizer_of[id(variable)] = optimizer
        return peaks

    @property
    def checkpoint_objects(self) -> Dict[str, tf_keras.optimizers.Optimizer]:
        """The optimizers by name (`group_0` has the lowest peak rate), for a checkpoint."""
        return {f"group_{index}": self._optimizers[peak]
                for index, peak in enumerate(sorted(self._optimizers))}

    @property
    def loss_scale(self) -> tf.Tensor:
        """The current loss scale, 1.0 without loss scaling."""
        if not self._loss_scale:
            return tf.constant(1.0)
        return next(iter(self._optimizers.values())).loss_scale

    def learning_rate_of(self, variable: tf.Variable) -> float:
        """Return the learning rate that the next update of `variable` uses."""
        optimizer = self._optimizer_of.get(id(variable))
        if optimizer is None:
            raise KeyError(f"variable {variable.name} was not passed to GroupedAdamW.build")
        return float(optimizer.learning_rate)

    def apply_gradients(self, grads_and_vars: Iterable[Tuple[tf.Tensor, tf.Variable]],
                        skip_gradients_aggregation: bool = False) -> None:
        """Apply each gradient with the optimizer of its variable's group.

        Pass `skip_gradients_aggregation=True` when the gradients were already summed
        across replicas (for clipping by the global norm of the summed gradient).
        """
        per_optimizer: Dict[int, List] = {}
        for gradient, variable in grads_and_vars:
            optimizer = self._optimizer_of.get(id(variable))
            if optimizer is None:
                raise KeyError(f"variable {variable.name} was not passed to GroupedAdamW.build")
            per_optimizer.setdefault(id(optimizer), [optimizer, []])[1].append((gradient, variable))
        for optimizer, pairs in per_optimizer.values():
            optimizer.apply_gradients(pairs, skip_gradients_aggregation=skip_gradients_aggregation)


def uses_weight_decay(variable_name: str) -> bool:
    """Return whether AdamW decays a variable of this name (not biases or LayerNorm)."""
    return not any(re.search(pattern, variable_name) for pattern in NO_WEIGHT_DECAY)
