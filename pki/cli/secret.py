"""`pki secret ...`: one device, one secret."""

from __future__ import annotations

import click

__all__ = ["secret_group"]


@click.group("secret")
def secret_group() -> None:
    """Per-device secrets for the broker's username/password check."""
