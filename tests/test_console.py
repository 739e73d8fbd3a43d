"""The operator console (/console) through a TestClient: sign-in and sessions, CSRF, the API's policies,
and each page's content.  The browser test is tests/test_console_browser.py."""

from __future__ import annotations

import datetime as _dt
import re

import pytest
from cryptography import x509

from pki.ids import format_serial
from pki.services import audit, console, crls, devices, managed, secrets, users
from pki.services import console_sessions as cs
from pki.services.dataplane import blocklist, identities, permissions
from tests.support import snapshot
from tests.support.console_browser import console_client, form_token, sign_in
from tests.support.http_app import app_for, csr_pem, make_user, plain_client
from tests.support.lint import assert_lint_clean
from tests.support.openssl import require_openssl, verify as openssl_verify


def _unchanged_but_audit(ctx, before):
    """The store as ``before`` except the audit log (a refusal is recorded) and session bookkeeping."""
    skip = {"audit_record", "audit_head", "console_session", "console_throttle"}
    after = snapshot(ctx)
    assert {k: v for k, v in after.items() if k not in skip} == {k: v for k, v in before.items() if k not in skip}


@pytest.fixture
def fleet(ctx, tmp_path):
    """A managed CA and three devices; each certificate passes pkilint and openssl verify."""
    require_openssl()
    ca = managed.create_ca(ctx, name="Factory Root")
    issued = [devices.issue_device(ctx, ca=ca.sn, csr=csr_pem(f"dev-{i}").encode()) for i in range(3)]
    (tmp_path / "ca.pem").write_text(issued[0].chain_pem or console.ca_pem(ctx, ca.sn))
    for i, item in enumerate(issued):
        assert_lint_clean(item.certificate_pem.encode())
        (tmp_path / f"dev-{i}.pem").write_text(item.certificate_pem)
        ok, out = openssl_verify(tmp_path / "ca.pem", tmp_path / f"dev-{i}.pem", purpose="sslclient")
        assert ok, out
    return ca, [i.device for i in issued]


@pytest.fixture
def app(ctx):
    return app_for(ctx)


@pytest.fixture
def admin(ctx):
    return make_user(ctx, "admin", "PkiAdministratorAccess")


@pytest.fixture
def reader(ctx):
    return make_user(ctx, "reader", "PkiReadOnlyAccess")


def _csrf(tc) -> str:
    return form_token(tc.get("/console").text)


# -- sign-in, sessions ---------------------------------------------------------------------------


