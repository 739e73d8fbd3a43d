"""Key custody handles (software or pkcs11) and the master keys a rotation knows.

custody_key gains ``custody`` (software | pkcs11) and ``key_ref`` (for pkcs11, the
key's RFC 7512 URI without the PIN).  A pkcs11 row's ``sealed`` is empty: the
store holds no private key bytes for it.  (``sealed`` stays NOT NULL: making it
nullable would rebuild custody_key on SQLite, which ca_certificate references.)

master_key lists master keys by id (never the key): the file each lives in and
its state, so a process meeting a row already moved by a running rotation can
load the new key's file, and the rotation can say when the old one is retired.

Revision ID: 0014
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

from pki.store.types import UTCDateTime

revision = "0014"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("custody_key", sa.Column("custody", sa.String(16), nullable=False, server_default="software"))
    op.add_column("custody_key", sa.Column("key_ref", sa.Text, nullable=True))
    op.create_table(
        "master_key",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("retired_at", UTCDateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("master_key")
    with op.batch_alter_table("custody_key") as batch:
        batch.drop_column("key_ref")
        batch.drop_column("custody")
