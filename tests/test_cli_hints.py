"""Services speak to every front end: their errors name no `pki` command and no --flag, but carry the
field and ids a front end needs; the CLI (pki/cli/hints.py) turns code and data into its own advice."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest

from tests.support import snapshot
from tests.support.http_app import app_for, make_user, signed_client
from pki.cli import hints
from pki.cli.render import EXIT_CODES
from pki.client import ApiError
from pki.errors import ERROR_CODES, InvalidInput, NotFound
from pki.services import managed
from pki.services import secrets as secret_service

ROOT = Path(__file__).resolve().parent.parent
#: Below the front ends: what these raise reaches the CLI and HTTP alike.
SERVICE_SOURCES = ("pki/services", "pki/store", "pki/keys", "pki/x509", "pki/ids.py", "pki/config.py")
#: CLI advice: a `pki ...` command, or a flag (--days; not a PEM's -----BEGIN).
CLI_ADVICE = re.compile(r"`pki |(?<![\w-])--[a-z]")
_ERROR_SUFFIXES = ("Error", "Input", "Found", "Conflict", "State", "Denied", "Unavailable", "Unauthenticated",
                   "Limited")


def _sources() -> list[Path]:
    out: list[Path] = []
    for name in SERVICE_SOURCES:
        path = ROOT / name
        out += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return out


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _error_helpers(tree: ast.Module) -> set[str]:
    """Functions of the module that build an error (annotated to return one), e.g. ``_bad``, ``_refuse``."""
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.returns is not None and (_name(node.returns) or "").endswith(_ERROR_SUFFIXES)}


def _is_error_call(node: ast.Call, helpers: set[str]) -> bool:
    name = _name(node.func) or ""
    return name.endswith(_ERROR_SUFFIXES) or name in helpers or name.startswith("_bad")


def _texts(node: ast.AST):
    """The string constants of an argument: plain, f-string parts, concatenations, conditionals."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub


def test_no_error_below_the_front_ends_speaks_cli():
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        helpers = _error_helpers(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _is_error_call(node, helpers):
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    for text in _texts(arg):
                        if CLI_ADVICE.search(text.value):
                            found.append(f"{path.relative_to(ROOT)}:{text.lineno}: {text.value!r}")
    assert not found, "CLI commands or flags in service errors (put them in pki/cli/hints.py):\n" + "\n".join(found)


def test_no_string_below_the_front_ends_speaks_cli_outside_docstrings():
    """Messages are also built ahead of the raise (a constant, an ``advice`` variable, a warning).  Lines
    starting with '#' are comments written into operator files (mosquitto.conf) and may name commands."""
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and not node.value.startswith("#") and CLI_ADVICE.search(node.value)):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)


def test_the_scan_sees_cli_advice_in_every_form():
    """The scan itself: a plain message, an f-string part, a helper, a concatenation."""
    source = (
        "def _refuse(path, problem) -> InvalidInput: ...\n"
        "raise NotFound(f'no CA {ref!r}; `pki ca list` shows them', code='ca_not_found')\n"
        "raise InvalidInput('days ' + 'are wrong; ask for fewer --days')\n"
        "raise _refuse(path, 'see `pki policy actions`')\n"
        "raise _bad('crl_stale', f'{what}: pass --ca')\n"
        "raise InvalidInput('-----BEGIN is not a flag', code='invalid_pem')\n"
    )
    tree = ast.parse(source)
    helpers = _error_helpers(tree)
    hits = [text.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and _is_error_call(node, helpers)
            for arg in node.args for text in _texts(arg) if CLI_ADVICE.search(text.value)]
    assert sorted(hits) == [2, 3, 4, 5]


# -- the hint table --------------------------------------------------------------------------------------


def test_every_hint_is_for_a_registered_code_and_formats():
    for code, template in hints.HINTS.items():
        assert code in ERROR_CODES, code
        assert "`pki " in template or "--" in template or "PKI_" in template, code
        keys = {name: "X" for _, name, _, _ in string.Formatter().parse(template) if name}
        assert hints.hint_of(code, keys) == template.format(**keys)


def test_flags_of_fields():
    assert hints.flag_of("days") == "--days"
    assert hints.flag_of("client_id") == "--client-id"
    assert hints.flag_of("path_length") == "--path-length"
    assert hints.flag_of("fmt") == "--format"
    # a policy document's path (also sent as field) is not a flag
    assert hints.flag_of("Statement[0].Action") is None
    assert hints.flag_of(None) is None and hints.flag_of(3) is None


