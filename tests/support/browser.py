"""Headless Debian chromium, driven by Selenium, with no network beyond the loopback address.

    from tests.support.browser import browser, artifact_dir

    with browser() as driver:
        driver.get(url)                 # an http://127.0.0.1:PORT/... URL
        wait_for(driver, "css selector", ".opblock")
        driver.save_screenshot(str(artifact_dir() / "page.png"))
        assert foreign_resources(driver) == []  # every resource came from 127.0.0.1

- The browser is /usr/bin/chromium with /usr/bin/chromedriver (Debian's packages ``chromium`` and
  ``chromium-driver``; scripts/test.sh installs them under CI=true).  Without them the test skips, and
  fails under CI=true (:func:`tests.support.skip_or_fail`).  Selenium Manager is never asked to
  download anything: both paths are given.
- No network: every host name resolves to nothing but 127.0.0.1 and localhost
  (``--host-resolver-rules``), so a page that reaches for a CDN shows it (and :func:`foreign_resources`
  says so from the browser's own resource timing).
- Screenshots and other artifacts go to :func:`artifact_dir`: ``$PKI_TEST_ARTIFACTS`` if set, else
  ``tmp/artifacts`` at the repository root (ignored by git), kept after the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from tests.support import skip_or_fail

__all__ = ["CHROMIUM", "CHROMEDRIVER", "browser", "wait_for", "foreign_resources", "artifact_dir"]

CHROMIUM = os.environ.get("PKI_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PKI_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
_ROOT = Path(__file__).resolve().parent.parent.parent


def artifact_dir() -> Path:
    """Where tests keep what a person may want to look at after the run (screenshots)."""
    path = Path(os.environ.get("PKI_TEST_ARTIFACTS") or _ROOT / "tmp" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def browser(*, width: int = 1280, height: int = 1600):
    """A headless chromium WebDriver with no network but the loopback; quit on exit."""
    if not (Path(CHROMIUM).exists() and (Path(CHROMEDRIVER).exists() or shutil.which("chromedriver"))):
        skip_or_fail(f"chromium ({CHROMIUM}) and chromedriver ({CHROMEDRIVER}) are not installed")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail("selenium is not installed (the test extra)")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--metrics-recording-only",
                f"--window-size={width},{height}",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"):
        options.add_argument(arg)
    service = Service(executable_path=CHROMEDRIVER if Path(CHROMEDRIVER).exists() else shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()


def wait_for(driver, by: str, selector: str, *, timeout: float = 60, count: int = 1):
    """The elements matching ``selector`` once at least ``count`` are there (a bound, not a timing)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        lambda d: (found := d.find_elements(by, selector)) and len(found) >= count and found)


def foreign_resources(driver) -> list[str]:
    """The resources the page loaded from anywhere but the loopback address (empty: none)."""
    names = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".concat([location.href]);")
    return [n for n in names if not n.startswith(("http://127.0.0.1", "http://localhost", "data:", "blob:"))]
