"""ca_request: managed CAs whose CSR went to an outside CA, until the signed certificate is installed.

Revision ID: 0016
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

from pki.store.types import UTCDateTime

revision = "0016"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ca_request",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("ref", sa.String(40), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("spki_sha256", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(40), sa.ForeignKey("custody_key.key_id"), nullable=False),
        sa.Column("csr_der", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("instance", "ref", name="uq_ca_request_instance_ref"),
        sa.UniqueConstraint("instance", "spki_sha256", name="uq_ca_request_instance_spki"),
    )


def downgrade() -> None:
    op.drop_table("ca_request")
