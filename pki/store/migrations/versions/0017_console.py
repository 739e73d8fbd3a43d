"""Console sessions and sign-in throttles (pki/store/console_models.py).

Revision ID: 0017
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

from pki.store.types import UTCDateTime

revision = "0017"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_session",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("access_key_id", sa.String(40), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("last_seen_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_console_session_access_key_id", "console_session", ["access_key_id"])
    op.create_index("ix_console_session_expires_at", "console_session", ["expires_at"])
    op.create_table(
        "console_throttle",
        sa.Column("key", sa.String(96), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("window_start", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("console_throttle")
    op.drop_index("ix_console_session_expires_at", table_name="console_session")
    op.drop_index("ix_console_session_access_key_id", table_name="console_session")
    op.drop_table("console_session")
