"""Headless Debian Chromium through Selenium, as the kiosk tests drive it.

Import after `pytest.importorskip("selenium")`; mark the module with `NEEDS_CHROMIUM`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
NEEDS_CHROMIUM = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (ci/kiosk-deps.sh)")

# Quiet and deterministic: no network of its own, no GPU, no sandbox (CI runs as root).
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage")


def headless_chromium(profile: Path, size: tuple[int, int], *flags: str) -> Iterator[webdriver.Chrome]:
    """A driver with its own profile folder and window size, quit when the generator closes."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*_FLAGS, f"--window-size={size[0]},{size[1]}", *flags,
                 f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
