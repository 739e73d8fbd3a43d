"""HTTP service: request nonces and rate-limit buckets shared by every process.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from pki.store.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "http_nonce",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("access_key_id", sa.String(40), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("access_key_id", "nonce", name="uq_http_nonce"),
    )
    op.create_index("ix_http_nonce_expires_at", "http_nonce", ["expires_at"])
    op.create_table(
        "http_rate_bucket",
        sa.Column("access_key_id", sa.String(40), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("http_rate_bucket")
    op.drop_index("ix_http_nonce_expires_at", table_name="http_nonce")
    op.drop_table("http_nonce")
