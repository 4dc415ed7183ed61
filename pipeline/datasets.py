"""Named public datasets: an offline mirror, or a verified download into a local cache.

`ensure_dataset(name)` returns a local directory with one file per split (`train.tsv`,
`dev.tsv`). It reads an offline mirror when one is given, or else downloads the published
archive once into a cache. Either way it checks each split's header and row count before
returning. This module stays free of TensorFlow imports so that the CLI loads fast.
"""

import dataclasses
import http.client
import os
import shutil
import tempfile
import time
import urllib.request
import zipfile

from absl import logging

MIRROR_ENV = "TEXTXFER_DATA_MIRROR"
CACHE_ENV = "TEXTXFER_CACHE_DIR"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "textxfer")
# urllib applies this timeout to the connection and to each read.
CONNECT_TIMEOUT_S = 10.0
_CHUNK_BYTES = 1 << 20
_PROGRESS_INTERVAL_S = 5.0


class DatasetError(RuntimeError):
    """A dataset that is missing, cannot be downloaded or fails its checks."""


@dataclasses.dataclass(frozen=True)
class SplitSpec:
    """One split: where it lies in the archive and in a mirror, and what it must contain."""

    file_name: str  # Name in the returned directory, and in the mirror's folder.
    archive_member: str  # Path inside the downloaded zip archive.
    text_headers: tuple[str, ...]  # Accepted names of the text column, which differ by file.
    label_header: str
    expected_rows: int  # Data rows, not counting the header.


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: its archive URL, the mirror folder name and the splits it provides."""

    name: str
    url: str
    mirror_folder: str
    splits: tuple[SplitSpec, ...]
    delimiter: str = "\t"


# GLUE SST-2: the archive's files have the header `sentence\tlabel`. The archive's
# SST-2/test.tsv (`index\tsentence`, no labels) is not used. The offline mirror keeps the
# label first and names the dev text column `content`.
GLUE_SST2 = DatasetSpec(
    name="glue_sst2",
    url="https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
    mirror_folder="sst2",
    splits=(
        SplitSpec("train.tsv", "SST-2/train.tsv", ("sentence", "content"), "label", 67_349),
        SplitSpec("dev.tsv", "SST-2/dev.tsv", ("sentence", "content"), "label", 872),
    ),
)

DATASETS = {spec.name: spec for spec in (GLUE_SST2,)}


def get_dataset_spec(name: str) -> DatasetSpec:
    """Return the registered spec of `name`, raising ValueError that lists the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}") from None


def check_split_file(path: str, split: SplitSpec, delimiter: str = "\t") -> None:
    """Check a split file's header and data row count, raising DatasetError on a mismatch.

    Every line must be UTF-8, and every data row must have as many fields as the header
    and a non-empty label.
    """
    rows = 0
    header: list[str] | None = None
    label_index = 0
    with open(path, "rb") as file:
        for line_number, raw_line in enumerate(file, start=1):
            try:
                line = raw_line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise DatasetError(f"{path}:{line_number}: invalid UTF-8 ({error.reason}); "
                                   "the file is damaged") from error
            if header is None:
                header = line.removeprefix("\ufeff").split(delimiter)
                label_index = _check_header(path, header, split)
                continue
            if not line:
                continue
            fields = line.split(delimiter)
            if len(fields) != len(header) or not fields[label_index].strip():
                raise DatasetError(f"{path}:{line_number}: expected {len(header)} fields with a label, "
                                   f"found {len(fields)} fields {line[:80]!r}; the file is damaged")
            rows += 1
    if header is None:
        raise DatasetError(f"{path} is empty; expected a header and {split.expected_rows} rows")
    if rows != split.expected_rows:
        raise DatasetError(f"{path}: found {rows} data rows, expected {split.expected_rows}; "
                           "the file is truncated or is another version of the dataset")


def _check_header(path: str, header: list[str], split: SplitSpec) -> int:
    """Return the label column's index, or raise DatasetError if a column is missing."""
    text_columns = [name for name in split.text_headers if name in header]
    if split.label_header not in header or not text_columns:
        raise DatasetError(
            f"{path}: header {header!r} lacks a {split.label_header!r} column or a text column "
            f"named one of {list(split.text_headers)}; the file is not a valid {split.file_name}")
    return header.index(split.label_header)


def _check_directory(directory: str, spec: DatasetSpec) -> None:
    for split in spec.splits:
        path = os.path.join(directory, split.file_name)
        if not os.path.isfile(path):
            raise DatasetError(f"{path} not found; expected the {spec.name} split file {split.file_name}")
        check_split_file(path, split, spec.delimiter)


