"""Certificate lifecycle: renewal (replaces, supersede_after), EST settings on CAs, enrollment claims.

Revision ID: 0013
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

from pki.store.types import UTCDateTime

revision = "0013"
down_revision = "0014"
branch_labels = None
depends_on = None


def _restore_revoked_is_final() -> None:
    """On SQLite a batch rebuilds device_certificate, and a rebuilt table has lost its triggers: put back
    migration 0008's (a REVOKED certificate stays REVOKED).  PostgreSQL alters the table in place."""
    if op.get_bind().dialect.name != "sqlite":
        return
    from importlib import import_module

    status_guards = import_module("pki.store.migrations.versions.0008_status_guards")
    op.execute(f"DROP TRIGGER IF EXISTS {status_guards.TRIGGER}")
    op.execute(status_guards.sqlite_trigger_sql())


def upgrade() -> None:
    with op.batch_alter_table("ca_certificate") as batch:
        batch.add_column(sa.Column("est_label", sa.String(64), nullable=True))
        batch.add_column(sa.Column("est_default", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("bootstrap_only", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("renew_after_expiry_s", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("supersede_after_s", sa.Integer(), nullable=True))
        batch.create_unique_constraint("uq_ca_instance_est_label", ["instance", "est_label"])
    with op.batch_alter_table("device_certificate") as batch:
        batch.add_column(sa.Column("replaces_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("supersede_after", UTCDateTime(), nullable=True))
        batch.create_foreign_key("fk_device_replaces_id", "device_certificate", ["replaces_id"], ["id"],
                                 ondelete="SET NULL")
        batch.create_index("ix_device_replaces_id", ["replaces_id"])
        batch.create_index("ix_device_ca_supersede_after", ["ca_id", "supersede_after"])
    _restore_revoked_is_final()
    op.create_table(
        "enrollment_claim",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("instance", sa.String(64), nullable=False),
        sa.Column("claim_id", sa.String(40), nullable=False),
        sa.Column("password_sha256", sa.String(64), nullable=False),
        sa.Column("ca_id", sa.Integer(), sa.ForeignKey("ca_certificate.id", ondelete="CASCADE"), nullable=False),
        sa.Column("max_uses", sa.Integer(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.Column("client_id_prefix", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("claim_id", name="uq_enrollment_claim_id"),
    )
    op.create_index("ix_enrollment_claim_instance_id", "enrollment_claim", ["instance", "id"])
    op.create_table(
        "enrollment_claim_use",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("claim_row_id", sa.Integer(), sa.ForeignKey("enrollment_claim.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("device_sn", sa.String(42), nullable=False),
        sa.Column("used_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("claim_row_id", "client_id", name="uq_enrollment_claim_use"),
    )


def downgrade() -> None:
    op.drop_table("enrollment_claim_use")
    op.drop_index("ix_enrollment_claim_instance_id", table_name="enrollment_claim")
    op.drop_table("enrollment_claim")
    with op.batch_alter_table("device_certificate") as batch:
        batch.drop_index("ix_device_ca_supersede_after")
        batch.drop_index("ix_device_replaces_id")
        batch.drop_constraint("fk_device_replaces_id", type_="foreignkey")
        batch.drop_column("supersede_after")
        batch.drop_column("replaces_id")
    _restore_revoked_is_final()
    with op.batch_alter_table("ca_certificate") as batch:
        batch.drop_constraint("uq_ca_instance_est_label", type_="unique")
        batch.drop_column("supersede_after_s")
        batch.drop_column("renew_after_expiry_s")
        batch.drop_column("bootstrap_only")
        batch.drop_column("est_default")
        batch.drop_column("est_label")
