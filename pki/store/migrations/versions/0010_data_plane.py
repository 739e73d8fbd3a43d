"""The broker data plane: identities, permission rules, the default, the connect blocklist, hook tokens,
and a per-instance revision counter for the hooks' caches.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from pki.store.types import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "broker_identity",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("username", sa.String(256), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=True),
        sa.Column("superuser", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("instance", "username", name="uq_broker_identity_instance_username"),
    )
    op.create_index("ix_broker_identity_instance_id", "broker_identity", ["instance", "id"])
    op.create_table(
        "broker_permission",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("effect", sa.String(8), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("who", sa.String(16), nullable=False),
        sa.Column("who_value", sa.String(256), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("qos", sa.String(8), nullable=True),
        sa.Column("retain", sa.Boolean, nullable=True),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_broker_permission_instance_id", "broker_permission", ["instance", "id"])
    op.create_table(
        "broker_setting",
        sa.Column("instance", sa.String(64), primary_key=True),
        sa.Column("default_effect", sa.String(8), nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "broker_blocklist",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("until", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("instance", "kind", "value", name="uq_broker_blocklist_instance_kind_value"),
    )
    op.create_index("ix_broker_blocklist_instance_id", "broker_blocklist", ["instance", "id"])
    op.create_table(
        "hook_token",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("cidrs", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("name", name="uq_hook_token_name"),
        sa.UniqueConstraint("token_sha256", name="uq_hook_token_sha256"),
    )
    op.create_table(
        "broker_revision",
        sa.Column("instance", sa.String(64), primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("broker_revision", "hook_token", "broker_blocklist", "broker_setting", "broker_permission",
                  "broker_identity"):
        op.drop_table(table)