def test_pages_need_a_session(app, fleet):
    tc = plain_client(app)
    answer = tc.get("/console/devices?q=dev-1", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/sign-in?next=%2Fconsole%2Fdevices%3Fq%3Ddev-1"
    assert tc.post(f"/console/cas/{fleet[0].sn}/deactivate", data={"confirm": "yes"}).status_code == 401


def test_sign_in_sets_a_strict_http_only_cookie_and_is_audited(ctx, app, admin):
    tc = plain_client(app)
    answer = sign_in(tc, admin.access_key_id, admin.access_key_secret, next_path="/console/cas")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/cas"
    cookie = [v for k, v in answer.headers.multi_items() if k == "set-cookie" and v.startswith("pki_console=")][0]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    assert tc.get("/console").status_code == 200
    record = audit.list_records(ctx, action=cs.SIGN_IN_ACTION).items[-1]
    assert record.principal == "admin" and record.result == "success"
    assert admin.access_key_secret not in str(record.details)


def test_the_cookie_is_secure_over_tls(app, admin):
    from fastapi.testclient import TestClient

    tc = TestClient(app, base_url="https://testserver")
    answer = sign_in(tc, admin.access_key_id, admin.access_key_secret)
    cookie = [v for k, v in answer.headers.multi_items() if k == "set-cookie" and v.startswith("pki_console=")][0]
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_a_wrong_secret_is_refused_audited_and_throttled(ctx, app, admin):
    tc = plain_client(app)
    for _ in range(cs.MAX_FAILURES):
        answer = sign_in(tc, admin.access_key_id, "not-the-secret")
        assert answer.status_code == 401 and "console_signin_failed" not in tc.cookies.get("pki_console", "")
        assert "sign-in refused" in answer.text
    assert tc.cookies.get("pki_console") is None
    failed = audit.list_records(ctx, action=cs.SIGN_IN_ACTION, result="failed")
    assert len(failed.items) == cs.MAX_FAILURES
    assert all(r.details["access_key_id"] == admin.access_key_id for r in failed.items)
    # Throttled now, even with the right secret: the window has to pass.
    answer = sign_in(tc, admin.access_key_id, admin.access_key_secret)
    assert answer.status_code == 429 and int(answer.headers["retry-after"]) > 0
    assert audit.list_records(ctx, action=cs.SIGN_IN_ACTION, result="denied").items[-1].error_code == "rate_limited"
    ctx.clock.advance(cs.FAILURE_WINDOW + _dt.timedelta(seconds=1))
    assert sign_in(tc, admin.access_key_id, admin.access_key_secret).status_code == 303


def test_unknown_and_disabled_keys_get_the_same_refusal(ctx, app, admin):
    tc = plain_client(app)
    unknown = sign_in(tc, "AK" + "0" * 20, "whatever")
    users.disable_access_key(ctx, admin.access_key_id)
    disabled = sign_in(tc, admin.access_key_id, admin.access_key_secret)
    assert unknown.status_code == disabled.status_code == 401
    assert re.search(r'id="error">([^<]*)', unknown.text).group(1) == re.search(r'id="error">([^<]*)',
                                                                                 disabled.text).group(1)


def test_sign_in_without_its_form_token_is_refused_and_changes_nothing(ctx, app, admin):
    tc = plain_client(app)
    before = snapshot(ctx)
    answer = tc.post("/console/sign-in", data={"access_key_id": admin.access_key_id,
                                               "secret": admin.access_key_secret})
    assert answer.status_code == 403 and "console_csrf_invalid" not in answer.headers.get("set-cookie", "")
    assert snapshot(ctx) == before


def test_sessions_end_when_idle_at_sign_out_and_when_the_key_is_disabled(ctx, app, admin):
    tc = console_client(app, admin)
    ctx.clock.advance(cs.IDLE_TIMEOUT - _dt.timedelta(minutes=1))
    assert tc.get("/console", follow_redirects=False).status_code == 200  # within the idle time: extended
    ctx.clock.advance(cs.IDLE_TIMEOUT - _dt.timedelta(minutes=1))
    assert tc.get("/console", follow_redirects=False).status_code == 200
    ctx.clock.advance(cs.IDLE_TIMEOUT + _dt.timedelta(seconds=1))
    assert tc.get("/console", follow_redirects=False).status_code == 303  # idle too long

    tc = console_client(app, admin)
    token = tc.cookies["pki_console"]
    assert tc.post("/console/sign-out", data={"csrf": _csrf(tc)}, follow_redirects=False).status_code == 303
    assert audit.list_records(ctx, action=cs.SIGN_OUT_ACTION).items[-1].principal == "admin"
    tc.cookies.set("pki_console", token, path="/console")  # the old cookie, kept by an attacker
    assert tc.get("/console", follow_redirects=False).status_code == 303

    tc = console_client(app, admin)
    users.disable_access_key(ctx, admin.access_key_id)
    assert tc.get("/console", follow_redirects=False).status_code == 303


def test_open_redirects_are_not_followed(app, admin):
    tc = plain_client(app)
    for target in ("https://evil.example/", "//evil.example/console", "/consolexyz/../x"):
        answer = sign_in(tc, admin.access_key_id, admin.access_key_secret, next_path=target)
        assert answer.headers["location"].startswith("/console")
        assert "evil" not in answer.headers["location"]


# -- CSRF and policies ---------------------------------------------------------------------------


def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(ctx, app, admin, fleet):
    ca, devs = fleet
    tc = console_client(app, admin)
    before = snapshot(ctx)
    url = f"/console/cas/{ca.sn}/devices/{devs[0].sn}/revoke"
    for data in ({"confirm": "yes", "reason": "keyCompromise"},
                 {"confirm": "yes", "reason": "keyCompromise", "csrf": "0" * 64}):
        answer = tc.post(url, data=data)
        assert answer.status_code == 403 and "console_csrf_invalid" in answer.text
    # Another session's token is no better.
    other = console_client(app, admin)
    assert tc.post(url, data={"confirm": "yes", "csrf": _csrf(other)}).status_code == 403
    _unchanged_but_audit(ctx, before)
    assert devices.show_device(ctx, ca=ca.sn, sn=devs[0].sn).status == "ACTIVE"


def test_a_read_only_user_sees_no_buttons_and_a_forged_post_is_403(ctx, app, reader, fleet):
    ca, devs = fleet
    tc = console_client(app, reader)
    page = tc.get(f"/console/cas/{ca.sn}/devices/{devs[0].sn}").text
    assert devs[0].client_id in page
    assert 'id="revoke"' not in page and "/revoke" not in page and "/deactivate" not in page
    assert "/deactivate" not in tc.get(f"/console/cas/{ca.sn}").text
    before = snapshot(ctx)
    answer = tc.post(f"/console/cas/{ca.sn}/devices/{devs[0].sn}/revoke",
                     data={"csrf": _csrf(tc), "confirm": "yes", "reason": "keyCompromise"})
    assert answer.status_code == 403 and "access_denied" in answer.text
    _unchanged_but_audit(ctx, before)
    denied = audit.list_records(ctx, result="denied").items[-1]
    assert denied.principal == "reader" and denied.action == "mq:RevokeDeviceCertificate"
    assert devices.show_device(ctx, ca=ca.sn, sn=devs[0].sn).status == "ACTIVE"


def test_a_user_without_audit_rights_is_refused_the_audit_page(app, reader):
    tc = console_client(app, reader)
    assert tc.get("/console/audit").status_code == 403


# -- pages ---------------------------------------------------------------------------------------


def test_revoke_asks_first_then_lists_the_device_on_the_crl_and_the_audit_log(ctx, app, admin, fleet, tmp_path):
    ca, devs = fleet
    tc = console_client(app, admin)
    url = f"/console/cas/{ca.sn}/devices/{devs[1].sn}/revoke"
    confirm = tc.post(url, data={"csrf": _csrf(tc), "reason": "keyCompromise"})
    assert confirm.status_code == 200 and "Yes, revoke" in confirm.text
    assert devices.show_device(ctx, ca=ca.sn, sn=devs[1].sn).status == "ACTIVE"  # asked, not done
    done = tc.post(url, data={"csrf": _csrf(tc), "reason": "keyCompromise", "confirm": "yes"})
    assert done.status_code == 200 and "REVOKED" in done.text
    shown = devices.show_device(ctx, ca=ca.sn, sn=devs[1].sn)
    assert shown.status == "REVOKED" and shown.revocation_reason == "keyCompromise"
    crl_page = tc.get(f"/console/cas/{ca.sn}/crl").text
    assert devs[1].sn in crl_page and "keyCompromise" in crl_page
    crl_pem = tc.get(f"/crl/{ca.sn}.pem").content
    crl = x509.load_pem_x509_crl(crl_pem)
    assert crl.get_revoked_certificate_by_serial_number(int(devs[1].sn, 16)) is not None
    (tmp_path / "crl.pem").write_bytes(crl_pem)
    (tmp_path / "leaf.pem").write_text(tc.get(f"/console/cas/{ca.sn}/devices/{devs[1].sn}/pem").text)
    (tmp_path / "ca.pem").write_text(tc.get(f"/console/cas/{ca.sn}/pem").text)
    ok, out = openssl_verify(tmp_path / "ca.pem", tmp_path / "leaf.pem", crlfile=tmp_path / "crl.pem")
    assert not ok and "revoked" in out
    log = tc.get("/console/audit?action=mq:RevokeDeviceCertificate").text
    assert f"{ca.sn}/{devs[1].sn}" in log and "admin" in log


def test_ca_deactivate_and_activate(ctx, app, admin, fleet):
    ca, _ = fleet
    tc = console_client(app, admin)
    tc.post(f"/console/cas/{ca.sn}/deactivate", data={"csrf": _csrf(tc), "confirm": "yes"})
    assert "INACTIVE" in tc.get(f"/console/cas/{ca.sn}").text
    tc.post(f"/console/cas/{ca.sn}/activate", data={"csrf": _csrf(tc), "confirm": "yes"})
    page = tc.get(f"/console/cas/{ca.sn}").text
    assert re.search(r'id="ca-status">\s*<span class="status status-active">ACTIVE', page)


def test_search_by_client_id_serial_and_fingerprint(app, admin, fleet):
    ca, devs = fleet
    tc = console_client(app, admin)
    target = devs[2]
    for query in (target.client_id, target.sn.upper(), target.fingerprint_sha256, "SHA256:" + target.fingerprint_sha256):
        page = tc.get("/console/devices", params={"q": query}).text
        rows = re.findall(r'<tr><th scope="row"><a href="[^"]+">([^<]+)</a>', page)
        assert rows == [target.client_id], query
    assert "No device certificates" in tc.get("/console/devices", params={"q": "nobody"}).text


def test_keyset_paging_walks_every_device_once(app, admin, fleet):
    ca, devs = fleet
    tc = console_client(app, admin)
    seen, url = [], f"/console/cas/{ca.sn}/devices?limit=2"
    while url:
        page = tc.get(url).text
        seen += re.findall(r'<tr><th scope="row"><a href="[^"]+">([^<]+)</a>', page)
        nxt = re.search(r'rel="next" href="\?([^"]+)"', page)
        url = f"/console/cas/{ca.sn}/devices?" + nxt.group(1).replace("&amp;", "&") if nxt else None
    assert seen == [d.client_id for d in devs]


def test_a_bad_cursor_or_serial_is_a_400_page_and_changes_nothing(ctx, app, admin, fleet):
    ca, _ = fleet
    tc = console_client(app, admin)
    before = snapshot(ctx)
    assert tc.get("/console/devices?cursor=garbage!").status_code == 400
    assert tc.get(f"/console/cas/{ca.sn}/devices/zz-not-hex").status_code == 400
    assert tc.get(f"/console/cas/{ca.sn}/devices/abcdef").status_code == 404
    answer = tc.post(f"/console/cas/{ca.sn}/devices/zz/revoke", data={"csrf": _csrf(tc), "confirm": "yes"})
    assert answer.status_code == 400
    _unchanged_but_audit(ctx, before)


def test_overview_counts_expiry_and_crl_age(ctx, app, admin, fleet):
    ca, devs = fleet
    devices.revoke_device(ctx, ca=ca.sn, sn=devs[0].sn, reason="superseded")
    devices.issue_device(ctx, ca=ca.sn, csr=csr_pem("short").encode(), days=10)
    crls.current_crl(ctx, ca=ca.sn)  # a managed CA signs its CRL on first use
    ctx.clock.advance(_dt.timedelta(hours=3))
    page = console_client(app, admin).get("/console").text
    row = re.search(r"<tr>\s*<th scope=\"row\"><a href=\"/console/cas/" + ca.sn + r".*?</tr>", page, re.S).group(0)
    cells = re.findall(r'<td class="num[^"]*">(?:<a [^>]+>)?(\d+)', row)
    assert cells == ["3", "0", "1", "1"]  # active, inactive, revoked, expiring within 30 days
    assert "3 h" in row
    # The fleet checks' findings (pki/services/checks.py): the 10-day certificate expires within 30 days.
    assert 'id="findings-none"' not in page
    assert re.search(r"<td>\w+</td><td>device_cert_expiring</td>", page)


def test_pem_downloads_are_the_stored_certificates(app, admin, fleet):
    ca, devs = fleet
    tc = console_client(app, admin)
    answer = tc.get(f"/console/cas/{ca.sn}/devices/{devs[0].sn}/pem")
    assert answer.headers["content-disposition"].startswith("attachment")
    cert = x509.load_pem_x509_certificate(answer.content)
    assert format_serial(cert.serial_number) == devs[0].sn
    ca_cert = x509.load_pem_x509_certificate(tc.get(f"/console/cas/{ca.sn}/pem").content)
    assert format_serial(ca_cert.serial_number) == ca.sn


def test_secrets_page_shows_metadata_never_the_secret(ctx, app, admin):
    created = secrets.register_secret(ctx, client_id="meter-7")
    tc = console_client(app, admin)
    page = tc.get("/console/secrets").text
    assert "meter-7" in page and created.secret not in page
    tc.post("/console/secrets/meter-7/deactivate", data={"csrf": _csrf(tc), "confirm": "yes"})
    assert secrets.show_secret(ctx, client_id="meter-7").status == "INACTIVE"
    assert created.secret not in tc.get("/console/secrets").text


def test_audit_verify_shows_the_head_hash(ctx, app, admin, fleet):
    tc = console_client(app, admin)
    page = tc.get("/console/audit/verify").text
    head = re.search(r'id="head-hash">([0-9a-f]{64})<', page).group(1)
    assert "The chain is intact" in page
    assert head == audit.verify(ctx).head_hash or audit.list_records(ctx).items  # later records may follow
    assert tc.get("/console/audit?principal=nobody").text.count("No records.") == 1


def test_data_plane_pages_and_check_access(ctx, app, admin):
    identities.add(ctx, username="gateway", password="pw-123456789", client_id=None, superuser=False)
    permissions.add(ctx, effect="allow", action="publish", topic="sensors/#", all_clients=True)
    blocklist.add(ctx, client_id="rogue")
    tc = console_client(app, admin)
    assert "gateway" in tc.get("/console/identities").text
    assert "pw-123456789" not in tc.get("/console/identities").text
    assert "sensors/#" in tc.get("/console/permissions").text
    assert "rogue" in tc.get("/console/blocklist").text
    allowed = tc.get("/console/check-access", params={"action": "publish", "client_id": "c1", "topic": "sensors/x"})
    assert re.search(r'<h2 id="answer-title">Allow</h2>', allowed.text)
    blocked = tc.get("/console/check-access", params={"action": "connect", "client_id": "rogue"})
    assert re.search(r'<h2 id="answer-title">Deny</h2>', blocked.text) and "Blocklist entry" in blocked.text
    assert tc.get("/console/check-access", params={"action": "publish", "topic": "a/#"}).status_code == 400


def test_pages_carry_security_headers_and_no_foreign_resources(app, admin):
    tc = console_client(app, admin)
    answer = tc.get("/console")
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
    assert not re.search(r'(src|href)="(https?:)?//', answer.text)
    assert tc.get("/console/static/console.js").status_code == 200
    assert tc.get("/console/static/../app.py").status_code == 404


def test_the_expiring_link_lists_only_certificates_ending_within_30_days(ctx, app, admin, fleet):
    ca, _ = fleet
    devices.issue_device(ctx, ca=ca.sn, csr=csr_pem("soon").encode(), days=5)
    page = console_client(app, admin).get(f"/console/cas/{ca.sn}/devices?status=ACTIVE&expiring=30d").text
    assert re.findall(r'<tr><th scope="row"><a href="[^"]+">([^<]+)</a>', page) == ["soon"]


PAGES = ("/console", "/console/cas", "/console/devices", "/console/secrets", "/console/audit", "/console/identities",
         "/console/permissions", "/console/blocklist", "/console/check-access", "/console/sign-in")


def test_every_control_has_a_label_and_every_page_one_heading(app, admin, fleet):
    """Accessibility basics: a <label for> per visible input and select, one h1, the language, a main landmark."""
    ca, devs = fleet
    tc = console_client(app, admin)
    for path in (*PAGES, f"/console/cas/{ca.sn}", f"/console/cas/{ca.sn}/devices/{devs[0].sn}",
                 f"/console/cas/{ca.sn}/crl"):
        html = tc.get(path).text
        assert '<html lang="en">' in html and '<main id="main"' in html and html.count("<h1") == 1, path
        labels = set(re.findall(r'<label for="([^"]+)"', html))
        for tag in re.findall(r"<(?:input|select)\b[^>]*>", html):
            if 'type="hidden"' in tag:
                continue
            control = re.search(r'id="([^"]+)"', tag)
            assert control and control.group(1) in labels, (path, tag)


def test_every_console_route_but_sign_in_and_static_files_needs_a_session(ctx, app):
    """Like the /v1 routes and their signature: nothing answers, or acts, before the session is checked."""
    from fastapi.routing import APIRoute

    from pki.http.console import more_pages, pages

    tc = plain_client(app)
    before = snapshot(ctx)
    routes = [r for module in (pages, more_pages) for r in module.router.routes if isinstance(r, APIRoute)]
    assert len(routes) >= 20
    for route in routes:
        if route.path in ("/console/sign-in", "/console/static/{name}"):
            continue
        path = route.path
        for param in route.dependant.path_params:
            path = path.replace("{" + param.name + "}", "ab" if param.name != "action" else "revoke")
        for method in route.methods:
            answer = tc.request(method, path, data={"confirm": "yes"}, follow_redirects=False)
            if method == "GET":
                assert answer.status_code == 303 and "/console/sign-in" in answer.headers["location"], path
            else:
                assert answer.status_code == 401, (method, path, answer.status_code)
    assert snapshot(ctx) == before


def test_concurrent_failed_sign_ins_are_all_counted(ctx, admin):
    """Guessers racing each other: every failure counts (sign_in on SQLite and PostgreSQL, 8 threads)."""
    import threading

    from pki.errors import PkiError

    outcomes, lock = [], threading.Lock()

    def guess():
        try:
            cs.sign_in(ctx, access_key_id=admin.access_key_id, secret="guess", source_ip="192.0.2.7")
        except PkiError as exc:
            with lock:
                outcomes.append(exc.code)

    threads = [threading.Thread(target=guess) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 8 and set(outcomes) <= {"console_signin_failed", "rate_limited"}
    with pytest.raises(PkiError) as refused:
        cs.sign_in(ctx, access_key_id=admin.access_key_id, secret=admin.access_key_secret, source_ip="192.0.2.8")
    assert refused.value.code == "rate_limited"  # the key's failures reached the limit, from any address
    failed = audit.list_records(ctx, action=cs.SIGN_IN_ACTION, result="failed").items
    from sqlmodel import select

    from pki.store.console_models import ConsoleThrottle

    with ctx.store.transaction(readonly=True) as session:
        counted = session.get(ConsoleThrottle, f"key:{admin.access_key_id}").failures
    assert counted == len(failed) == outcomes.count("console_signin_failed") >= cs.MAX_FAILURES


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_text_colours_keep_a_contrast_of_at_least_4_5():
    """WCAG 2.1 success criterion 1.4.3, over every text/background pair the stylesheet uses."""
    from importlib import resources

    css = resources.files("pki.http.console").joinpath("static", "console.css").read_text()
    palette = dict(re.findall(r"--([a-z]+):\s*(#[0-9a-f]{6})", css))
    palette["white"] = "#ffffff"
    pairs = [("ink", "bg"), ("muted", "bg"), ("link", "bg"), ("ok", "bg"), ("bad", "bg"), ("warn", "bg"),
             ("ink", "soft"), ("muted", "soft"), ("link", "soft"), ("ok", "soft"), ("warn", "soft"),
             ("white", "band"), ("white", "bad"), ("band", "white"), ("ink", "white")]
    for fg, bg in pairs:
        light, dark = sorted((_luminance(palette[fg]), _luminance(palette[bg])), reverse=True)
        assert (light + 0.05) / (dark + 0.05) >= 4.5, (fg, bg)
