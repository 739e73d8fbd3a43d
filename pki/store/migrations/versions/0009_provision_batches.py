"""The device list of each provisioning batch, companion of its (hash-chained) audit record.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provision_batch_device",
        sa.Column("batch_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("sn", sa.String(42), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "position", name="pk_provision_batch_device"),
    )


def downgrade() -> None:
    op.drop_table("provision_batch_device")
