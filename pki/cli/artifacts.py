"""`pki artifacts ...`, `pki crl ...` and `pki serve`: what a broker's TLS handshake reads."""

from __future__ import annotations

import click

__all__ = ["artifacts_group", "crl_group"]


@click.group("artifacts")
def artifacts_group() -> None:
    """Publish the files a broker's TLS handshake reads."""


@click.group("crl")
def crl_group() -> None:
    """CRLs of registered CAs, signed offline where their keys live."""