def test_a_hint_missing_its_data_is_left_out():
    bare = NotFound("client id 'x' has no secret", code="secret_not_found")
    assert hints.render(bare) == "error[secret_not_found]: client id 'x' has no secret"
    full = NotFound("client id 'x' has no secret", code="secret_not_found", client_id="x")
    assert hints.render(full).splitlines()[1].startswith("hint: `pki secret register x` creates one")
    assert hints.render(InvalidInput("bad", code="invalid_keep", field="keep")) == "error[invalid_keep]: --keep: bad"


# -- the CLI, locally --------------------------------------------------------------------------------------


def test_cli_names_the_flag_and_the_hint(ctx, pki):
    before = snapshot(ctx)
    code, out, err = pki("ca", "create", "--name", "Root", "--days", "0")
    first, *rest = err.splitlines()
    assert code == EXIT_CODES["invalid_input"] and out == "" and not rest
    assert first == "error[invalid_validity]: --days: days must be between 1 and 36500"
    assert snapshot(ctx) == before

    root = managed.create_ca(ctx, name="Root")
    before = snapshot(ctx)
    code, _, err = pki("device", "issue", "--ca", root.sn, "--generate", "--client-id", "d1", "--days", "5000")
    assert code == EXIT_CODES["invalid_input"]
    assert err.startswith("error[validity_too_long]: --days: days must be between 1 and 3650 (PKI_MAX_DEVICE_DAYS)")
    code, _, err = pki("device", "issue", "--ca", root.sn, "--generate")
    assert err.startswith("error[missing_client_id]: --client-id: ")
    code, _, err = pki("device", "show", "--ca", root.sn, "abcdef")
    assert code == EXIT_CODES["not_found"] and err.splitlines()[1] == f"hint: `pki device list --ca {root.sn}` shows them"
    code, _, err = pki("secret", "show", "dev-9")
    assert code == EXIT_CODES["not_found"] and err.startswith("error[secret_not_found]: ")
    assert "\nhint: `pki secret register dev-9` creates one" in err
    code, _, err = pki("ca", "show", "abcdef")
    assert err.splitlines()[1] == "hint: `pki ca list` shows them"
    assert snapshot(ctx) == before


def test_errors_from_the_server_get_the_same_flag_and_hint(ctx):
    """The problem document's members come back as ApiError.data: the CLI renders them as a local error."""
    root = managed.create_ca(ctx, name="Root")
    api = signed_client(app_for(ctx), make_user(ctx, "admin", "PkiAdministratorAccess"))
    before = snapshot(ctx)
    with pytest.raises(ApiError) as remote:
        api.call("POST", f"/v1/cas/{root.sn}/devices", json={"generate": True, "client_id": "d1", "days": 5000})
    with pytest.raises(InvalidInput) as local:
        from pki.services import devices
        devices.issue_device(ctx, ca=root.sn, generate=True, client_id="d1", days=5000)
    assert hints.render(remote.value) == hints.render(local.value)
    assert hints.render(remote.value).startswith("error[validity_too_long]: --days: ")
    with pytest.raises(ApiError) as remote:
        api.call("GET", "/v1/secrets/dev-9")
    with pytest.raises(NotFound) as local:
        secret_service.show_secret(ctx, client_id="dev-9")
    assert hints.render(remote.value) == hints.render(local.value)
    assert "hint: `pki secret register dev-9`" in hints.render(remote.value)
    tables = ("http_nonce", "http_rate_bucket", "audit_record", "audit_head")
    after = snapshot(ctx)
    assert {k: v for k, v in after.items() if k not in tables} == {k: v for k, v in before.items() if k not in tables}


# -- HTTP: the problem carries the field, and no CLI advice ----------------------------------------------------


def test_problem_body_carries_the_field_and_no_cli_advice(ctx):
    root = managed.create_ca(ctx, name="Root")
    api = signed_client(app_for(ctx), make_user(ctx, "admin", "PkiAdministratorAccess"))
    before_devices = snapshot(ctx)["device_certificate"]
    r = api.request("POST", f"/v1/cas/{root.sn}/devices", json={"generate": True, "client_id": "d1", "days": 5000})
    body = r.json()
    assert r.status_code == 400 and body["code"] == "validity_too_long" and body["field"] == "days"
    assert not CLI_ADVICE.search(r.text)
    r = api.request("GET", f"/v1/cas/{root.sn}/devices/abcdef")
    body = r.json()
    assert r.status_code == 404 and body["code"] == "device_not_found" and body["ca_sn"] == root.sn
    assert not CLI_ADVICE.search(r.text)
    r = api.request("GET", "/v1/cas/abcdef")
    assert r.status_code == 404 and r.json()["code"] == "ca_not_found" and not CLI_ADVICE.search(r.text)
    r = api.request("GET", "/v1/secrets/dev-9")
    assert r.status_code == 404 and r.json()["client_id"] == "dev-9" and not CLI_ADVICE.search(r.text)
    assert snapshot(ctx)["device_certificate"] == before_devices
