"""Broker tokens: signing keys (their private halves are custody_key rows), tokens, a revision counter.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from pki.store.types import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_signing_key",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("kid", sa.String(40), sa.ForeignKey("custody_key.key_id"), nullable=False),
        sa.Column("alg", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("public_jwk", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("superseded_at", UTCDateTime, nullable=True),
        sa.Column("retired_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("kid", name="uq_token_signing_key_kid"),
    )
    op.create_index("ix_token_signing_key_instance_status", "token_signing_key", ["instance", "status"])
    op.create_table(
        "broker_token",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("token_id", sa.String(40), nullable=False),
        sa.Column("kid", sa.String(40), nullable=False),
        sa.Column("client_id", sa.String(256), nullable=False),
        sa.Column("username", sa.String(256), nullable=True),
        sa.Column("superuser", sa.Boolean, nullable=False),
        sa.Column("claims", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("issued_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("token_id", name="uq_broker_token_token_id"),
    )
    op.create_index("ix_broker_token_instance_client", "broker_token", ["instance", "client_id", "id"])
    op.create_index("ix_broker_token_kid_expires", "broker_token", ["kid", "expires_at"])
    op.create_table(
        "token_revision",
        sa.Column("instance", sa.String(64), primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("token_revision")
    op.drop_index("ix_broker_token_kid_expires", table_name="broker_token")
    op.drop_index("ix_broker_token_instance_client", table_name="broker_token")
    op.drop_table("broker_token")
    op.drop_index("ix_token_signing_key_instance_status", table_name="token_signing_key")
    op.drop_table("token_signing_key")
