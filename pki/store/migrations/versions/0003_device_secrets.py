"""Device secrets and enrollment groups.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from pki.store.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_secret",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("access_key_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sealed_primary", sa.LargeBinary, nullable=False),
        sa.Column("sealed_secondary", sa.LargeBinary, nullable=True),
        sa.Column("secondary_expires_at", UTCDateTime, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("status_changed_at", UTCDateTime, nullable=False),
        sa.Column("rotated_at", UTCDateTime, nullable=True),
        sa.UniqueConstraint("instance", "client_id", name="uq_secret_instance_client_id"),
        sa.UniqueConstraint("access_key_id", name="uq_secret_access_key_id"),
    )
    op.create_index("ix_secret_instance_id", "device_secret", ["instance", "id"])
    op.create_index("ix_secret_instance_status_id", "device_secret", ["instance", "status", "id"])
    op.create_table(
        "secret_group",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("access_key_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("status_changed_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("instance", "name", name="uq_secret_group_instance_name"),
        sa.UniqueConstraint("access_key_id", name="uq_secret_group_access_key_id"),
    )
    op.create_index("ix_secret_group_instance_id", "secret_group", ["instance", "id"])
    op.create_table(
        "secret_group_block",
        sa.Column("group_id", sa.Integer, sa.ForeignKey("secret_group.id", ondelete="CASCADE"), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("group_id", "client_id", name="pk_secret_group_block"),
    )


def downgrade() -> None:
    op.drop_table("secret_group_block")
    op.drop_index("ix_secret_group_instance_id", table_name="secret_group")
    op.drop_table("secret_group")
    op.drop_index("ix_secret_instance_status_id", table_name="device_secret")
    op.drop_index("ix_secret_instance_id", table_name="device_secret")
    op.drop_table("device_secret")
