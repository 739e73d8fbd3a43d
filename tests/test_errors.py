"""The one error registry (pki/errors.py ERROR_CODES): every code raised anywhere is in it, with the family
of the class that raises it, and in the README's error table; and both front ends derive from it."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from pki import errors
from pki.errors import ERROR_CODES, FAMILIES, PkiError, family_of

ROOT = Path(__file__).resolve().parent.parent
PKI = ROOT / "pki"


def _modules():
    for path in sorted(PKI.rglob("*.py")):
        if "migrations" in path.parts or path.name == "__main__.py":
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        yield name, path, ast.parse(path.read_text(encoding="utf-8"))


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _error_class(module, name: str | None):
    obj = getattr(module, name, None) if name else None
    if obj is None and name:
        obj = getattr(errors, name, None)
    return obj if isinstance(obj, type) and issubclass(obj, PkiError) else None


def _takes_code(module, tree) -> dict[str, tuple[int, str | None]]:
    """Functions of a module that take a code (``_bad(code, message)``): its index and the class they build."""
    takes = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            params = [a.arg for a in node.args.posonlyargs + node.args.args]
            if "code" not in params:
                continue
            built = {_call_name(c.func) for c in ast.walk(node) if isinstance(c, ast.Call)
                     and any(k.arg == "code" and isinstance(k.value, ast.Name) and k.value.id == "code"
                             for k in c.keywords)}
            cls = next((_error_class(module, b) for b in built if _error_class(module, b)), None)
            offset = 1 if params and params[0] in ("self", "cls") else 0
            takes[node.name] = (params.index("code") - offset, cls.family if cls else None)
    return takes


def _imported(name: str, path: Path, tree, own: dict[str, dict]) -> dict[str, tuple[int, str | None]]:
    """What a module imports by name from another pki module that takes a code."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            source = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            for alias in node.names:
                if alias.name in own.get(source, {}):
                    found[alias.asname or alias.name] = own[source][alias.name]
    return found


def _raised_codes() -> list[tuple[str, str | None, str]]:
    """(code, family of the raising class or None when not known statically, where) for every literal code."""
    parsed = [(name, path, tree, importlib.import_module(name)) for name, path, tree in _modules()]
    own = {name: _takes_code(module, tree) for name, _, tree, module in parsed}
    found = []
    for name, path, tree, module in parsed:
        where = str(path.relative_to(ROOT))
        takes_code = {**_imported(name, path, tree, own), **own[name]}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                called = _call_name(node.func)
                cls = _error_class(module, called)
                for kw in node.keywords:
                    if kw.arg == "code" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        found.append((kw.value.value, cls.family if cls else None, where))
                if called in takes_code and isinstance(node.func, ast.Name):
                    index, family = takes_code[called]
                    if index < len(node.args):
                        arg = node.args[index]
                        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                            found.append((arg.value, family, where))
            elif isinstance(node, ast.ClassDef):
                cls = _error_class(module, node.name)
                if cls is not None:
                    found.append((cls.default_code, cls.family, where))
    return found


RAISED = _raised_codes()


def test_the_scan_finds_the_codes_it_should():
    # Guards the scanner itself: a scan that finds nothing would pass everything below.
    codes = {code for code, _, _ in RAISED}
    assert {"trailing_data", "ca_not_found", "request_too_large", "signature_invalid", "server_unreachable",
            "weak_key", "io_error"} <= codes
    assert len(codes) > 120


@pytest.mark.parametrize("code,family,where", RAISED, ids=lambda v: v if isinstance(v, str) else "")
def test_every_raised_code_is_registered_with_its_family(code, family, where):
    assert code in ERROR_CODES, f"{where} raises {code!r}, which pki/errors.py ERROR_CODES does not list"
    if family is not None:
        assert ERROR_CODES[code] == family, f"{where} raises {code!r} as {family}, registered as {ERROR_CODES[code]}"


def test_registry_has_no_code_twice_and_only_known_families():
    tree = ast.parse((PKI / "errors.py").read_text(encoding="utf-8"))
    listed = [a.value for call in ast.walk(tree) if isinstance(call, ast.Call) and _call_name(call.func) == "_codes"
              for a in call.args[1:] if isinstance(a, ast.Constant)]
    assert len(listed) == len(set(listed)) == len(ERROR_CODES)
    assert set(ERROR_CODES.values()) <= {f.family for f in FAMILIES}


def test_every_registered_code_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Errors", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([a-z0-9_]+)`", section))
    missing = sorted(set(ERROR_CODES) - documented)
    assert not missing, f"README's error table does not list {missing}"


def test_front_ends_cover_every_family():
    from pki.cli.render import EXIT_CODES
    from pki.http.problems import HTTP_STATUS

    for family in FAMILIES:
        assert family.family in EXIT_CODES
        assert family.family in HTTP_STATUS


def test_unknown_code_family_is_internal():
    assert family_of("no_such_code") == "internal"
    assert family_of("request_too_large") == "invalid_input"
