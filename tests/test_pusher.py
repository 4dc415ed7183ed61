"""VersionedPusher's executor: new version per push, whole or not at all, nothing overwritten."""

import json
import os

import pytest
from tfx import v1 as tfx
from tfx.types import standard_artifacts

from components import pusher


def _model_artifact(tmp_path, content: str):
    """A Trainer-style Model artifact whose `Format-Serving` folder contains a fake SavedModel."""
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / f"model-{content}")
    serving = os.path.join(model.uri, "Format-Serving")
    os.makedirs(os.path.join(serving, "variables"))
    with open(os.path.join(serving, "saved_model.pb"), "w") as file:
        file.write(content)
    with open(os.path.join(serving, "variables", "variables.index"), "w") as file:
        file.write(content + "-variables")
    return model


def _blessing(tmp_path, blessed: bool):
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / f"blessing-{blessed}")
    os.makedirs(blessing.uri, exist_ok=True)
    blessing.set_int_custom_property("blessed", int(blessed))
    return blessing


def _destination(serving_dir: str) -> str:
    return json.dumps({"filesystem": {"base_directory": serving_dir}})


def _push(tmp_path, serving_dir, content: str, blessed: bool = True):
    """Run the executor once; return the PushedModel output artifact."""
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / f"pushed-{content}")
    pusher.Executor().Do(
        {"model": [_model_artifact(tmp_path, content)],
         "model_blessing": [_blessing(tmp_path, blessed)]},
        {"pushed_model": [pushed]},
        {"push_destination": _destination(serving_dir)},
    )
    return pushed


def _read(path: str) -> str:
    with open(path) as file:
        return file.read()


def test_pushes_get_new_versions(tmp_path):
    serving_dir = str(tmp_path / "serving")
    first = _push(tmp_path, serving_dir, "one")
    second = _push(tmp_path, serving_dir, "two")

    assert sorted(os.listdir(serving_dir)) == ["1", "2"]
    assert _read(os.path.join(serving_dir, "1", "saved_model.pb")) == "one"
    assert _read(os.path.join(serving_dir, "2", "saved_model.pb")) == "two"
    assert _read(os.path.join(serving_dir, "2", "variables", "variables.index")) == "two-variables"
    assert first.get_int_custom_property("pushed") == 1
    assert first.get_string_custom_property("pushed_destination") == os.path.join(serving_dir, "1")
    assert second.get_string_custom_property("pushed_version") == "2"
    # The PushedModel artifact keeps its own copy, as with TFX's stock Pusher.
    assert _read(os.path.join(second.uri, "saved_model.pb")) == "two"


def test_unblessed_model_not_pushed(tmp_path):
    serving_dir = str(tmp_path / "serving")
    _push(tmp_path, serving_dir, "one")
    rejected = _push(tmp_path, serving_dir, "bad", blessed=False)

    assert rejected.get_int_custom_property("pushed") == 0
    assert os.listdir(serving_dir) == ["1"]
    assert _read(os.path.join(serving_dir, "1", "saved_model.pb")) == "one"


def test_existing_versions_never_overwritten(tmp_path):
    serving_dir = tmp_path / "serving"
    (serving_dir / "7").mkdir(parents=True)
    (serving_dir / "7" / "saved_model.pb").write_text("someone else's")
    (serving_dir / "notes").mkdir()

    pushed = _push(tmp_path, str(serving_dir), "one")

    assert pushed.get_string_custom_property("pushed_version") == "8"
    assert (serving_dir / "7" / "saved_model.pb").read_text() == "someone else's"
    assert sorted(os.listdir(serving_dir)) == ["7", "8", "notes"]


def test_version_taken_during_push(tmp_path, monkeypatch):
    # Another push renames its version 1 into place after this push listed the directory.
    serving_dir = tmp_path / "serving"
    listed = pusher.pushed_versions

    def stale_listing(base_directory):
        versions = listed(base_directory)
        (serving_dir / "1").mkdir(exist_ok=True)
        (serving_dir / "1" / "saved_model.pb").write_text("concurrent")
        return versions

    monkeypatch.setattr(pusher, "pushed_versions", stale_listing)
    version, destination = pusher.publish_model(
        os.path.join(_model_artifact(tmp_path, "one").uri, "Format-Serving"), str(serving_dir))

    assert version == 2
    assert _read(os.path.join(destination, "saved_model.pb")) == "one"
    assert (serving_dir / "1" / "saved_model.pb").read_text() == "concurrent"
    assert sorted(os.listdir(serving_dir)) == ["1", "2"]


def test_failed_copy_leaves_no_version(tmp_path, monkeypatch):
    serving_dir = tmp_path / "serving"
    _push(tmp_path, str(serving_dir), "one")
    copy_dir = pusher.io_utils.copy_dir

    def copy_then_fail(source, destination, *args, **kwargs):
        copy_dir(source, destination, *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(pusher.io_utils, "copy_dir", copy_then_fail)
    with pytest.raises(OSError, match="disk full"):
        _push(tmp_path, str(serving_dir), "two")
    assert os.listdir(serving_dir) == ["1"]


def test_staging_removed_after_push(tmp_path):
    serving_dir = tmp_path / "serving"
    _push(tmp_path, str(serving_dir), "one")
    assert not [name for name in os.listdir(serving_dir) if name.startswith(pusher.STAGING_PREFIX)]


def test_timestamp_versioning_rejected(tmp_path):
    destination = json.dumps({"filesystem": {"base_directory": str(tmp_path),
                                             "versioning": "UNIX_TIMESTAMP"}})
    with pytest.raises(ValueError, match="leave push_destination.filesystem.versioning unset"):
        pusher._filesystem_destination(destination)


def test_component_keeps_pusher_interface():
    model = tfx.dsl.Channel(type=standard_artifacts.Model)
    component = pusher.VersionedPusher(
        model=model,
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory="/serving")),
    ).with_id(pusher.COMPONENT_ID)
    assert component.id == "Pusher"
    assert set(component.outputs) == {"pushed_model"}
    assert component.executor_spec.executor_class is pusher.Executor


def test_identical_model_keeps_latest_version(tmp_path):
    serving_dir = str(tmp_path / "serving")
    (tmp_path / "first").mkdir()
    (tmp_path / "rerun").mkdir()
    (tmp_path / "changed").mkdir()
    _push(tmp_path / "first", serving_dir, "one")
    rerun = _push(tmp_path / "rerun", serving_dir, "one")

    assert sorted(os.listdir(serving_dir)) == ["1"]
    assert rerun.get_int_custom_property("pushed") == 1
    assert rerun.get_string_custom_property("pushed_destination") == os.path.join(serving_dir, "1")
    assert rerun.get_string_custom_property("pushed_version") == "1"

    changed = _push(tmp_path / "changed", serving_dir, "two")
    assert sorted(os.listdir(serving_dir)) == ["1", "2"]
    assert changed.get_string_custom_property("pushed_version") == "2"


def test_identical_version_only_checks_latest(tmp_path):
    serving_dir = str(tmp_path / "serving")
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    _push(tmp_path / "a", serving_dir, "one")
    _push(tmp_path / "b", serving_dir, "two")
    # A return to an older model is a new release, so it gets a new version.
    again = _push(tmp_path / "c", serving_dir, "one")
    assert again.get_string_custom_property("pushed_version") == "3"
