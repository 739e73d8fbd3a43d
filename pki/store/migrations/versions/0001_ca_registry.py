"""CA registry, register codes, device certificates.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from pki.store.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ca_certificate",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("sn", sa.String(42), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("issuer", sa.Text, nullable=False),
        sa.Column("not_before", UTCDateTime, nullable=False),
        sa.Column("not_after", UTCDateTime, nullable=False),
        sa.Column("fingerprint_sha256", sa.String(64), nullable=False),
        sa.Column("spki_sha256", sa.String(64), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("cert_der", sa.LargeBinary, nullable=False),
        sa.Column("chain_pem", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("status_changed_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("instance", "sn", name="uq_ca_instance_sn"),
        sa.UniqueConstraint("instance", "fingerprint_sha256", name="uq_ca_instance_fingerprint"),
        sa.UniqueConstraint("instance", "spki_sha256", name="uq_ca_instance_spki"),
    )
    op.create_index("ix_ca_instance_status_id", "ca_certificate", ["instance", "status", "id"])

    op.create_table(
        "register_code",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("code_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("used_at", UTCDateTime, nullable=True),
        sa.Column(
            "used_by_ca_id",
            sa.Integer,
            sa.ForeignKey("ca_certificate.id", ondelete="SET NULL"),
            nullable=True,
        ),
    )

    op.create_table(
        "device_certificate",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("ca_id", sa.Integer, sa.ForeignKey("ca_certificate.id"), nullable=False),
        sa.Column("sn", sa.String(42), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revocation_reason", sa.String(32), nullable=True),
        sa.Column("revoked_at", UTCDateTime, nullable=True),
        sa.Column("fingerprint_sha256", sa.String(64), nullable=False),
        sa.Column("key_type", sa.String(16), nullable=False),
        sa.Column("not_before", UTCDateTime, nullable=False),
        sa.Column("not_after", UTCDateTime, nullable=False),
        sa.Column("cert_der", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("status_changed_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("ca_id", "sn", name="uq_device_ca_sn"),
        sa.UniqueConstraint("instance", "fingerprint_sha256", name="uq_device_instance_fingerprint"),
    )
    op.create_index("ix_device_ca_id", "device_certificate", ["ca_id", "id"])
    op.create_index("ix_device_ca_status_id", "device_certificate", ["ca_id", "status", "id"])
    op.create_index("ix_device_instance_client_id", "device_certificate", ["instance", "client_id"])


def downgrade() -> None:
    op.drop_table("device_certificate")
    op.drop_table("register_code")
    op.drop_index("ix_ca_instance_status_id", table_name="ca_certificate")
    op.drop_table("ca_certificate")
