"""Shared by the console tests: a signed-in TestClient, and headless Debian chromium through Selenium.

The browser is Debian's ``chromium`` driven by Debian's ``chromium-driver`` (no download, no network:
Selenium Manager is never asked, the driver path is given).  Screenshots go to
:data:`ARTIFACTS` (``PKI_TEST_ARTIFACTS``, default ``test-artifacts/console`` under the repository), which
CI keeps as the test's artifacts.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

from tests.support import skip_or_fail

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = Path(os.environ.get("PKI_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "console"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def form_token(html: str) -> str:
    """The first CSRF token of a page's forms."""
    match = _CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def sign_in(tc, access_key_id: str, secret: str, *, next_path: str = "/console"):
    """Sign ``tc`` (a TestClient) in through the form, as a browser would; returns the answer."""
    page = tc.get("/console/sign-in")
    return tc.post("/console/sign-in", data={"csrf": form_token(page.text), "access_key_id": access_key_id,
                                             "secret": secret, "next": next_path}, follow_redirects=False)


def console_client(app, user, *, base_url: str = "http://testserver"):
    """A TestClient signed in to the console as ``user`` (from ``make_user``)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    tc = TestClient(app, base_url=base_url, raise_server_exceptions=False)
    answer = sign_in(tc, user.access_key_id, user.access_key_secret)
    assert answer.status_code == 303, answer.text
    return tc


def _first(paths) -> str | None:
    for path in paths:
        if Path(path).exists():
            return path
    return None


@contextlib.contextmanager
def chromium(*, javascript: bool = True):
    """A headless chromium WebDriver (scripting off with ``javascript=False``), or skip (fail under CI=true) when chromium or selenium is missing."""
    binary = _first(CHROMIUM) or shutil.which("chromium")
    driver_path = _first(CHROMEDRIVER) or shutil.which("chromedriver")
    if not binary or not driver_path:
        skip_or_fail("Debian's chromium and chromium-driver are not installed")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail("selenium is not installed (the test extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.implicitly_wait(5)  # a bound on waiting for an element, not a timed assertion
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver, name: str) -> Path:
    """Save the page as ``ARTIFACTS/name.png``; the whole page height, so the artifact shows everything."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(900, min(int(height) + 40, 4000)))
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
