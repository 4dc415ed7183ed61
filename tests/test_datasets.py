"""The dataset step: offline mirror, cache, real download from a loopback HTTP server."""

import http.server
import io
import os
import pathlib
import subprocess
import sys
import threading
import zipfile

import pytest

from pipeline import datasets
from pipeline.datasets import DatasetError, ensure_dataset

REPO = pathlib.Path(__file__).resolve().parents[1]
# The offline mirror, which the demo passes as a path relative to the repository.
MIRROR = REPO.parent / "shared" / "datasets"
needs_mirror = pytest.mark.skipif(not (MIRROR / "sst2" / "train.tsv").exists(), reason="no SST-2 mirror")


@pytest.fixture(autouse=True)
def no_environment(monkeypatch):
    monkeypatch.delenv(datasets.MIRROR_ENV, raising=False)
    monkeypatch.delenv(datasets.CACHE_ENV, raising=False)


def _data_rows(path) -> int:
    return len(pathlib.Path(path).read_text(encoding="utf-8").splitlines()) - 1


def _glue_tsv(mirror_file: pathlib.Path) -> bytes:
    """Rewrite a mirror split (`label\\t<text>`) in the archive's layout (`sentence\\tlabel`)."""
    lines = mirror_file.read_text(encoding="utf-8").splitlines()[1:]
    rows = [f"{text}\t{label}" for label, text in (line.split("\t") for line in lines)]
    return ("sentence\tlabel\n" + "\n".join(rows) + "\n").encode("utf-8")


@pytest.fixture(scope="module")
def sst2_zip() -> bytes:
    """An SST-2.zip built like the published one, from the mirror's rows."""
    if not (MIRROR / "sst2" / "train.tsv").exists():
        pytest.skip("no SST-2 mirror")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("SST-2/train.tsv", _glue_tsv(MIRROR / "sst2" / "train.tsv"))
        archive.writestr("SST-2/dev.tsv", _glue_tsv(MIRROR / "sst2" / "dev.tsv"))
        archive.writestr("SST-2/test.tsv", b"index\tsentence\n0\tuh , lovely .\n")
    return buffer.getvalue()


