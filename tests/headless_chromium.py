"""Open a local HTML file in headless Chromium: a PNG screenshot, the rendered DOM and console output.

`make test` installs Debian's `chromium` package when /usr/bin/chromium is missing.
"""

import dataclasses
import os
import re
import subprocess
import tempfile
from typing import List

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
# Headless, offline and quiet: without the background-networking, component-update and sync
# switches Chromium contacts outside hosts on start.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
]
# With --enable-logging=stderr, each console message of the page is one line like
# `[...:INFO:CONSOLE:12] "Uncaught ReferenceError: ...", source: file:///... (12)`.
_CONSOLE_LINE = re.compile(r":CONSOLE(?:\(\d+\)|:\d+)\] (.*)$")


@dataclasses.dataclass
class PageCapture:
    """Screenshot path, rendered DOM and console messages of one page."""

    screenshot: str
    dom: str
    console: List[str]


def _run_chromium(arguments: List[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with exit code {completed.returncode}:\n"
                           f"{completed.stderr[-3000:]}")
    return completed


def capture_page(html_path: str, screenshot_path: str, width: int = 1200, height: int = 2400,
                 timeout: float = 120) -> PageCapture:
    """Screenshot `html_path` into `screenshot_path` and return it with the DOM and console lines."""
    url = "file://" + os.path.abspath(html_path)
    shot = _run_chromium(["--enable-logging=stderr", "--v=0", f"--window-size={width},{height}",
                          f"--screenshot={screenshot_path}", url], timeout)
    console = [match.group(1) for line in shot.stderr.splitlines() if (match := _CONSOLE_LINE.search(line))]
    dump = _run_chromium(["--enable-logging=stderr", "--v=0", "--dump-dom", url], timeout)
    console += [match.group(1) for line in dump.stderr.splitlines() if (match := _CONSOLE_LINE.search(line))]
    return PageCapture(screenshot=screenshot_path, dom=dump.stdout, console=console)


def color_share(image, color, tolerance=12) -> float:
    """Return the share of `image` pixels within `tolerance` of the RGB `color` in every channel."""
    pixels = np.asarray(image, dtype=np.int16)
    close = np.all(np.abs(pixels - np.array(color, dtype=np.int16)) <= tolerance, axis=-1)
    return float(close.mean())


def assert_report_renders(html_path: str, screenshot_path: str, expect_confusion: bool = True):
    """Open `html_path` in headless Chromium; check the console, the DOM and the screenshot."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing; `make test-deps` installs Debian's chromium")
    capture = capture_page(html_path, screenshot_path)
    assert capture.console == []
    dom = capture.dom
    assert len(re.findall(r'<svg class="chart', dom)) >= 3
    assert re.search(r'<polyline class="series"[^>]* points="[\d.]+,[\d.]+ [\d.]+,[\d.]+', dom)
    assert re.search(r'<table class="checks">.*?<td>-?\d+\.\d{4}</td>', dom, re.DOTALL)
    assert re.search(r'<table class="slices">.*?<td>\d+(\.\d{4})?</td>', dom, re.DOTALL)
    if expect_confusion:
        assert re.search(r'<table class="confusion">.*?<td style="background[^>]*>\d+</td>', dom, re.DOTALL)

    image = Image.open(screenshot_path).convert("RGB")
    assert image.size == (1200, 2400)
    white = color_share(image, (255, 255, 255), tolerance=0)
    assert white < 0.97, f"the screenshot is {white:.1%} white"
    # The loss curve (#2680c2) and the shaded first phase (#f0f4f8) are drawn.
    assert color_share(image, (0x26, 0x80, 0xc2), tolerance=20) > 0.0002
    assert color_share(image, (0xf0, 0xf4, 0xf8), tolerance=2) > 0.005
    return capture, image
