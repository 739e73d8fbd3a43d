"""The CLI's remote mode: every command against a live `pki serve`, requests signed, same answers as locally."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import stat
import threading
import time
from pathlib import Path

import pytest
from tests.support import FIXTURES
from tests.support.http_app import app_for, csr_pem, make_user
from sqlalchemy import text

from pki.cli.main import main
from pki.cli.render import EXIT_CODES
from pki.services import audit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def serve(ctx):
    """Start the real app on a real socket over the test store; returns its URL."""
    import uvicorn

    servers = []

    def start(**app_kw) -> str:
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app_for(ctx, **app_kw), host="127.0.0.1", port=port,
                                               log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30  # a bound only
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the test server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def admin(ctx):
    return make_user(ctx, "admin", "PkiAdministratorAccess")


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean client environment: no default profile, no usable local store."""
    for var in ("PKI_SERVER", "PKI_ACCESS_KEY_ID", "PKI_ACCESS_KEY_SECRET", "PKI_PROFILE", "PKI_DATABASE_URL",
                "PKI_MASTER_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("PKI_HOME", str(tmp_path / "no-local-store"))

    def login(server: str | None, user=None, *, secret: str | None = None) -> None:
        for var, value in (("PKI_SERVER", server), ("PKI_ACCESS_KEY_ID", user and user.access_key_id),
                           ("PKI_ACCESS_KEY_SECRET", secret or (user and user.access_key_secret))):
            if value is None:
                monkeypatch.delenv(var, raising=False)
            else:
                monkeypatch.setenv(var, value)

    return login


@pytest.fixture
def run(capsys):
    def run(*args: str):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def local(run, settings):
    """The same CLI on the test store, with remote mode switched off (--local)."""
    def local(*args: str):
        return run("--local", "--home", str(settings.home), "--database-url", settings.database_url, *args)

    return local


@pytest.fixture
def remote(serve, admin, env, run, tmp_path):
    env(serve(artifacts_dir=str(tmp_path / "served")), admin)
    return run


def ok_json(runner, *args):
    code, out, err = runner(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def _keys(value):
    """The shape of an answer: its keys, and those of list items."""
    if isinstance(value, dict):
        return {k: _keys(v) if k == "items" else None for k, v in value.items()}
    if isinstance(value, list):
        return sorted({json.dumps(_keys(v), sort_keys=True) for v in value})
    return None


def _verification(run, tmp_path: Path, code: str, name: str) -> Path:
    out = tmp_path / f"{name}.verification.pem"
    rc, _, err = run("ca", "verification-cert", "--ca-cert", str(FIXTURES / f"{name}.pem"),
                     "--ca-key", str(FIXTURES / f"{name}.key.pem"), "--code", code, "--out", str(out))
    assert rc == 0, err
    return out


def _external_leaf(ca_name: str, cn: str) -> bytes:
    import datetime as _dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate((FIXTURES / f"{ca_name}.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((FIXTURES / f"{ca_name}.key.pem").read_bytes(), password=None)
    now = _dt.datetime.now(_dt.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=1)).not_valid_after(now + _dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


# -- the whole tour, remote and local side by side ---------------------------------------------------------


@pytest.mark.slow
def test_every_command_remote_answers_like_local(ctx, remote, local, tmp_path):
    run = remote
    # register codes and a registered CA (the verification certificate made offline, PKI_SERVER set)
    code = ok_json(run, "code", "new", "--ttl", "10m")
    assert _keys(code) == _keys(ok_json(local, "code", "new", "--ttl", "10m"))
    verification = _verification(run, tmp_path, code["code"], "ca_root_rsa2048")
    registered = ok_json(run, "ca", "register", "--cert", str(FIXTURES / "ca_root_rsa2048.pem"),
                         "--verification", str(verification), "--name", "Customer Root")
    assert registered["source"] == "registered" and registered["name"] == "Customer Root"
    # a DER CA certificate reaches the server as PEM
    der_code = ok_json(run, "code", "new")["code"]
    der_ca = ok_json(run, "ca", "register", "--cert", str(FIXTURES / "ca_root_ec_p256.der"),
                     "--verification", str(_verification(run, tmp_path, der_code, "ca_root_ec_p256")), "--inactive")
    assert der_ca["status"] == "INACTIVE"
    sn = registered["sn"]
    assert _keys(ok_json(run, "ca", "show", sn.upper())) == _keys(ok_json(local, "ca", "show", sn))
    assert ok_json(run, "ca", "deactivate", sn)["status"] == "INACTIVE"
    assert ok_json(run, "ca", "activate", sn)["status"] == "ACTIVE"
    page = ok_json(run, "ca", "list", "--status", "ACTIVE")
    assert [c["sn"] for c in page["items"]] == [sn] and _keys(page) == _keys(ok_json(local, "ca", "list"))

    # a managed CA and its devices
    managed = ok_json(run, "ca", "create", "--name", "Factory Root", "--key-type", "ec-p256")
    assert managed["source"] == "managed" and _keys(managed) == _keys(registered)
    ca = managed["sn"]
    csr = tmp_path / "dev-1.csr"
    csr.write_text(csr_pem("dev-1"))
    issued = ok_json(run, "device", "issue", "--ca", ca, "--csr", str(csr))
    assert issued["client_id"] == "dev-1" and "private_key_pem" not in issued
    assert _keys(issued) == _keys(ok_json(local, "device", "issue", "--ca", ca, "--csr", str(csr),
                                          "--client-id", "dev-1-local"))
    generated = ok_json(run, "device", "issue", "--ca", ca, "--generate", "--client-id", "dev-2")
    assert "PRIVATE KEY" in generated["private_key_pem"]
    assert _keys(generated) == _keys(ok_json(local, "device", "issue", "--ca", ca, "--generate",
                                             "--client-id", "dev-2-local"))
    out_dir = tmp_path / "device-files"
    written = ok_json(run, "device", "issue", "--ca", ca, "--generate", "--client-id", "dev-3", "--out", str(out_dir))
    assert "private_key_pem" not in written and len(written["files"]) == 2
    key_file = out_dir / "dev-3.key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and b"PRIVATE KEY" in key_file.read_bytes()
    assert b"BEGIN CERTIFICATE" in (out_dir / "dev-3.pem").read_bytes()
    local_written = ok_json(local, "device", "issue", "--ca", ca, "--generate", "--client-id", "dev-3-local",
                            "--out", str(tmp_path / "local-files"))
    assert _keys(written) == _keys(local_written)

    shown = ok_json(run, "device", "show", issued["sn"], "--ca", ca)
    assert shown["status"] == "ACTIVE" and _keys(shown) == _keys(ok_json(local, "device", "show", issued["sn"],
                                                                         "--ca", ca))
    assert ok_json(run, "device", "show", "--client-id", "dev-2")["sn"] == generated["sn"]
    listed = ok_json(run, "device", "list", "--ca", ca, "--limit", "2")
    assert len(listed["items"]) == 2 and listed["next_cursor"]
    assert len(ok_json(run, "device", "list", "--ca", ca, "--cursor", listed["next_cursor"])["items"]) == 4
    assert ok_json(run, "device", "deactivate", generated["sn"], "--ca", ca)["status"] == "INACTIVE"
    assert ok_json(run, "device", "activate", generated["sn"], "--ca", ca)["status"] == "ACTIVE"
    revoked = ok_json(run, "device", "revoke", issued["sn"], "--ca", ca, "--reason", "keyCompromise")
    assert revoked["status"] == "REVOKED" and revoked["revocation_reason"] == "keyCompromise"

    # a device certificate issued elsewhere by the registered CA, given as DER
    leaf_der = tmp_path / "ext-1.der"
    leaf_der.write_bytes(_external_leaf("ca_root_rsa2048", "ext-1"))
    external = ok_json(run, "device", "register", "--cert", str(leaf_der))
    # A device's fields; `device show` adds its PEMs and replacements (pki/services/renewal.py device_detail).
    assert external["ca_sn"] == sn and external["client_id"] == "ext-1" and _keys(external).keys() <= shown.keys()
    found = ok_json(run, "device", "show", "--fingerprint", external["fingerprint_sha256"])
    assert found["sn"] == external["sn"]

    # the registered CA's CRL: request over HTTP, sign offline, upload over HTTP
    rc, _, err = run("crl", "request", "--ca", sn, "--out", str(tmp_path / "req.json"))
    assert rc == 0, err
    rc, _, err = run("crl", "sign", "--ca-cert", str(FIXTURES / "ca_root_rsa2048.pem"),
                     "--ca-key", str(FIXTURES / "ca_root_rsa2048.key.pem"), "--request", str(tmp_path / "req.json"),
                     "--out", str(tmp_path / "crl.pem"))
    assert rc == 0, err
    assert ok_json(run, "crl", "upload", "--ca", sn, str(tmp_path / "crl.pem"))["ca_sn"] == sn

    # device secrets
    created = ok_json(run, "secret", "register", "meter-1")
    assert created["secret"] and _keys(created) == _keys(ok_json(local, "secret", "register", "meter-2"))
    assert "secret" not in ok_json(run, "secret", "show", "meter-1")
    revealed = ok_json(run, "secret", "show", "meter-1", "--reveal")
    assert revealed["secret"] == created["secret"]
    assert _keys(revealed) == _keys(ok_json(local, "secret", "show", "meter-2", "--reveal"))
    username = created["username"]
    password = base64.b64encode(hmac.new(created["secret"].encode(), b"meter-1", hashlib.sha1).digest()).decode()
    verified = ok_json(run, "secret", "verify", "--client-id", "meter-1", "--username", username,
                       "--password", password)
    assert verified == {"result": "pass", "client_id": "meter-1"}
    rc, _, err = run("secret", "verify", "--client-id", "meter-1", "--username", username, "--password", "wrong")
    assert rc == EXIT_CODES["permission_denied"] and err.startswith("error[")
    assert ok_json(run, "secret", "refresh", "meter-1", "--grace", "0")["secret"] != created["secret"]
    assert {s["client_id"] for s in ok_json(run, "secret", "list")["items"]} == {"meter-1", "meter-2"}
    assert ok_json(run, "secret", "deactivate", "meter-1")["status"] == "INACTIVE"
    ok_json(run, "secret", "group", "create", "line-a")
    member = ok_json(run, "secret", "derive", "--group", "line-a", "sensor-9")
    assert member["secret"] and _keys(member) == _keys(ok_json(local, "secret", "derive", "--group", "line-a",
                                                               "sensor-9"))
    assert ok_json(run, "secret", "unregister", "meter-1")["deleted"] is True

    # users, policies, audit
    user = ok_json(run, "user", "create", "line-1")
    assert set(user) == {"name", "access_key_id", "access_key_secret"}
    ok_json(run, "policy", "attach", "PkiFactoryProvisioner", "--user", "line-1")
    shown_user = ok_json(run, "user", "show", "line-1")
    assert shown_user["policies"] == ["PkiFactoryProvisioner"]
    assert _keys(shown_user) == _keys(ok_json(local, "user", "show", "admin"))
    rc, out, err = run("user", "show", "line-1")  # the text form renders server answers too
    assert rc == 0 and "PkiFactoryProvisioner" in out
    key = ok_json(run, "user", "key", "create", "line-1")
    assert ok_json(run, "user", "key", "disable", key["access_key_id"])["status"] == "INACTIVE"
    assert ok_json(run, "user", "key", "delete", key["access_key_id"])["deleted"] is True
    decision = ok_json(run, "policy", "simulate", "--user", "line-1", "--action", "ca.create")
    assert decision["allowed"] is False and _keys(decision) == _keys(
        ok_json(local, "policy", "simulate", "--user", "line-1", "--action", "ca.create"))
    document = tmp_path / "policy.json"
    document.write_text(json.dumps({"Version": "1", "Statement": [
        {"Effect": "Allow", "Action": ["mq:GetCaCertificate", "mq:MqttInstanceAccess"], "Resource": "*"}]}))
    custom = ok_json(run, "policy", "create", "CaReader", "--document", str(document))
    assert custom["name"] == "CaReader" and _keys(custom) == _keys(ok_json(local, "policy", "show", "CaReader"))
    document.write_text(json.dumps({"Version": "1", "Statement": [{"Effect": "Maybe", "Action": "*",
                                                                   "Resource": "*"}]}))
    rc, _, err = run("policy", "create", "Bad", "--document", str(document))
    assert rc == EXIT_CODES["invalid_input"] and "error[invalid_policy]" in err and "Effect" in err
    assert {p["name"] for p in ok_json(run, "policy", "list")["items"]} >= {"CaReader", "PkiAdministratorAccess"}
    assert ok_json(run, "policy", "actions") == ok_json(local, "policy", "actions")
    assert ok_json(run, "user", "disable", "line-1")["status"] == "INACTIVE"
    ok_json(run, "policy", "detach", "PkiFactoryProvisioner", "--user", "line-1")
    assert ok_json(run, "user", "delete", "line-1")["deleted"] is True
    assert ok_json(run, "policy", "delete", "CaReader")["deleted"] is True
    assert {u["name"] for u in ok_json(run, "user", "list")["items"]} == {"admin"}

    # the changes went through the server: on the audit log as the signed-in user
    records = ok_json(run, "audit", "list", "--principal", "admin", "--action", "mq:IssueDeviceCertificate")
    assert len(records["items"]) == 3
    assert _keys(records) == _keys(ok_json(local, "audit", "list", "--limit", "3"))
    verdict = ok_json(run, "audit", "verify")
    assert verdict["ok"] is True and _keys(verdict) == _keys(ok_json(local, "audit", "verify"))

    # deletes last
    assert ok_json(run, "ca", "delete", der_ca["sn"])["deleted"] is True
    rc, _, err = run("ca", "delete", ca)
    assert rc != 0 and err.startswith("error[")
    assert ok_json(run, "ca", "delete", ca, "--cascade")["deleted"] is True
    assert not (tmp_path / "no-local-store").exists()  # remote mode never opened a local store


def test_issue_pkcs12_remote(remote, tmp_path, monkeypatch):
    from cryptography.hazmat.primitives.serialization import pkcs12

    ca = ok_json(remote, "ca", "create", "--name", "Root")["sn"]
    monkeypatch.setenv("P12_PW", "factory-pw")
    result = ok_json(remote, "device", "issue", "--ca", ca, "--generate", "--client-id", "dev-p12", "--out",
                     str(tmp_path), "--format", "p12", "--p12-password-env", "P12_PW")
    p12 = tmp_path / "dev-p12.p12"
    assert result["files"] == [str(tmp_path / "dev-p12.pem"), str(p12)] and "private_key_pem" not in result
    assert stat.S_IMODE(p12.stat().st_mode) == 0o600
    loaded = pkcs12.load_pkcs12(p12.read_bytes(), b"factory-pw")
    assert loaded.key is not None and loaded.cert.friendly_name == b"dev-p12"
    assert [c.certificate.subject.rfc4514_string() for c in loaded.additional_certs] == ["CN=Root"]


def test_server_errors_print_like_local_ones(remote, local):
    rc, _, err = remote("ca", "show", "abcdef")
    assert rc == EXIT_CODES["not_found"] and err.startswith("error[ca_not_found]:")
    assert (rc, err) == local("ca", "show", "abcdef")[::2]
    rc, _, err = remote("device", "issue", "--ca", "abcdef", "--generate", "--client-id", "x")
    assert (rc, err) == local("device", "issue", "--ca", "abcdef", "--generate", "--client-id", "x")[::2]
    rc, _, err = remote("code", "new", "--ttl", "soon")
    assert rc == EXIT_CODES["invalid_input"] and err.startswith("error[invalid_duration]:")


# -- who may do what -------------------------------------------------------------------------------------


def test_read_only_user_is_refused_writes(ctx, serve, env, run):
    reader = make_user(ctx, "reader", "PkiReadOnlyAccess")
    env(serve(), reader)
    assert ok_json(run, "ca", "list") == {"items": [], "next_cursor": None}
    rc, out, err = run("ca", "create", "--name", "Nope")
    assert rc == EXIT_CODES["permission_denied"] == 7
    assert err.startswith("error[access_denied]:") and out == ""
    assert audit.list_records(ctx, principal="reader", result="denied").items


def test_wrong_secret_is_unauthenticated(ctx, serve, env, run, admin):
    env(serve(), admin, secret="not-the-secret")
    rc, _, err = run("ca", "list")
    assert rc == EXIT_CODES["unauthenticated"] == 10
    assert err.startswith("error[signature_invalid]:")
    assert admin.access_key_secret not in err


def test_secret_is_never_a_flag(serve, env, run, admin, monkeypatch):
    url = serve()
    env(url, admin)
    rc, _, err = run("--access-key-secret", admin.access_key_secret, "ca", "list")
    assert rc == 2 and "No such option" in err
    rc, out, _ = run("--help")
    assert rc == 0 and "--access-key-id" in out and "--access-key-secret" not in out
    # server and key id may come as flags; the secret only from the environment (or a profile)
    monkeypatch.delenv("PKI_SERVER")
    monkeypatch.delenv("PKI_ACCESS_KEY_ID")
    rc, _, err = run("--server", url, "--access-key-id", admin.access_key_id, "ca", "list")
    assert rc == 0, err


def test_missing_credentials_say_what_to_set(env, run):
    env("http://127.0.0.1:1")
    rc, _, err = run("ca", "list")
    assert rc == EXIT_CODES["config"] and err.startswith("error[missing_credentials]:")
    assert "PKI_ACCESS_KEY_ID and PKI_ACCESS_KEY_SECRET" in err


def test_unreachable_server(env, run, admin):
    env(f"http://127.0.0.1:{_free_port()}", admin)
    rc, _, err = run("ca", "list")
    assert rc == EXIT_CODES["store"] and err.startswith("error[server_unreachable]:")


# -- the profile file --------------------------------------------------------------------------------------


def _profile(path: Path, server: str, user, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"server": server, "access_key_id": user.access_key_id,
                                "access_key_secret": user.access_key_secret}))
    path.chmod(mode)
    return path


def test_profile_file_0600_is_used(serve, env, run, admin, tmp_path):
    url = serve()
    env(None)
    profile = _profile(tmp_path / "profile.json", url, admin, 0o600)
    assert ok_json(run, "--profile", str(profile), "ca", "list")["items"] == []
    # the default place, found without a flag; --local turns remote mode off again
    _profile(tmp_path / "xdg" / "pki" / "profile.json", url, admin, 0o600)
    assert ok_json(run, "user", "list")["items"][0]["name"] == "admin"
    rc, _, err = run("--local", "ca", "list")
    assert rc == EXIT_CODES["config"] and err.startswith("error[store_not_initialized]:")  # it did not go remote


def test_profile_file_open_to_others_is_refused(serve, env, run, admin, tmp_path):
    url = serve()
    env(None)
    profile = _profile(tmp_path / "profile.json", url, admin, 0o644)
    rc, out, err = run("--profile", str(profile), "ca", "list")
    assert rc == EXIT_CODES["config"] and out == ""
    assert err.startswith("error[profile_insecure]:") and "0644" in err and "chmod 600" in err
    assert admin.access_key_secret not in err
    _profile(tmp_path / "xdg" / "pki" / "profile.json", url, admin, 0o640)
    rc, _, err = run("ca", "list")
    assert rc == EXIT_CODES["config"] and err.startswith("error[profile_insecure]:")


def test_malformed_profile(env, run, tmp_path):
    env(None)
    bad = tmp_path / "profile.json"
    bad.write_text('{"server": "http://x", "secret": "y"}')
    bad.chmod(0o600)
    rc, _, err = run("--profile", str(bad), "ca", "list")
    assert rc == EXIT_CODES["config"] and err.startswith("error[invalid_profile]:") and "'secret'" in err


# -- local-only and offline commands -------------------------------------------------------------------------


def test_local_only_commands_say_so(remote, tmp_path):
    rc, _, err = remote("init")
    assert rc == EXIT_CODES["config"] and err.startswith("error[local_only]:") and "PKI_SERVER" in err
    manifest = tmp_path / "devices.csv"
    manifest.write_text("client_id\nd1\n")
    rc, _, err = remote("device", "provision", "--ca", "abcdef", "--manifest", str(manifest),
                        "--out", str(tmp_path / "out"))
    assert rc == EXIT_CODES["config"] and err.startswith("error[local_only]:") and "device issue" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "no-local-store").exists()


def test_offline_helpers_ignore_pki_server(env, run, admin, tmp_path):
    env(f"http://127.0.0.1:{_free_port()}", admin)  # nothing listens: an offline helper must not care
    out = tmp_path / "v.pem"
    rc, _, err = run("ca", "verification-cert", "--ca-cert", str(FIXTURES / "ca_root_rsa2048.pem"),
                     "--ca-key", str(FIXTURES / "ca_root_rsa2048.key.pem"), "--code", "ab" * 32, "--out", str(out))
    assert rc == 0, err
    assert out.exists()


def test_artifacts_publish_remote(ctx, serve, env, run, admin, tmp_path):
    env(serve(), admin)
    rc, _, err = run("artifacts", "publish")
    assert rc == EXIT_CODES["invalid_state"] and err.startswith("error[publish_not_configured]:")
    env(serve(artifacts_dir=str(tmp_path / "served")), admin)
    rc, _, err = run("artifacts", "publish", "--out", str(tmp_path / "here"))
    assert rc == 2 and "--out" in err and "local-only" in err and not (tmp_path / "here").exists()
    ok_json(run, "ca", "create", "--name", "Root")
    published = ok_json(run, "artifacts", "publish", "--keep", "2")
    assert published["generation"] == 1 and Path(published["directory"]).is_relative_to(tmp_path / "served")
    assert (tmp_path / "served" / "current" / "ca-bundle.pem").exists()
    rc, out, err = run("artifacts", "publish")
    assert rc == 0 and "generation 2 published" in out


def test_audit_verify_remote_exits_non_zero_on_a_broken_chain(ctx, remote):
    ok_json(remote, "ca", "create", "--name", "Root")
    ok_json(remote, "code", "new")
    with ctx.store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_record SET principal = 'mallory' WHERE seq = 1"))
    rc, out, err = remote("audit", "verify", "--json")
    assert rc == EXIT_CODES["invalid_state"] and err.startswith("error[audit_chain_broken]:")
    verdict = json.loads(out)
    assert verdict["ok"] is False and verdict["first_bad"] == 1


def test_a_remote_413_exits_with_its_family(serve, env, admin, run):
    # The server's body cap answers 413 request_too_large; the CLI exits as for any invalid input (3),
    # not 1 ("internal"), because the problem names its family.
    url = serve(max_body=2048)
    env(url, admin)
    code, out, err = run("ca", "register", "--cert", str(FIXTURES / "ca_root_rsa2048.pem"),
                         "--verification", str(FIXTURES / "ca_root_rsa2048.pem"), "--chain",
                         str(FIXTURES / "ca_intermediate_chain.pem"))
    assert "error[request_too_large]" in err
    assert code == EXIT_CODES["invalid_input"] == 3


def test_a_413_without_a_problem_body_is_invalid_input_too():
    from pki.client import ApiError

    assert ApiError(413, {}).family == "invalid_input"
    assert ApiError(413, {"code": "request_too_large"}).family == "invalid_input"
    assert ApiError(502, {"code": "no_such_code"}).family == "internal"


def test_fleet_operations_remote_answer_like_local(ctx, remote, local, tmp_path):
    import csv
    import io

    ca = ok_json(remote, "ca", "create", "--name", "Fleet Root")["sn"]
    other = ok_json(remote, "ca", "create", "--name", "Fleet Two")["sn"]
    for c, name in ((ca, "f-1"), (ca, "f-2"), (other, "f-3"), (ca, "twin"), (other, "twin")):
        ok_json(remote, "device", "issue", "--ca", c, "--generate", "--client-id", name)
    everything = ok_json(remote, "device", "list")
    assert everything == ok_json(local, "device", "list") and len(everything["items"]) == 5
    code, out, err = remote("device", "list", "--all", "--output", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    assert [r["sn"] for r in rows] == [i["sn"] for i in everything["items"]]
    code, _, err = remote("device", "revoke", "--client-id", "twin")
    assert code == EXIT_CODES["invalid_input"] and "error[ambiguous_client_id]" in err
    assert ok_json(remote, "device", "revoke", "--client-id", "f-1")["status"] == "REVOKED"
    listing = tmp_path / "revoke.txt"
    listing.write_text("f-2\nf-1\nnobody\n")
    code, out, err = remote("device", "revoke", "--from", str(listing), "--json")
    report = json.loads(out)
    assert code == 5 and (report["revoked"], report["already_revoked"]) == (1, 1)
    assert [(f["line"], f["code"]) for f in report["failed"]] == [(3, "device_not_found")]
