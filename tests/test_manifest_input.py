"""Manifest input read with bounds: no line is read whole past its cap, and no cell is silently trimmed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import snapshot
from pki.errors import InvalidInput
from pki.services import managed
from pki.services.provision import provision
from pki.services.provision.manifest import MAX_LINE_BYTES


@pytest.fixture
def factory_ca(ctx):
    return managed.create_ca(ctx, name="Manifest Root").sn


@pytest.mark.parametrize("body,line", [
    ("dev-1\n dev-2\n", 2),
    ("dev-1\ndev-2 \n", 2),
    ("dev-1,dns:ok.example\ndev-2, dns:ok.example\n", 2),
    ("client_id\ndev-1\t\n", 2),
])
def test_cells_with_surrounding_spaces_are_refused(ctx, factory_ca, tmp_path, body, line):
    manifest = tmp_path / "m.csv"
    manifest.write_text(body)
    before = snapshot(ctx)
    with pytest.raises(InvalidInput) as err:
        provision(ctx, ca=factory_ca, manifest=manifest, out=tmp_path / "out", workers=1)
    assert err.value.code == "manifest_invalid_row" and err.value.data["line"] == line
    assert "spaces" in err.value.message
    assert snapshot(ctx) == before
    assert not (tmp_path / "out").exists()


def test_an_overlong_line_is_refused_before_it_is_read_whole(ctx, factory_ca, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("dev-1\n" + "a" * (MAX_LINE_BYTES * 4) + "\n")
    before = snapshot(ctx)
    with pytest.raises(InvalidInput) as err:
        provision(ctx, ca=factory_ca, manifest=manifest, out=tmp_path / "out", workers=1)
    assert err.value.code == "manifest_invalid_row" and err.value.data["reason"] == "line_too_long"
    assert err.value.data["line"] == 2
    assert snapshot(ctx) == before


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_line_is_refused(ctx, factory_ca, tmp_path):
    # /dev/zero has no newline and no end: reading a whole line would never stop growing.
    with pytest.raises(InvalidInput) as err:
        provision(ctx, ca=factory_ca, manifest=Path("/dev/zero"), out=tmp_path / "out", workers=1)
    assert err.value.data["reason"] == "line_too_long"


def test_blank_rows_and_indented_comments_are_still_skipped(ctx, factory_ca, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("client_id\n\n   \n  # a comment\ndev-1\n")
    result = provision(ctx, ca=factory_ca, manifest=manifest, out=tmp_path / "out", workers=1)
    assert result.issued == 1
