"""VersionedPusher: TFX's Pusher with versions that appear whole and are never overwritten.

TFX's stock filesystem Pusher copies the model file by file straight into
`<base_directory>/<unix time>`, so a model server polling that directory can see a partly
copied version, and it skips the push when two pushes fall in the same second. This
executor copies the model into a hidden staging directory beside the versions, then renames
it to the next free version number `<base_directory>/<N>`. The earlier versions stay in
place, and a version directory that exists is never written to again.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils
from tfx.v1.components import Pusher

COMPONENT_ID = "Pusher"
# Staging directories start with a dot and contain no digit-only name, so TF Serving, which
# loads only integer-named versions, and `find_latest_pushed_model` never pick one up.
STAGING_PREFIX = ".staging-"
# How many taken version numbers one push skips (pushes running at the same time) before it
# gives up.
MAX_VERSION_ATTEMPTS = 100


def pushed_versions(base_directory: str) -> List[int]:
    """Return the integer version numbers under `base_directory`, ascending ([] if none)."""
    if not fileio.isdir(base_directory):
        return []
    names = (name.rstrip("/") for name in fileio.listdir(base_directory))
    return sorted(int(name) for name in names if name.isdigit())


def publish_model(model_path: str, base_directory: str) -> Tuple[int, str]:
    """Copy the SavedModel at `model_path` into a new version directory under `base_directory`.

    The copy goes to `<base_directory>/.staging-<random>` first and becomes visible as
    `<base_directory>/<N>` by one rename, with N one above the highest existing version.
    When another push takes N first, this one moves on to N + 1.

    Returns:
      The version number and the version directory.

    Raises:
      RuntimeError: no free version number within `MAX_VERSION_ATTEMPTS` tries.
    """
    fileio.makedirs(base_directory)
    staging = os.path.join(base_directory, f"{STAGING_PREFIX}{uuid.uuid4().hex}")
    try:
        io_utils.copy_dir(model_path, staging)
        versions = pushed_versions(base_directory)
        version = versions[-1] + 1 if versions else 1
        for _ in range(MAX_VERSION_ATTEMPTS):
            destination = os.path.join(base_directory, str(version))
            if _rename_if_absent(staging, destination):
                return version, destination
            logging.info("Version %d under %s is taken; trying %d.", version, base_directory,
                         version + 1)
            version += 1
    except BaseException:
        _remove_staging(staging)
        raise
    _remove_staging(staging)
    raise RuntimeError(
        f"no free version number under {base_directory} after {MAX_VERSION_ATTEMPTS} tries "
        f"(last tried {version - 1}); check which process keeps pushing there")


def identical_latest_version(model_path: str, base_directory: str) -> Optional[Tuple[int, str]]:
    """Return the newest version under `base_directory` if its files equal `model_path`'s.

    A rerun over unchanged inputs blesses the same model again. The Pusher then keeps
    serving the version that contains it instead of publishing a copy.
    """
    versions = pushed_versions(base_directory)
    if not versions:
        return None
    latest = os.path.join(base_directory, str(versions[-1]))
    if _tree_digest(model_path) == _tree_digest(latest):
        return versions[-1], latest
    return None


def _tree_digest(directory: str) -> Dict[str, str]:
    """Map each file below `directory` (relative path) to the SHA-256 of its bytes."""
    digests = {}
    for root, _, files in fileio.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            sha = hashlib.sha256()
            with fileio.open(path, "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    sha.update(block)
            digests[os.path.relpath(path, directory)] = sha.hexdigest()
    return digests


def _rename_if_absent(source: str, destination: str) -> bool:
    """Rename `source` to `destination` unless that exists; return whether it was renamed.

    NOTE: on a local or POSIX file system a rename is atomic and fails onto a non-empty
    directory, so two pushes can never write the same version. Object stores (gs://, s3://)
    emulate a directory rename by copying object by object, so there a version can be seen
    before its last file is copied, and the existence check and the rename are not atomic.
    """
    if fileio.exists(destination):
        return False
    try:
        fileio.rename(source, destination, overwrite=False)
    except (OSError, tf.errors.OpError):
        if fileio.exists(destination) and fileio.exists(source):
            return False
        raise
    return True


def _remove_staging(staging: str) -> None:
    if fileio.exists(staging):
        fileio.rmtree(staging)


class Executor(pusher_executor.Executor):
    """Push a blessed model to a new version directory of a filesystem destination."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            logging.info("The model is not blessed; nothing is pushed.")
            self._MarkNotPushed(model_push)
            return
        base_directory = _filesystem_destination(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY])
        model_path = self.GetModelPath(input_dict)

        identical = identical_latest_version(model_path, base_directory)
        if identical is not None:
            version, destination = identical
            logging.info("The blessed model %s equals version %d, which is already served; "
                         "no new version is published.", model_path, version)
        else:
            version, destination = publish_model(model_path, base_directory)
            logging.info("Pushed %s as version %d: %s", model_path, version, destination)
        # Like the stock Pusher, keep a copy in the PushedModel artifact for lineage.
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=destination,
                         pushed_version=str(version))


def _filesystem_destination(push_destination_json: str) -> str:
    push_destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(push_destination_json, push_destination)
    kind = push_destination.WhichOneof("destination")
    if kind != "filesystem":
        raise ValueError(
            f"VersionedPusher pushes to a filesystem destination only, got {kind!r}; pass "
            f"push_destination=PushDestination(filesystem=...)")
    versioning = push_destination.filesystem.versioning
    if versioning != pusher_pb2.Versioning.AUTO:
        raise ValueError(
            f"VersionedPusher numbers versions 1, 2, ... itself, got versioning "
            f"{pusher_pb2.Versioning.Name(versioning)}; leave push_destination.filesystem."
            f"versioning unset")
    return push_destination.filesystem.base_directory


class VersionedPusher(Pusher):
    """TFX's Pusher with a filesystem destination, atomic pushes and incrementing versions.

    It takes the stock Pusher's arguments and writes the same `pushed_model` output with the
    `pushed`, `pushed_destination` and `pushed_version` custom properties. Give it the id
    `Pusher` with `.with_id(COMPONENT_ID)` to keep run summaries and caches unchanged.

    Example:
        VersionedPusher(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            push_destination=tfx.proto.PushDestination(
                filesystem=tfx.proto.PushDestination.Filesystem(base_directory="serving")),
        ).with_id("Pusher")
    """

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

