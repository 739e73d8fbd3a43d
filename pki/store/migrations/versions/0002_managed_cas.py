"""Managed CAs: key custody, CA parent and key links, device source.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from pki.store.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "custody_key",
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    with op.batch_alter_table("ca_certificate") as batch:
        batch.add_column(sa.Column("key_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("parent_id", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_ca_key_id", "custody_key", ["key_id"], ["key_id"])
        batch.create_foreign_key("fk_ca_parent_id", "ca_certificate", ["parent_id"], ["id"])
    with op.batch_alter_table("device_certificate") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="issued"))
    op.create_index("ix_device_ca_not_after", "device_certificate", ["ca_id", "not_after"])


def downgrade() -> None:
    op.drop_index("ix_device_ca_not_after", table_name="device_certificate")
    with op.batch_alter_table("device_certificate") as batch:
        batch.drop_column("source")
    with op.batch_alter_table("ca_certificate") as batch:
        batch.drop_constraint("fk_ca_parent_id", type_="foreignkey")
        batch.drop_constraint("fk_ca_key_id", type_="foreignkey")
        batch.drop_column("parent_id")
        batch.drop_column("key_id")
    op.drop_table("custody_key")
