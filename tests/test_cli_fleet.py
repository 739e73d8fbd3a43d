"""Fleet operations from the CLI: naming a device several ways, bulk revoke, instance-wide lists and exports."""

from __future__ import annotations

import re

import csv
import io
import json
import subprocess
import sys

import pytest
from cryptography import x509

from pki.cli.main import LAZY_COMMANDS, main
from pki.cli.render import EXIT_CODES, duration_text, openssl_dn, shown
from pki.ids import format_serial, parse_serial
from pki.services import audit, crls
from tests.support import snapshot
from tests.support.lint import assert_lint_clean, assert_openssl_verifies


@pytest.fixture
def pki(settings, ctx, capsys):
    base = ["--home", str(settings.home), "--database-url", settings.database_url]

    def run(*args: str, ok: bool = True, stdin: str | None = None, monkeypatch=None):
        code = main([*base, *args])
        out, err = capsys.readouterr()
        if ok:
            assert code == 0, err
            return json.loads(out) if "--json" in args else out
        return code, out, err

    return run


@pytest.fixture
def fleet(pki):
    root = pki("ca", "create", "--name", "Root", "--json")
    line = pki("ca", "create", "--name", "Line 3", "--parent", root["sn"], "--days", "1000", "--json")
    devices = {}
    for ca, names in ((root, ("a1", "a2", "dup")), (line, ("b1", "b2", "dup"))):
        for name in names:
            issued = pki("device", "issue", "--ca", ca["sn"], "--generate", "--client-id", name, "--json")
            devices[(ca["sn"], name)] = issued
    return root, line, devices


def test_issued_certificates_pass_lint(fleet, tmp_path):
    root, line, devices = fleet
    issued = devices[(line["sn"], "b1")]
    assert_lint_clean(issued["certificate_pem"].encode())
    assert_openssl_verifies(issued["certificate_pem"].encode(), [issued["chain_pem"].encode()], tmp_dir=tmp_path)


def test_show_by_client_id_fingerprint_and_serial(pki, fleet):
    root, line, devices = fleet
    a1 = devices[(root["sn"], "a1")]
    assert pki("device", "show", "--client-id", "a1", "--json")["sn"] == a1["sn"]
    assert pki("device", "show", "--fingerprint", a1["fingerprint_sha256"], "--json")["sn"] == a1["sn"]
    assert pki("device", "show", a1["sn"].upper(), "--ca", root["sn"], "--json")["client_id"] == "a1"
    dup_line = devices[(line["sn"], "dup")]
    assert pki("device", "show", "--client-id", "dup", "--ca", line["sn"], "--json")["sn"] == dup_line["sn"]


def test_ambiguous_client_id_lists_candidates_and_changes_nothing(pki, fleet, ctx):
    root, line, devices = fleet
    before = snapshot(ctx)
    code, _, err = pki("device", "revoke", "--client-id", "dup", ok=False)
    assert code == EXIT_CODES["invalid_input"] and err.startswith("error[ambiguous_client_id]: ")
    for ca in (root, line):
        assert devices[(ca["sn"], "dup")]["sn"] in err and ca["sn"] in err
    assert snapshot(ctx) == before
    # once one is revoked, the client id names the other (its only ACTIVE certificate)
    pki("device", "revoke", devices[(root["sn"], "dup")]["sn"], "--ca", root["sn"])
    assert pki("device", "deactivate", "--client-id", "dup", "--json")["sn"] == devices[(line["sn"], "dup")]["sn"]
    assert pki("device", "activate", "--client-id", "dup", "--json")["status"] == "ACTIVE"


@pytest.mark.parametrize("args", [(), ("--client-id", "a1", "--fingerprint", "00" * 32), ("abc",)])
def test_device_naming_usage_errors(pki, fleet, args):
    code, _, err = pki("device", "show", *args, ok=False)
    assert code == 2 and err


def test_unknown_client_id_is_not_found(pki, fleet, ctx):
    before = snapshot(ctx)
    code, _, err = pki("device", "revoke", "--client-id", "nobody", ok=False)
    assert code == EXIT_CODES["not_found"] and "device_not_found" in err
    assert snapshot(ctx) == before


