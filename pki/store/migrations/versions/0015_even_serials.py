"""Serials stored as even-length hex (a leading zero kept), as openssl prints them.

Revision ID: 0015
Revises: 0016

pki.ids.format_serial now keeps the leading zero of a serial whose hex has an odd number of digits
(one in eight random 159-bit serials); the rows written before keep their lookups working once padded
the same way.  CRL numbers are not serials and keep their form.  provision_batch_device keeps its serials as recorded: the audit log's batch digests
cover them (pki/services/audit_chain.py).
"""

from alembic import op

revision = "0015"
down_revision = "0016"
branch_labels = None
depends_on = None

_COLUMNS = (("ca_certificate", "sn"), ("device_certificate", "sn"))


def upgrade() -> None:
    for table, column in _COLUMNS:
        op.execute(f"UPDATE {table} SET {column} = '0' || {column} WHERE length({column}) % 2 = 1")


def downgrade() -> None:
    # Back to the shortest form: drop one leading zero where the value has more than one digit.
    for table, column in _COLUMNS:
        op.execute(f"UPDATE {table} SET {column} = substr({column}, 2) "
                   f"WHERE length({column}) > 1 AND substr({column}, 1, 1) = '0'")
