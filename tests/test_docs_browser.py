"""/docs in headless Debian chromium with no network: Swagger UI renders the operations from the
package's own assets.  The screenshot is kept as a test artifact (tests/support/browser.py says where)."""

from __future__ import annotations

import pytest

from tests.support.browser import artifact_dir, browser, foreign_resources, wait_for
from tests.support.http_app import serve_process

pytestmark = pytest.mark.slow


@pytest.fixture
def served(tmp_path):
    """`pki serve` on a SQLite store: the page does not depend on the database (not parametrized, so that
    nothing skips under CI=true)."""
    from pki.config import Settings
    from pki.services.setup import initialise

    settings = Settings.load(home=tmp_path / "home", instance="default", environ={})
    initialise(settings)
    with serve_process(settings, tmp_path / "serve.log") as url:
        yield url


def test_docs_render_offline_in_chromium(served):
    with browser() as driver:
        driver.get(served + "/docs")
        operations = wait_for(driver, "css selector", ".opblock", count=20)
        paths = {e.text for e in driver.find_elements("css selector", ".opblock-summary-path")}
        shot = artifact_dir() / "docs-swagger-ui.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        assert len(operations) >= 20
        assert any(p.startswith("/v1/cas") for p in paths), sorted(paths)[:10]
        assert "/v1/checks" in {p.replace("\u200b", "") for p in paths}
        # The padlock of the declared security scheme: Swagger UI read securitySchemes.
        assert driver.find_elements("css selector", ".btn.authorize")
        assert foreign_resources(driver) == []


def test_redoc_renders_offline_in_chromium(served):
    with browser() as driver:
        driver.get(served + "/redoc")
        wait_for(driver, "css selector", "[id^='operation/']", count=20)
        driver.save_screenshot(str(artifact_dir() / "docs-redoc.png"))
        assert driver.find_elements("css selector", "[id='operation/checks_run']")
        assert "Something went wrong" not in driver.find_element("tag name", "body").text
        # ReDoc's footer reaches for its logo on its CDN; the page's Content-Security-Policy blocks it
        # before any request leaves (the browser logs the block).  Nothing else comes from outside.
        foreign = foreign_resources(driver)
        assert set(foreign) <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}, foreign
        if foreign:
            log = " ".join(entry["message"] for entry in driver.get_log("browser"))
            assert "Content Security Policy" in log and "has been blocked" in log
