"""The console in a real browser: Debian's chromium, headless, driven by Selenium through Debian's
chromium-driver, against a real ``pki serve`` on loopback (no other network: the browser resolves no
other host).

Screenshots of the overview and of a device page are kept in tests/support/console_browser.ARTIFACTS
(``test-artifacts/console/`` unless ``PKI_TEST_ARTIFACTS`` says otherwise).
"""

from __future__ import annotations

import httpx
import pytest

from pki.services import audit, crls, devices, managed
from tests.support.console_browser import chromium, screenshot
from tests.support.http_app import csr_pem, make_user, serve_process
from tests.support.lint import assert_lint_clean

pytestmark = pytest.mark.slow


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: the browser checks the pages, the store is covered by tests/test_console.py."""
    from pki.store import sqlite_url

    return sqlite_url(tmp_path / "pki.sqlite")


def _populate(ctx):
    """Two CAs and a small fleet, so that the overview has something to show."""
    line = managed.create_ca(ctx, name="Factory Line A")
    field = managed.create_ca(ctx, name="Field Service")
    issued = [devices.issue_device(ctx, ca=line.sn, csr=csr_pem(f"meter-{i:03d}").encode()) for i in range(6)]
    issued += [devices.issue_device(ctx, ca=field.sn, csr=csr_pem(f"gateway-{i}").encode(), days=20)
               for i in range(2)]
    for item in issued:
        assert_lint_clean(item.certificate_pem.encode())
    devices.deactivate_device(ctx, ca=line.sn, sn=issued[4].device.sn)
    devices.revoke_device(ctx, ca=line.sn, sn=issued[5].device.sn, reason="superseded")
    crls.current_crl(ctx, ca=line.sn)
    crls.current_crl(ctx, ca=field.sn)
    return line, [i.device for i in issued]


def _sign_in(driver, url, user):
    from selenium.webdriver.common.by import By

    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/console")
    assert "/console/sign-in" in driver.current_url
    driver.find_element(By.ID, "access_key_id").send_keys(user.access_key_id)
    driver.find_element(By.ID, "secret").send_keys(user.access_key_secret)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element((By.ID, "principal"), user.name))


def test_sign_in_find_revoke_and_see_it_on_the_crl_and_the_audit_log(ctx, settings, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    ca, fleet = _populate(ctx)
    admin = make_user(ctx, "operator", "PkiAdministratorAccess")
    reader = make_user(ctx, "auditor", "PkiReadOnlyAccess")
    target = fleet[2]
    with serve_process(settings, tmp_path / "serve.log") as url, chromium() as driver:
        _sign_in(driver, url, admin)
        assert driver.find_element(By.TAG_NAME, "h1").text == "Overview"
        assert driver.find_element(By.ID, "expiring-total").text == "2"
        screenshot(driver, "overview")

        # Find the device by its client id, from the overview's search box.
        box = driver.find_element(By.ID, "q")
        box.send_keys(target.client_id)
        box.submit()
        WebDriverWait(driver, 10).until(EC.url_contains("/console/devices?q="))
        driver.find_element(By.LINK_TEXT, target.client_id).click()
        WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element((By.ID, "device-sn"), target.sn))
        screenshot(driver, "device")

        # Revoke it with a reason; the script asks in a dialog.
        for option in driver.find_elements(By.CSS_SELECTOR, "#reason option"):
            if option.text == "keyCompromise":
                option.click()
        driver.find_element(By.ID, "revoke").click()
        WebDriverWait(driver, 10).until(EC.alert_is_present())
        driver.switch_to.alert.accept()
        WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element((By.ID, "device-status"), "REVOKED"))
        assert "keyCompromise" in driver.find_element(By.ID, "device-status").text
        assert devices.show_device(ctx, ca=ca.sn, sn=target.sn).status == "REVOKED"
        screenshot(driver, "device-revoked")

        # On the CRL page, and on the CRL brokers fetch.
        driver.find_element(By.ID, "crl-link").click()
        WebDriverWait(driver, 10).until(EC.presence_of_element_located((By.ID, "crl-entries")))
        assert target.sn in driver.find_element(By.ID, "crl-entries").text
        assert "keyCompromise" in driver.find_element(By.ID, "crl-entries").text

        # On the audit log, as this principal's revocation.
        driver.get(url + "/console/audit?action=mq:RevokeDeviceCertificate")
        rows = driver.find_element(By.ID, "audit").text
        assert f"{ca.sn}/{target.sn}" in rows and "operator" in rows
        driver.find_element(By.ID, "verify").click()
        WebDriverWait(driver, 10).until(EC.presence_of_element_located((By.ID, "head-hash")))
        head = driver.find_element(By.ID, "head-hash").text
        assert len(head) == 64 and audit.verify(ctx).ok

        # A request without the CSRF token, with the session cookie, is refused.
        cookie = {"pki_console": driver.get_cookie("pki_console")["value"]}
        other = fleet[0]
        answer = httpx.post(f"{url}/console/cas/{ca.sn}/devices/{other.sn}/revoke", cookies=cookie,
                            data={"confirm": "yes", "reason": "keyCompromise"})
        assert answer.status_code == 403
        assert devices.show_device(ctx, ca=ca.sn, sn=other.sn).status == "ACTIVE"

        # Sign out; the read-only user sees no revoke button, and a forged POST gets 403.
        driver.get(url + "/console")
        driver.find_element(By.CSS_SELECTOR, "form.signout button").click()
        WebDriverWait(driver, 10).until(EC.url_contains("/console/sign-in"))
        _sign_in(driver, url, reader)
        driver.get(f"{url}/console/cas/{ca.sn}/devices/{other.sn}")
        assert driver.find_element(By.ID, "device-sn").text == other.sn
        assert driver.find_elements(By.ID, "revoke") == []
        assert driver.find_elements(By.CSS_SELECTOR, "form[action$='/revoke']") == []
        csrf = driver.find_element(By.CSS_SELECTOR, "form.signout input[name=csrf]").get_attribute("value")
        cookie = {"pki_console": driver.get_cookie("pki_console")["value"]}
        answer = httpx.post(f"{url}/console/cas/{ca.sn}/devices/{other.sn}/revoke", cookies=cookie,
                            data={"csrf": csrf, "confirm": "yes", "reason": "keyCompromise"})
        assert answer.status_code == 403 and "access_denied" in answer.text
        assert devices.show_device(ctx, ca=ca.sn, sn=other.sn).status == "ACTIVE"


def test_every_page_works_without_javascript(ctx, settings, tmp_path):
    """With scripting off, a change goes through the confirmation page instead of a dialog."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    ca, fleet = _populate(ctx)
    admin = make_user(ctx, "operator", "PkiAdministratorAccess")
    target = fleet[1]
    with serve_process(settings, tmp_path / "serve.log") as url, chromium(javascript=False) as driver:
        _sign_in(driver, url, admin)
        driver.get(f"{url}/console/cas/{ca.sn}/devices/{target.sn}")
        driver.find_element(By.CSS_SELECTOR, "form[action$='/deactivate'] button").click()
        WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Confirm: deactivate"))
        driver.find_element(By.CSS_SELECTOR, "main form button").click()
        WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element((By.ID, "device-status"), "INACTIVE"))
        # Keyboard: the skip link is the first stop and leads to the content.
        from selenium.webdriver.common.keys import Keys

        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        assert driver.switch_to.active_element.get_attribute("class") == "skip"
    assert devices.show_device(ctx, ca=ca.sn, sn=target.sn).status == "INACTIVE"
