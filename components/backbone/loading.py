"""Resolve a backbone handle to a local TF Hub BERT encoder and describe what it contains.

A handle is a TF Hub / Kaggle URL (`https://...`, cached under `TFHUB_CACHE_DIR`), a
`gs://` path, a local SavedModel directory, or a directory that contains exactly one
SavedModel below it (for example a pipeline artifact).
"""

import dataclasses
import hashlib
import os
import re
from typing import List, Optional

from absl import logging

REQUIRED_INPUTS = ("input_word_ids", "input_mask", "input_type_ids")
REQUIRED_OUTPUTS = ("pooled_output", "sequence_output", "encoder_outputs")
SAVED_MODEL_FILE = "saved_model.pb"
# Maximum folder depth below a handle directory searched for a SavedModel. The search
# skips hidden folders, such as exports in progress.
_MAX_SEARCH_DEPTH = 4
_LAYER_PATTERN = re.compile(r"(?:^|/)transformer/layer_(\d+)/")


class BackboneNotFoundError(FileNotFoundError):
    """The handle does not lead to a SavedModel that can be read from this machine."""


class BackboneInterfaceError(ValueError):
    """The SavedModel lacks inputs, outputs or assets of the TF Hub BERT encoder interface."""


@dataclasses.dataclass(frozen=True)
class BackboneInfo:
    """A resolved backbone: its local or remote SavedModel path and its key dimensions."""

    path: str
    num_layers: int
    hidden_size: int
    vocab_size: int
    do_lower_case: bool
    vocab_file: str


def layer_index(variable_name: str) -> Optional[int]:
    """Return the encoder layer N of a `transformer/layer_N/...` variable, else None.

    Embedding, pooler and head variables return None. Works on names with a scope
    prefix, such as those a Keras model adds (`model/transformer/layer_3/...:0`).
    """
    match = _LAYER_PATTERN.search(variable_name)
    return int(match.group(1)) if match else None


def _unreachable(handle: str, reason: str) -> BackboneNotFoundError:
    return BackboneNotFoundError(
        f"Backbone {handle!r} could not be loaded: {reason}. On a machine without access "
        f"to it, export a local copy (`textxfer export-backbone --from CHECKPOINT_DIR --to "
        f"DIR` and pass DIR) or point TFHUB_CACHE_DIR at a folder that already holds a "
        f"cached copy of the handle.")


def _find_saved_models(root: str) -> List[str]:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    found = []
    root_depth = root.rstrip("/").count("/")
    for directory, subdirs, files in tf.io.gfile.walk(root):
        if SAVED_MODEL_FILE in files:
            found.append(directory)
            subdirs[:] = []
            continue
        if directory.rstrip("/").count("/") - root_depth >= _MAX_SEARCH_DEPTH:
            subdirs[:] = []
        subdirs[:] = [name for name in subdirs if not name.startswith(".")]
    return sorted(found)


def locate_saved_model(handle: str) -> str:
    """Return the SavedModel directory for `handle`, downloading hub URLs into the cache."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    if handle.startswith(("https://", "http://")):
        import tensorflow_hub as hub  # pylint: disable=import-outside-toplevel

        # NOTE: tensorflow_hub 0.16 opens URLs without a timeout. Offline machines fail at
        # once on DNS, but a host that drops packets blocks until the OS gives up.
        try:
            return hub.resolve(handle)
        except Exception as error:  # Network, HTTP and archive errors have no common base.
            cache_dir = os.path.join(hub.resolver.tfhub_cache_dir(use_temp=True),
                                     hashlib.sha1(handle.encode("utf-8")).hexdigest())
            raise _unreachable(
                handle, f"{type(error).__name__}: {error}. tensorflow_hub looks for a cached "
                        f"copy in {cache_dir}") from error

    # NOTE: gs:// handles take this tf.io.gfile path like local folders; the test suite
    # covers local folders only, because it runs without network access.
    try:
        if tf.io.gfile.exists(os.path.join(handle, SAVED_MODEL_FILE)):
            return handle
        if not tf.io.gfile.isdir(handle):
            raise _unreachable(handle, "no such directory")
        found = _find_saved_models(handle)
    except tf.errors.OpError as error:
        raise _unreachable(handle, f"{type(error).__name__}: {error.message}") from error

    if not found:
        raise _unreachable(handle, f"no {SAVED_MODEL_FILE} in it or in its subfolders up to "
                                   f"depth {_MAX_SEARCH_DEPTH}")
    if len(found) > 1:
        raise BackboneInterfaceError(
            f"Backbone {handle!r} contains {len(found)} SavedModels ({', '.join(found)}); "
            f"pass the one to use.")
    return found[0]


def _check_interface(loaded, path: str) -> list:
    """Return the output TensorSpecs of `loaded.__call__`, or raise naming what is missing."""
    call = getattr(loaded, "__call__", None)
    concrete = list(getattr(call, "concrete_functions", None) or [])
    if not concrete:
        raise BackboneInterfaceError(
            f"SavedModel {path} has no callable root object (`__call__`); a TF Hub BERT "
            f"encoder takes a dict of {', '.join(REQUIRED_INPUTS)}.")
    function = concrete[0]
    args, _ = function.structured_input_signature
    inputs = args[0] if args and isinstance(args[0], dict) else {}
    outputs = function.structured_outputs if isinstance(function.structured_outputs,
                                                        dict) else {}
    missing_inputs = [name for name in REQUIRED_INPUTS if name not in inputs]
    missing_outputs = [name for name in REQUIRED_OUTPUTS if name not in outputs]
    missing_assets = [name for name in ("vocab_file", "do_lower_case")
                      if not hasattr(loaded, name)]
    if missing_inputs or missing_outputs or missing_assets:
        raise BackboneInterfaceError(
            f"SavedModel {path} does not have the TF Hub BERT encoder interface: missing "
            f"inputs {missing_inputs}, missing outputs {missing_outputs}, missing attributes "
            f"{missing_assets}. Export Hugging Face checkpoints with `textxfer "
            f"export-backbone`, or use a TF Hub BERT encoder that takes a dict of inputs.")
    return outputs


def resolve_backbone(handle: str) -> BackboneInfo:
    """Load the backbone at `handle`, check its interface and return what it contains.

    Raises:
      BackboneNotFoundError: the handle cannot be reached or contains no SavedModel.
      BackboneInterfaceError: the SavedModel lacks required inputs, outputs or assets.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    import tensorflow_text  # pylint: disable=import-outside-toplevel,unused-import  # noqa: F401

    path = locate_saved_model(handle)
    try:
        loaded = tf.saved_model.load(path)
    except (tf.errors.OpError, OSError, ValueError) as error:
        raise _unreachable(handle, f"loading {path} failed with {type(error).__name__}: "
                                   f"{error}") from error
    outputs = _check_interface(loaded, path)

    vocab_file = loaded.vocab_file.asset_path.numpy().decode("utf-8")
    with tf.io.gfile.GFile(vocab_file) as f:
        vocab_size = sum(1 for _ in f)
    info = BackboneInfo(
        path=path,
        num_layers=len(outputs["encoder_outputs"]),
        hidden_size=int(outputs["pooled_output"].shape[-1]),
        vocab_size=vocab_size,
        do_lower_case=bool(loaded.do_lower_case.numpy()),
        vocab_file=vocab_file,
    )
    logging.info("Resolved backbone %s to %s: %d layers, hidden size %d, vocabulary %d "
                 "tokens, do_lower_case=%s.", handle, path, info.num_layers, info.hidden_size,
                 info.vocab_size, info.do_lower_case)
    return info