class _Server:
    """A loopback HTTP server that serves `routes[path] = (body, declared Content-Length)`."""

    def __init__(self):
        self.routes: dict[str, tuple[bytes, int]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # pylint: disable=invalid-name
                server.requests.append(self.path)
                if self.path not in server.routes:
                    self.send_error(404)
                    return
                body, length = server.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server():
    served = _Server()
    served.thread.start()
    yield served
    served.httpd.shutdown()
    served.httpd.server_close()
    served.thread.join(timeout=5)


@needs_mirror
def test_mirror_argument_relative_path(monkeypatch):
    monkeypatch.chdir(REPO)
    directory = ensure_dataset("glue_sst2", mirror="../shared/datasets")
    assert directory == str(MIRROR / "sst2")
    assert _data_rows(os.path.join(directory, "train.tsv")) == 67_349
    assert _data_rows(os.path.join(directory, "dev.tsv")) == 872


@needs_mirror
def test_mirror_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(datasets.MIRROR_ENV, str(MIRROR))
    assert ensure_dataset("glue_sst2", cache_dir=str(tmp_path)) == str(MIRROR / "sst2")
    # The mirror wins over the cache, which stays unused.
    assert list(tmp_path.iterdir()) == []


def test_mirror_missing_names_both_options(tmp_path):
    with pytest.raises(DatasetError) as caught:
        ensure_dataset("glue_sst2", mirror=str(tmp_path))
    message = str(caught.value)
    assert str(tmp_path / "sst2") in message
    assert "TEXTXFER_DATA_MIRROR" in message
    assert "--data-mirror" in message
    assert "sst2/train.tsv" in message


def _write_mirror(root: pathlib.Path, train: str, dev: str) -> None:
    (root / "sst2").mkdir(parents=True)
    (root / "sst2" / "train.tsv").write_text(train, encoding="utf-8")
    (root / "sst2" / "dev.tsv").write_text(dev, encoding="utf-8")


# (case id, train.tsv text, message part): mirrors that fail the structure checks.
BAD_MIRRORS = [
    ("short train", "label\tsentence\n0\tdull\n", "found 1 data rows, expected 67349"),
    ("wrong header", "label\ttext\n0\tdull\n", "lacks a 'label' column or a text column"),
    ("missing field", "label\tsentence\n0\n", "train.tsv:2: expected 2 fields"),
    ("missing label", "label\tsentence\n\tdull\n", "train.tsv:2: expected 2 fields with a label"),
]


@pytest.mark.parametrize("train,message", [case[1:] for case in BAD_MIRRORS],
                         ids=[case[0] for case in BAD_MIRRORS])
def test_mirror_structure_checked(tmp_path, train, message):
    _write_mirror(tmp_path, train, "label\tcontent\n1\tfun\n")
    with pytest.raises(DatasetError, match=message):
        ensure_dataset("glue_sst2", mirror=str(tmp_path))


def test_mirror_invalid_utf8(tmp_path):
    _write_mirror(tmp_path, "label\tsentence\n", "")
    (tmp_path / "sst2" / "train.tsv").write_bytes(b"label\tsentence\n0\tcaf\xe9\n")
    with pytest.raises(DatasetError, match=r"train.tsv:2: invalid UTF-8"):
        ensure_dataset("glue_sst2", mirror=str(tmp_path))


def test_unknown_dataset_lists_known():
    with pytest.raises(ValueError, match=r"unknown dataset 'imdb'; known datasets: \['glue_sst2'\]"):
        ensure_dataset("imdb")


def test_download_then_cache(server, sst2_zip, tmp_path, monkeypatch):
    server.routes["/SST-2.zip"] = (sst2_zip, len(sst2_zip))
    cache = tmp_path / "cache"
    directory = ensure_dataset("glue_sst2", cache_dir=str(cache), url=server.url("/SST-2.zip"))
    assert directory == str(cache / "glue_sst2")
    assert sorted(os.listdir(directory)) == ["dev.tsv", "train.tsv"]
    assert _data_rows(os.path.join(directory, "train.tsv")) == 67_349
    assert _data_rows(os.path.join(directory, "dev.tsv")) == 872
    first_line = pathlib.Path(directory, "train.tsv").read_text(encoding="utf-8").splitlines()[1]
    assert first_line == "hide new secretions from the parental units\t0"
    # Nothing but the dataset folder is left in the cache.
    assert os.listdir(cache) == ["glue_sst2"]
    assert server.requests == ["/SST-2.zip"]

    # A second call, here through the environment variable, uses the cache without a request.
    monkeypatch.setenv(datasets.CACHE_ENV, str(cache))
    assert ensure_dataset("glue_sst2", url=server.url("/SST-2.zip")) == directory
    assert server.requests == ["/SST-2.zip"]


def test_invalid_cache_downloaded_again(server, sst2_zip, tmp_path):
    server.routes["/SST-2.zip"] = (sst2_zip, len(sst2_zip))
    stale = tmp_path / "glue_sst2"
    stale.mkdir()
    (stale / "train.tsv").write_text("sentence\tlabel\nonly one\t1\n", encoding="utf-8")
    directory = ensure_dataset("glue_sst2", cache_dir=str(tmp_path), url=server.url("/SST-2.zip"))
    assert server.requests == ["/SST-2.zip"]
    assert _data_rows(os.path.join(directory, "train.tsv")) == 67_349


def _assert_failed_download_leaves_nothing(cache: pathlib.Path) -> None:
    leftovers = list(cache.iterdir()) if cache.exists() else []
    assert leftovers == []


def _small_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _half_archive(full: bytes) -> tuple[bytes, int]:
    return full[: len(full) // 2], len(full) // 2


def _connection_closed_early(full: bytes) -> tuple[bytes, int]:
    # The server declares the full length but closes the connection after 1,000 bytes.
    return full[:1000], len(full)


def _archive_without_dev(full: bytes) -> tuple[bytes, int]:
    del full
    archive = _small_zip({"SST-2/train.tsv": b"sentence\tlabel\n"})
    return archive, len(archive)


def _archive_with_one_row(full: bytes) -> tuple[bytes, int]:
    del full
    archive = _small_zip({
        "SST-2/train.tsv": b"sentence\tlabel\nfun\t1\n",
        "SST-2/dev.tsv": b"sentence\tlabel\ndull\t0\n",
    })
    return archive, len(archive)


# (case id, function of the good archive -> (body, declared length), expected message).
BAD_DOWNLOADS = [
    ("corrupt archive", _half_archive, "is not a valid zip file"),
    ("short download", _connection_closed_early, "incomplete: received 1000 of"),
    ("missing split", _archive_without_dev, r"lacks \['SST-2/dev.tsv'\]"),
    ("wrong row count", _archive_with_one_row, "found 1 data rows, expected 67349"),
]


@pytest.mark.parametrize("make_body,message", [case[1:] for case in BAD_DOWNLOADS],
                         ids=[case[0] for case in BAD_DOWNLOADS])
def test_bad_download_rejected(server, sst2_zip, tmp_path, make_body, message):
    server.routes["/SST-2.zip"] = make_body(sst2_zip)
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match=message):
        ensure_dataset("glue_sst2", cache_dir=str(cache), url=server.url("/SST-2.zip"))
    _assert_failed_download_leaves_nothing(cache)


def test_http_error_names_both_options(server, tmp_path):
    with pytest.raises(DatasetError) as caught:
        ensure_dataset("glue_sst2", cache_dir=str(tmp_path / "cache"), url=server.url("/missing.zip"))
    message = str(caught.value)
    assert "HTTP Error 404" in message
    assert "TEXTXFER_DATA_MIRROR" in message
    assert "--data-mirror" in message
    _assert_failed_download_leaves_nothing(tmp_path / "cache")


def test_unreachable_server_names_both_options(tmp_path):
    # A loopback port that was bound and released, so the connection is refused.
    probe = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()
    with pytest.raises(DatasetError, match="TEXTXFER_DATA_MIRROR.*--data-mirror"):
        ensure_dataset("glue_sst2", cache_dir=str(tmp_path), url=f"http://127.0.0.1:{port}/SST-2.zip")


def test_module_does_not_import_tensorflow():
    code = "import sys, pipeline.datasets; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.strip() == "False"


def test_mirror_empty_file(tmp_path):
    _write_mirror(tmp_path, "", "label\tcontent\n1\tfun\n")
    with pytest.raises(DatasetError, match="train.tsv is empty"):
        ensure_dataset("glue_sst2", mirror=str(tmp_path))
