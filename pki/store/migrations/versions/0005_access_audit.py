"""Principals, access keys, policies and the audit log.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from pki.store.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "access_user",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("name", name="uq_access_user_name"),
    )
    op.create_table(
        "access_key",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("access_key_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("access_user.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sealed_secret", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("access_key_id", name="uq_access_key_id"),
    )
    op.create_index("ix_access_key_user_id", "access_key", ["user_id"])
    op.create_table(
        "access_policy",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("name", name="uq_access_policy_name"),
    )
    op.create_table(
        "access_policy_attachment",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("access_user.id", ondelete="CASCADE"), nullable=False),
        sa.Column("policy_name", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("user_id", "policy_name", name="pk_access_policy_attachment"),
    )
    op.create_index("ix_access_policy_attachment_policy", "access_policy_attachment", ["policy_name"])
    op.create_table(
        "audit_record",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("time", UTCDateTime, nullable=False),
        sa.Column("principal", sa.String(128), nullable=False),
        sa.Column("action", sa.String(128), nullable=False),
        sa.Column("resource", sa.Text, nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("source_ip", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("prev_hash", name="uq_audit_record_prev_hash"),
        sa.UniqueConstraint("hash", name="uq_audit_record_hash"),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": _GENESIS}])


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_table("audit_record")
    op.drop_index("ix_access_policy_attachment_policy", table_name="access_policy_attachment")
    op.drop_table("access_policy_attachment")
    op.drop_table("access_policy")
    op.drop_index("ix_access_key_user_id", table_name="access_key")
    op.drop_table("access_key")
    op.drop_table("access_user")
