"""The layers of DESIGN.md, checked on the source: dependencies point down only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "pki"
FRONT_ENDS = {"click", "fastapi", "starlette", "uvicorn"}


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against the package)."""
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    # A package's __init__.py is the package itself: `from ..x` there climbs from the package.
    package = ".".join(parts[:-1])
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
                names.add(target)
                names.update(f"{target}.{alias.name}" for alias in node.names)
            elif node.module:
                names.add(node.module)
    return names


def _files(*packages: str):
    for package in packages:
        yield from sorted((PKG / package).rglob("*.py"))


def _front_ends(path: Path) -> set[str]:
    return {n for n in _imports(path) if n.split(".")[0] in FRONT_ENDS or n.startswith(("pki.cli", "pki.http"))}


@pytest.mark.parametrize("path", list(_files("services", "x509", "keys", "store")), ids=lambda p: str(p.relative_to(PKG)))
def test_lower_layers_never_import_a_front_end(path):
    bad = _front_ends(path)
    assert not bad, f"{path.relative_to(PKG)} imports {sorted(bad)}"


def test_secrets_package_never_imports_a_front_end():
    """pki.services.secrets is a package: every module of it, __init__ included, is walked and resolved."""
    files = {p.name: p for p in _files("services/secrets")}
    assert {"__init__.py", "formulas.py", "public.py", "credentials.py", "groups.py", "verify.py"} <= files.keys()
    for path in files.values():
        bad = _front_ends(path)
        assert not bad, f"{path.relative_to(PKG)} imports {sorted(bad)}"
    # Relative imports one level deeper than services/ resolve to the modules they name.
    assert "pki.services.secrets.formulas" in _imports(files["__init__.py"])
    assert {"pki.errors", "pki.store.secret_repos", "pki.services.context"} <= _imports(files["credentials.py"])


@pytest.mark.parametrize("layer", ["x509", "keys", "store"])
def test_x509_keys_store_never_import_each_other_or_services(layer):
    others = {"x509", "keys", "store", "services"} - {layer}
    for path in _files(layer):
        bad = {n for n in _imports(path) if n.startswith("pki.") and n.split(".")[1] in others}
        assert not bad, f"{path.relative_to(PKG)} imports {sorted(bad)}"


@pytest.mark.parametrize("front", ["cli", "http"])
def test_front_ends_never_open_the_store(front):
    for path in _files(front):
        bad = {n for n in _imports(path) if n.startswith(("pki.store", "sqlalchemy", "sqlmodel"))}
        assert not bad, f"{path.relative_to(PKG)} imports {sorted(bad)}"


def test_authn_takes_plain_request_values():
    """pki.http.deps adapts the Starlette request; authentication itself knows no web framework."""
    bad = {n for n in _imports(PKG / "services" / "authn.py") if n.split(".")[0] in FRONT_ENDS}
    assert not bad, f"services/authn.py imports {sorted(bad)}"


def test_dataplane_is_pure():
    """pki.dataplane (topics, rules, mosquitto files) sits beside x509: the base and the standard library only."""
    files = list(_files("dataplane"))
    assert {p.name for p in files} >= {"__init__.py", "topics.py", "rules.py", "mosquitto.py"}
    for path in files:
        bad = {n for n in _imports(path) if (n.startswith("pki.") and n.split(".")[1] not in ("errors", "ids", "dataplane"))
               or n.split(".")[0] in FRONT_ENDS | {"sqlalchemy", "sqlmodel", "alembic", "httpx"}}
        assert not bad, f"{path.relative_to(PKG)} imports {sorted(bad)}"


def test_provision_package_never_imports_a_front_end():
    files = {p.name: p for p in _files("services/provision")}
    assert {"__init__.py", "manifest.py", "workers.py", "writer.py"} <= files.keys()
    for path in files.values():
        bad = _front_ends(path)
        assert not bad, f"{path.relative_to(PKG)} imports {sorted(bad)}"
    assert "pki.durable" in _imports(files["writer.py"]) | _imports(files["workers.py"])


def test_x509_never_imports_the_store():
    for path in _files("x509"):
        bad = {n for n in _imports(path) if n.startswith(("pki.store", "sqlalchemy", "sqlmodel", "alembic"))}
        assert not bad, f"{path.relative_to(PKG)} imports {sorted(bad)}"


@pytest.mark.parametrize("module", ["errors", "clock", "ids", "durable", "process"])
def test_base_modules_import_nothing_above_them(module):
    above = ("pki.x509", "pki.keys", "pki.store", "pki.services", "pki.cli", "pki.http", "pki.dataplane")
    bad = {n for n in _imports(PKG / f"{module}.py") if n.startswith(above)}
    assert not bad, f"{module}.py imports {sorted(bad)}"