def test_bulk_revoke_report_audit_and_one_crl(pki, fleet, ctx, tmp_path):
    root, line, devices = fleet
    a1, a2, b1 = devices[(root["sn"], "a1")], devices[(root["sn"], "a2")], devices[(line["sn"], "b1")]
    listing = tmp_path / "revoke.txt"
    listing.write_text("\n".join([
        "# incident 42",
        f"{root['sn']}/{a1['sn']}",
        a2["fingerprint_sha256"],
        "b1",
        "",
        "dup",                    # ambiguous: two ACTIVE certificates
        "nobody",                 # unknown
        "bad/id/../x",            # not a client id
        "b1",                     # twice: already revoked
    ]) + "\n")
    code, out, err = pki("device", "revoke", "--from", str(listing), "--reason", "keyCompromise", "--json", ok=False)
    assert code == 5
    report = json.loads(out)
    assert report["lines"] == 7 and report["revoked"] == 3 and report["already_revoked"] == 1
    assert [(f["line"], f["code"]) for f in report["failed"]] == [
        (6, "ambiguous_client_id"), (7, "device_not_found"), (8, "invalid_client_id")]
    assert sorted(report["crls_signed"]) == sorted([root["sn"], line["sn"]])
    for ca, dev in ((root, a1), (root, a2), (line, b1)):
        shown_ = pki("device", "show", dev["sn"], "--ca", ca["sn"], "--json")
        assert shown_["status"] == "REVOKED" and shown_["revocation_reason"] == "keyCompromise"
    untouched = pki("device", "show", "--client-id", "b2", "--json")
    assert untouched["status"] == "ACTIVE"
    # the CRLs list exactly the revoked serials, re-signed in the run (not on this read)
    crl_info = crls.current_crl(ctx, ca=root["sn"])
    assert crl_info.crl_number == 1 or crl_info.source == "signed"
    crl = x509.load_der_x509_crl(crl_info.der)
    assert {format_serial(r.serial_number) for r in crl} == {a1["sn"], a2["sn"]}
    records = audit.list_records(ctx, limit=1000).items
    revoked_subjects = {r.details.get("subject") for r in records if r.details.get("operation") == "device.revoke"}
    assert {f"{root['sn']}/{a1['sn']}", f"{root['sn']}/{a2['sn']}", f"{line['sn']}/{b1['sn']}"} <= revoked_subjects
    assert audit.check(ctx).ok


def test_bulk_revoke_from_stdin_all_good_exits_zero(pki, fleet, monkeypatch):
    root, line, devices = fleet
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{devices[(line['sn'], 'b2')]['sn']}\n"))
    out = pki("device", "revoke", "--from", "-", "--ca", line["sn"])
    assert out.startswith("revoked 1, already revoked 0, failed 0 of 1 lines")


def test_list_whole_instance_all_formats(pki, fleet):
    root, line, devices = fleet
    listed = pki("device", "list", "--json")
    assert {(d["ca_sn"], d["client_id"]) for d in listed["items"]} == set(devices)
    first = pki("device", "list", "--limit", "4", "--json")
    rest = pki("device", "list", "--cursor", first["next_cursor"], "--json")
    assert len(first["items"]) == 4 and len(rest["items"]) == 2 and rest["next_cursor"] is None
    assert pki("device", "list", "--output", "json", "--all") and pki("device", "list", "--ca", line["sn"], "--json")
    every = json.loads(pki("device", "list", "--all", "--output", "json"))
    assert every["next_cursor"] is None and len(every["items"]) == 6
    lines = pki("device", "list", "--all", "--output", "jsonl").splitlines()
    assert [json.loads(x)["sn"] for x in lines] == [d["sn"] for d in every["items"]]
    text = pki("device", "list", "--all", "--output", "csv", "--status", "ACTIVE")
    assert "\r\n" in text  # RFC 4180 line ends
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert rows[0].keys() >= {"sn", "ca_sn", "client_id", "status", "fingerprint_sha256", "not_after"}
    assert {(r["ca_sn"], r["client_id"]) for r in rows} == set(devices)
    assert all(r["revoked_at"] == "" for r in rows)
    table = pki("device", "list", "--output", "table")
    assert table.splitlines()[0].split()[:3] == ["CA_SN", "SN", "CLIENT_ID"]
    code, _, err = pki("device", "list", "--json", "--output", "csv", ok=False)
    assert code == 2
    code, _, _ = pki("device", "list", "--all", "--limit", "3", ok=False)
    assert code == 2


def test_every_list_command_takes_output_csv(pki, fleet):
    text = pki("ca", "list", "--output", "csv")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert {r["name"] for r in rows} == {"Root", "Line 3"}
    assert "Line 3" in {r["name"] for r in (json.loads(x) for x in pki("ca", "list", "-o", "jsonl").splitlines())}


def test_csv_quotes_what_needs_quoting():
    from pki.cli.output import emit_items

    out = io.StringIO()
    emit_items([{"a": 'x,"y"', "b": ["p", "q"], "c": None}], "csv", columns=(), out=out)
    assert list(csv.reader(io.StringIO(out.getvalue(), newline=""))) == [["a", "b", "c"], ['x,"y"', '["p", "q"]', ""]]


