"""Browser tests of the web page: Playwright for Python driving the system's Chromium
(``/usr/bin/chromium``, installed by ``scripts/ensure-tools.sh`` through apt-get; Playwright's own
browser download is never used) against the real application under uvicorn, on one patient
analysed through the service's real paths (``followup.testing.webpage``).

Every test here is marked ``integration`` (a real browser process and server) and ``slow`` (it
runs in ``scripts/run-tests.sh``'s side process). Where Chromium or Playwright is missing the tests
skip, saying so loudly."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.slow)


def chromium_path() -> str | None:
    explicit = os.environ.get("FOLLOWUP_TEST_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium launched by Playwright (one for the session)."""
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium NOT installed (apt-get install chromium; scripts/ensure-tools.sh): "
                    "the web page's browser tests did NOT run")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright NOT installed (pip install -e '.[dev]'): the web page's browser tests did NOT run")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()
