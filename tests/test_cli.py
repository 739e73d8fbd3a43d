"""The CLI as a customer uses it: openssl-made CAs, JSON output, error lines and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import openssl as ot
from tests.support import FIXTURES, cli_json as _json, snapshot
from pki.cli.main import main
from pki.cli.render import EXIT_CODES




def test_customer_flow_with_openssl(pki, tmp_path, openssl):
    """A CA and verification certificate made with the openssl CLI, as the README shows."""
    ca_cert, ca_key = ot.make_ca(tmp_path, "Customer Root CA")
    code = _json(pki, "code", "new")["code"]
    assert len(code) == 64 and all(c in "0123456789abcdef" for c in code)
    verification = ot.make_verification_cert(tmp_path, ca_cert=ca_cert, ca_key=ca_key, code=code)
    ca = _json(pki, "ca", "register", "--cert", str(ca_cert), "--verification", str(verification))
    assert ca["status"] == "ACTIVE" and ca["source"] == "registered" and ca["name"] == "Customer Root CA"
    for key in ("sn", "name", "status", "source", "subject", "issuer", "not_before", "not_after",
                "fingerprint_sha256", "key_type"):
        assert key in ca
    assert ca["not_after"].endswith("Z") and ca["key_type"] == "ec-p256"

    listed = _json(pki, "ca", "list")
    assert [c["sn"] for c in listed["items"]] == [ca["sn"]] and listed["next_cursor"] is None
    _json(pki, "ca", "deactivate", ca["sn"])
    assert _json(pki, "ca", "list")["items"][0]["status"] == "INACTIVE"
    _json(pki, "ca", "activate", ca["sn"].upper())
    assert _json(pki, "ca", "list")["items"][0]["status"] == "ACTIVE"


def test_verification_cert_helper_then_register(pki, tmp_path, openssl):
    code = _json(pki, "code", "new", "--ttl", "10m")["code"]
    out = tmp_path / "verification.pem"
    rc, _, err = pki(
        "ca", "verification-cert", "--ca-cert", str(FIXTURES / "ca_root_rsa2048.pem"),
        "--ca-key", str(FIXTURES / "ca_root_rsa2048.key.pem"), "--code", code, "--out", str(out),
    )
    assert rc == 0, err
    ok, output = ot.verify(FIXTURES / "ca_root_rsa2048.pem", out)
    assert ok, output
    ca = _json(pki, "ca", "register", "--cert", str(FIXTURES / "ca_root_rsa2048.pem"), "--verification", str(out))
    assert ca["key_type"] == "rsa-2048"


def test_verification_cert_helper_refuses_mismatched_key(pki, tmp_path):
    code = "a" * 64
    rc, _, err = pki(
        "ca", "verification-cert", "--ca-cert", str(FIXTURES / "ca_root_rsa2048.pem"),
        "--ca-key", str(FIXTURES / "ca_root_ec_p256.key.pem"), "--code", code, "--out", str(tmp_path / "v.pem"),
    )
    assert rc == EXIT_CODES["invalid_input"]
    assert err.startswith("error[key_mismatch]: ")
    assert not (tmp_path / "v.pem").exists()


OPENSSL_BAD_CAS = [
    # (make_ca keyword arguments, expected error code)
    ({"digest": "sha1"}, "weak_signature_algorithm"),
    ({"digest": "md5", "key": "rsa:2048"}, "weak_signature_algorithm"),
    ({"serial": 0}, "invalid_serial"),
    ({"serial": -5}, "invalid_serial"),
    ({"serial": 2 ** 168}, "invalid_serial"),
    ({"key": "rsa:1024"}, "weak_key"),
    ({"basic_constraints": None}, "not_a_ca"),
    ({"key_usage": "critical,digitalSignature"}, "ca_missing_key_cert_sign"),
]


@pytest.mark.parametrize("kwargs,expected", OPENSSL_BAD_CAS, ids=[e for _, e in OPENSSL_BAD_CAS])
def test_openssl_made_bad_cas_refused(pki, ctx, tmp_path, openssl, kwargs, expected):
    ca_cert, ca_key = ot.make_ca(tmp_path, "Bad CA", **kwargs)
    code = _json(pki, "code", "new")["code"]
    digest = kwargs.get("digest", "sha256")
    verification = ot.make_verification_cert(tmp_path, ca_cert=ca_cert, ca_key=ca_key, code=code, digest=digest)
    before = snapshot(ctx)
    rc, out, err = pki("ca", "register", "--cert", str(ca_cert), "--verification", str(verification))
    assert err.startswith(f"error[{expected}]: "), err
    assert rc == EXIT_CODES["invalid_input"] and out == ""
    assert "Traceback" not in err
    assert snapshot(ctx) == before


def test_sha1_verification_certificate_refused(pki, ctx, tmp_path, openssl):
    ca_cert, ca_key = ot.make_ca(tmp_path, "Good CA")
    code = _json(pki, "code", "new")["code"]
    verification = ot.make_verification_cert(tmp_path, ca_cert=ca_cert, ca_key=ca_key, code=code, digest="sha1")
    before = snapshot(ctx)
    rc, _, err = pki("ca", "register", "--cert", str(ca_cert), "--verification", str(verification))
    assert err.startswith("error[weak_signature_algorithm]: ")
    assert snapshot(ctx) == before


def test_expired_verification_certificate_refused(pki, ctx, tmp_path, openssl):
    ca_cert, ca_key = ot.make_ca(tmp_path, "Good CA")
    code = _json(pki, "code", "new")["code"]
    verification = ot.make_expired_verification_cert(tmp_path, ca_cert=ca_cert, ca_key=ca_key, code=code)
    rc, _, err = pki("ca", "register", "--cert", str(ca_cert), "--verification", str(verification))
    assert err.startswith("error[verification_expired]: ")


def test_error_families_have_their_exit_codes(pki):
    rc, _, err = pki("ca", "show", "abcdef")
    assert rc == EXIT_CODES["not_found"] and err.startswith("error[ca_not_found]: ")
    rc, _, err = pki("ca", "list", "--cursor", "garbage")
    assert rc == EXIT_CODES["invalid_input"] and err.startswith("error[invalid_cursor]: ")
    rc, _, err = pki("code", "new", "--ttl", "forever")
    assert rc == EXIT_CODES["invalid_input"] and err.startswith("error[invalid_duration]: ")


def test_debug_shows_traceback_only_when_asked(settings, ctx, capsys):
    base = ["--home", str(settings.home), "--database-url", settings.database_url]
    assert main([*base, "ca", "show", "abcdef"]) == EXIT_CODES["not_found"]
    assert "Traceback" not in capsys.readouterr().err
    assert main([*base, "--debug", "ca", "show", "abcdef"]) == EXIT_CODES["not_found"]
    assert "Traceback" in capsys.readouterr().err


def test_uninitialised_store_says_run_init(tmp_path, capsys):
    rc = main(["--home", str(tmp_path / "empty"), "ca", "list"])
    err = capsys.readouterr().err
    assert rc == EXIT_CODES["config"]
    assert err.startswith("error[store_not_initialized]: ") and "pki init" in err


def test_init_creates_private_key_file_and_is_idempotent(tmp_path, capsys):
    home = tmp_path / "home"
    assert main(["--home", str(home), "init", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["master_key_created"] is True and first["schema_revision"]
    key_file = Path(first["master_key_file"])
    assert key_file.stat().st_mode & 0o777 == 0o600
    content = key_file.read_bytes()
    assert main(["--home", str(home), "init", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["master_key_created"] is False
    assert key_file.read_bytes() == content


@pytest.mark.slow
def test_console_script_runs(tmp_path):
    """The installed entry point works outside pytest, with PKI_HOME from the environment."""
    env = {**os.environ, "PKI_HOME": str(tmp_path / "h")}
    env.pop("PKI_DATABASE_URL", None)
    init = subprocess.run([sys.executable, "-m", "pki", "init"], env=env, capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    listed = subprocess.run([sys.executable, "-m", "pki", "ca", "list", "--json"], env=env, capture_output=True,
                            text=True)
    assert listed.returncode == 0 and json.loads(listed.stdout) == {"items": [], "next_cursor": None}
    helped = subprocess.run([sys.executable, "-m", "pki", "ca", "register", "--help"], env=env,
                            capture_output=True, text=True)
    assert helped.returncode == 0 and "--verification" in helped.stdout