def test_serials_even_length_and_any_input_form():
    assert format_serial(0xABC) == "0abc" and format_serial(0x1234) == "1234"
    assert parse_serial("AB:C") == "0abc" and parse_serial("0x0abc") == "0abc"


def test_human_output_has_no_python_repr():
    import datetime as dt

    assert duration_text(dt.timedelta(days=8)) == "8d" and duration_text(dt.timedelta(seconds=5400)) == "1h30m"
    assert shown(["a", "b"]) == "a; b" and shown(dt.timedelta(0)) == "0s" and shown(True) == "true"
    assert openssl_dn("CN=Line 3,O=Acme\\, Inc.,C=DE") == "C=DE, O=Acme\\, Inc., CN=Line 3"
    assert shown("CN=x,O=y", "subject") == "O=y, CN=x"


def test_show_prints_dn_in_openssl_order(pki, fleet):
    root, line, _ = fleet
    out = pki("ca", "show", line["sn"])
    assert re.search(r"^issuer +CN=Root$", out, re.M) and "[" not in out


def test_init_on_unreachable_postgresql_is_store_unavailable(tmp_path, capsys):
    code = main(["--home", str(tmp_path / "h"), "--database-url", "postgresql://pki:x@127.0.0.1:1/none", "init"])
    err = capsys.readouterr().err
    assert code == EXIT_CODES["store"] == 9 and err.startswith("error[store_unavailable]: ")


def test_version_and_help_import_no_store(tmp_path):
    probe = ("import sys; from pki.cli.main import main; main(['--help']); main(['--version']); "
             "print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'sqlalchemy', 'sqlmodel', 'alembic', 'fastapi', 'cryptography', 'pydantic', 'httpx'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_lazy_table_entries_import_and_choices_match():
    import importlib

    import click

    from pki.cli import choices
    from pki.keys import KEY_TYPES
    from pki.store import DeviceStatus
    from pki.x509.crl import REVOCATION_REASONS

    for name, (target, help_text) in LAZY_COMMANDS.items():
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command) and command.name == name and help_text
    assert choices.KEY_TYPES == KEY_TYPES
    assert choices.REVOCATION_REASONS == tuple(REVOCATION_REASONS)
    assert choices.DEVICE_STATUSES == tuple(DeviceStatus)
    from pki.cli.device import EXPORT_FIELDS, MAX_ITEM_BYTES
    from pki.store.device_repos import PUBLIC_COLUMNS
    from pki.x509 import MAX_ITEM_BYTES as REAL_MAX

    assert EXPORT_FIELDS == PUBLIC_COLUMNS and MAX_ITEM_BYTES == REAL_MAX
    from pki.cli.lifecycle import _MAX_ITEM_BYTES

    assert _MAX_ITEM_BYTES == REAL_MAX


def test_head_revision_matches_alembic():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from pki.store.engine import _MIGRATIONS, head_revision

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    assert head_revision() == ScriptDirectory.from_config(config).get_current_head()


