"""CRL state, uploaded CRLs, artifact generations.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from pki.store.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crl_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "ca_id", sa.Integer, sa.ForeignKey("ca_certificate.id", ondelete="CASCADE"), nullable=False, unique=True
        ),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("crl_number", sa.String(42), nullable=False),
        sa.Column("this_update", UTCDateTime, nullable=False),
        sa.Column("next_update", UTCDateTime, nullable=False),
        sa.Column("entries_sha256", sa.String(64), nullable=False),
        sa.Column("entry_count", sa.Integer, nullable=False),
        sa.Column("crl_der", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "ocsp_signer",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "ca_id", sa.Integer, sa.ForeignKey("ca_certificate.id", ondelete="CASCADE"), nullable=False, unique=True
        ),
        sa.Column("key_id", sa.String(40), sa.ForeignKey("custody_key.key_id"), nullable=False),
        sa.Column("cert_der", sa.LargeBinary, nullable=False),
        sa.Column("not_before", UTCDateTime, nullable=False),
        sa.Column("not_after", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ocsp_signer")
    op.drop_table("crl_state")
