"""device_secret.mosquitto_hash: the primary's mosquitto password-file hash, computed once per secret.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows stay NULL: the next publish fills them (it can unseal the secrets; a migration cannot).
    with op.batch_alter_table("device_secret") as batch:
        batch.add_column(sa.Column("mosquitto_hash", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("device_secret") as batch:
        batch.drop_column("mosquitto_hash")
