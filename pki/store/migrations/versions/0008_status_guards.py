"""A revocation is final in the database too; users and access keys are INACTIVE, not DISABLED.

The trigger refuses any UPDATE that moves a device_certificate row out of REVOKED or changes when or why it
was revoked, whatever the code path: the engine maps its error (the trigger's name is in the message) to
``device_revoked``.  Rows the race this guards against left behind (ACTIVE or INACTIVE, yet with a
revocation time) were revoked and acknowledged as such: they are put back to REVOKED first.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: Named in the trigger's error message; pki.store.engine looks for it.
TRIGGER = "device_certificate_revoked_is_final"

_CHANGED = (
    "NEW.status <> 'REVOKED' OR NEW.revoked_at IS DISTINCT FROM OLD.revoked_at "
    "OR NEW.revocation_reason IS DISTINCT FROM OLD.revocation_reason"
)


def sqlite_trigger_sql() -> str:
    """The SQLite trigger (also for migrations that rebuild the table, which drops its triggers).

    SQLite spells IS DISTINCT FROM as IS NOT; RAISE(ABORT) is a constraint failure (IntegrityError).
    """
    return (f"CREATE TRIGGER {TRIGGER} BEFORE UPDATE ON device_certificate "
            f"FOR EACH ROW WHEN OLD.status = 'REVOKED' AND ({_CHANGED.replace('IS DISTINCT FROM', 'IS NOT')}) "
            f"BEGIN SELECT RAISE(ABORT, '{TRIGGER}: a REVOKED device certificate stays REVOKED'); END")


def upgrade() -> None:
    op.execute("UPDATE device_certificate SET status = 'REVOKED' WHERE revoked_at IS NOT NULL AND status <> 'REVOKED'")
    op.execute("UPDATE access_user SET status = 'INACTIVE' WHERE status = 'DISABLED'")
    op.execute("UPDATE access_key SET status = 'INACTIVE' WHERE status = 'DISABLED'")
    if op.get_bind().dialect.name == "sqlite":
        op.execute(sqlite_trigger_sql())
    else:
        # check_violation (SQLSTATE 23514): an integrity error, as on SQLite.
        op.execute(
            f"CREATE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{TRIGGER}: a REVOKED device certificate stays REVOKED' "
            "USING ERRCODE = 'check_violation'; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {TRIGGER} BEFORE UPDATE ON device_certificate "
            f"FOR EACH ROW WHEN (OLD.status = 'REVOKED' AND ({_CHANGED})) EXECUTE FUNCTION {TRIGGER}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON device_certificate")
        op.execute(f"DROP FUNCTION IF EXISTS {TRIGGER}()")
    op.execute("UPDATE access_key SET status = 'DISABLED' WHERE status = 'INACTIVE'")
    op.execute("UPDATE access_user SET status = 'DISABLED' WHERE status = 'INACTIVE'")