def test_provision_warns_of_keys_elsewhere_reports_progress_and_ctrl_c_hint(pki, settings, ctx, tmp_path, caplog,
                                                                          capsys, monkeypatch):
    root = pki("ca", "create", "--name", "Factory", "--json")
    pki("device", "issue", "--ca", root["sn"], "--generate", "--client-id", "m-2", "--out", str(tmp_path / "first"))
    manifest = tmp_path / "m.csv"
    manifest.write_text("m-1\nm-2\nm-3\n")
    with caplog.at_level("WARNING", logger="pki.provision"):
        code = main(["--home", str(settings.home), "--database-url", settings.database_url, "device", "provision",
                     "--ca", root["sn"], "--manifest", str(manifest), "--out", str(tmp_path / "out"), "--workers",
                     "1", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["without_key"] == ["m-2"]
    assert any("m-2" in r.getMessage() and "key_file null" in r.getMessage() for r in caplog.records)
    # not a terminal: log lines, not a redrawn bar
    assert "provision: 3/3 rows (100%)" in err and "\r" not in err

    import pki.services.provision as provisioning

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(provisioning, "provision", interrupted)
    code = main(["--home", str(settings.home), "--database-url", settings.database_url, "device", "provision",
                 "--ca", root["sn"], "--manifest", str(manifest), "--out", str(tmp_path / "out2")])
    err = capsys.readouterr().err
    assert code == 130 and "Run the same command again to finish" in err


def test_even_serial_migration_pads_old_rows(tmp_path):
    from sqlalchemy import text

    from pki.store import Store

    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    from alembic import command

    with store.engine.begin() as conn:
        command.upgrade(store._alembic_config(conn), "0011")
    with store.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO ca_certificate (instance, sn, name, status, source, subject, issuer, not_before, not_after,"
            " fingerprint_sha256, spki_sha256, key_type, cert_der, created_at, updated_at, status_changed_at)"
            " VALUES ('default', 'abc', 'old', 'ACTIVE', 'registered', 'CN=x', 'CN=x', :t, :t, 'f', 's', 'ec-p256',"
            " :der, :t, :t, :t)"), {"t": "2026-01-01 00:00:00", "der": b"\x30\x00"})
    store.upgrade()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT sn FROM ca_certificate")).scalar_one() == "0abc"
    store.dispose()


def test_quick_show_gives_the_full_answer(pki, fleet, settings, ctx):
    from pki.services import quick, renewal

    root, _, issued = fleet
    device = issued[(root["sn"], "a1")]
    fast = quick.show_device(settings, ca=root["sn"], sn=device["sn"])
    if not settings.database_url.startswith("sqlite"):
        assert fast is None
        return
    # The full path of `device show` (renewal.device_detail): PEMs and the replacements both ways too.
    assert fast == renewal.device_detail(ctx, ca=root["sn"], sn=device["sn"])
    new = renewal.renew_device(ctx, ca=root["sn"], sn=device["sn"]).as_json()
    for sn in (device["sn"], new["sn"]):
        assert quick.show_device(settings, ca=root["sn"], sn=sn) == renewal.device_detail(ctx, ca=root["sn"], sn=sn)
    assert quick.show_device(settings, ca=root["sn"], sn=device["sn"])["replaced_by"] == [new["sn"]]
    assert quick.show_device(settings, ca=root["sn"], sn="01") is None  # missing: the full path says why


def test_csv_export_holds_what_the_json_holds(pki, fleet, ctx):
    pki("device", "revoke", "--client-id", "a2", "--reason", "superseded")
    rows = list(csv.DictReader(io.StringIO(pki("device", "list", "--all", "--output", "csv"), newline="")))
    items = [json.loads(x) for x in pki("device", "list", "--all", "--output", "jsonl").splitlines()]
    assert rows == [{k: "" if v is None else v for k, v in item.items()} for item in items]
    assert any(r["revoked_at"] and r["revocation_reason"] == "superseded" for r in rows)


def test_a_refused_ttl_says_it_in_the_form_it_takes(pki, ctx):
    before = snapshot(ctx)
    code, _, err = pki("code", "new", "--ttl", "30d", ok=False)
    assert code == EXIT_CODES["invalid_input"] and "got 30d" in err and "days, " not in err
    assert snapshot(ctx) == before


def test_bulk_and_single_revocations_race_to_one_record_each(ctx):
    import threading

    from pki.errors import InvalidState
    from pki.services import bulk_revoke, devices, managed

    ca = managed.create_ca(ctx, name="Race Root")
    made = [devices.issue_device(ctx, ca=ca.sn, generate=True, client_id=f"race-{i}").device for i in range(24)]
    errors = []

    def bulk():
        try:
            bulk_revoke.revoke_lines(ctx, [d.client_id for d in made], reason="keyCompromise", batch_size=5)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def singles():
        for d in reversed(made):
            try:
                devices.revoke_device(ctx, ca=ca.sn, sn=d.sn, reason="superseded")
            except InvalidState as exc:
                assert exc.code == "device_revoked"
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=bulk), threading.Thread(target=singles)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    records = [r for r in audit.list_records(ctx, limit=1000).items if r.details.get("operation") == "device.revoke"]
    subjects = [r.details["subject"] for r in records]
    assert sorted(subjects) == sorted(f"{ca.sn}/{d.sn}" for d in made)  # each revoked once, recorded once
    for d in made:
        shown_ = devices.show_device(ctx, ca=ca.sn, sn=d.sn)
        assert shown_.status == "REVOKED"
        assert {r.details["reason"] for r in records if r.details["subject"] == f"{ca.sn}/{d.sn}"} == \
            {shown_.revocation_reason}
    assert audit.check(ctx).ok


@pytest.mark.parametrize("filters", [("--status", "REVOKED"), ("--status", "ACTIVE"),
                                     ("--expiring-before", "2100-01-01"), ("--expiring-before", "2000-01-01")])
def test_csv_export_filters_match_json(pki, fleet, filters):
    root, line, _ = fleet
    pki("device", "revoke", "--client-id", "b1")
    for scope in ((), ("--ca", line["sn"])):
        rows = list(csv.DictReader(io.StringIO(pki("device", "list", "--all", "--output", "csv", *filters, *scope),
                                               newline="")))
        items = [json.loads(x) for x in pki("device", "list", "--all", "--output", "jsonl", *filters,
                                            *scope).splitlines()]
        assert rows == [{k: "" if v is None else v for k, v in item.items()} for item in items]