def _missing_data_message(spec: DatasetSpec, reason: str) -> str:
    files = ", ".join(f"{spec.mirror_folder}/{split.file_name}" for split in spec.splits)
    return (f"dataset {spec.name!r} is not available: {reason}. Point an offline mirror at a directory "
            f"that contains {files}, either with the environment variable {MIRROR_ENV} or with the "
            f"command-line flag --data-mirror, or allow access to {spec.url}")


def _download(url: str, destination: str) -> None:
    """Stream `url` into the file `destination`, logging progress, and check its length."""
    logging.info("Downloading %s", url)
    start = last_log = time.monotonic()
    received = 0
    with urllib.request.urlopen(url, timeout=CONNECT_TIMEOUT_S) as response, open(destination, "wb") as file:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        while True:
            try:
                chunk = response.read(_CHUNK_BYTES)
            except http.client.IncompleteRead as error:
                raise DatasetError(f"download of {url} is incomplete: the server closed the connection "
                                   f"after {received + len(error.partial)} bytes; retry the download") from error
            if not chunk:
                break
            file.write(chunk)
            received += len(chunk)
            now = time.monotonic()
            if now - last_log >= _PROGRESS_INTERVAL_S:
                last_log = now
                total = f" of {expected / 1e6:.1f}" if expected else ""
                logging.info("Downloaded %.1f%s MB of %s", received / 1e6, total, url)
    if expected is not None and received != expected:
        raise DatasetError(f"download of {url} is incomplete: received {received} of {expected} bytes; "
                           "retry the download")
    logging.info("Downloaded %d bytes from %s in %.1f s", received, url, time.monotonic() - start)


def _extract(archive: str, url: str, spec: DatasetSpec, directory: str) -> None:
    """Copy the split files out of the zip `archive` into `directory`."""
    try:
        with zipfile.ZipFile(archive) as zip_file:
            members = set(zip_file.namelist())
            missing = [split.archive_member for split in spec.splits if split.archive_member not in members]
            if missing:
                raise DatasetError(f"archive from {url} lacks {missing}; it contains {sorted(members)[:10]}")
            for split in spec.splits:
                with zip_file.open(split.archive_member) as source, \
                        open(os.path.join(directory, split.file_name), "wb") as target:
                    shutil.copyfileobj(source, target)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise DatasetError(f"archive from {url} is not a valid zip file ({error}); "
                           "the download is corrupt or truncated, so retry it") from error


def _download_to_cache(spec: DatasetSpec, url: str, target: str) -> None:
    """Download, extract and check the dataset in a temporary folder, then move it to `target`.

    A failure at any step removes the temporary folder and leaves `target` untouched.
    """
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{spec.name}-", dir=parent)
    try:
        archive = os.path.join(staging, "archive.zip")
        try:
            _download(url, archive)
        except (OSError, http.client.HTTPException) as error:
            raise DatasetError(_missing_data_message(spec, f"download of {url} failed ({error})")) from error
        extracted = os.path.join(staging, spec.name)
        os.mkdir(extracted)
        _extract(archive, url, spec, extracted)
        _check_directory(extracted, spec)
        if os.path.isdir(target):
            shutil.rmtree(target)
        try:
            os.rename(extracted, target)
        except OSError:
            # Another process may have cached the dataset meanwhile; keep its copy if valid.
            _check_directory(target, spec)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logging.info("Cached dataset %s in %s", spec.name, target)


def ensure_dataset(name: str, *, mirror: str | None = None, cache_dir: str | None = None,
                   url: str | None = None) -> str:
    """Return a local directory with the split files of dataset `name`, downloading if needed.

    The mirror (`mirror`, else the environment variable TEXTXFER_DATA_MIRROR) takes
    precedence and must contain `<mirror>/<folder>/<split file>`, for example
    `sst2/train.tsv`. Without a mirror, the cache (`cache_dir`, else TEXTXFER_CACHE_DIR,
    else ~/.cache/textxfer) is returned if it passes the checks. Otherwise the archive is
    downloaded from `url` (default: the dataset's published URL). Raises DatasetError with
    the path and the fix when the data is missing or fails its checks.
    """
    spec = get_dataset_spec(name)
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    if mirror:
        directory = os.path.join(os.path.abspath(os.path.expanduser(mirror)), spec.mirror_folder)
        if not os.path.isdir(directory):
            raise DatasetError(_missing_data_message(spec, f"mirror folder {directory} not found"))
        _check_directory(directory, spec)
        logging.info("Using dataset %s from the offline mirror %s", spec.name, directory)
        return directory

    cache_root = os.path.abspath(os.path.expanduser(cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR))
    target = os.path.join(cache_root, spec.name)
    if os.path.isdir(target):
        try:
            _check_directory(target, spec)
        except DatasetError as error:
            logging.warning("Cached dataset %s is invalid, downloading it again: %s", spec.name, error)
        else:
            logging.info("Using cached dataset %s in %s", spec.name, target)
            return target
    _download_to_cache(spec, url or spec.url, target)
    return target
