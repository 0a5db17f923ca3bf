"""reports: the incident's occurred_at copied onto its substances and contact codes

The summary report counts a period's substances and contact codes. Reaching them through the
period's incidents costs one random index probe per incident (and for codes a second join
through contact_attempts): ~1.5 s for a year at 1 M incidents. With the incident's
``occurred_at`` on the rows themselves, both are one index-only range scan.

The copies are kept by the database, so no writer can forget them (the services, the bulk
loader's COPY, test fixtures): a row takes its incident's ``occurred_at`` when it is inserted,
and a change of an incident's ``occurred_at`` (a correction) is copied to its rows in the same
statement's transaction. Triggers on both dialects; the column is nullable only because a
SQLite trigger fills it after the insert.

Note for later SQLite migrations: a batch operation that re-creates incidents,
incident_substances, contact_attempts or contact_codes drops their triggers; re-create them
(``create_triggers``) after such an operation.

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import models.base

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

PG_TRIGGERS = [
    # A substance takes its incident's occurred_at (the explicit value stays only when the
    # incident is not visible, e.g. a bulk load that fills both tables in parallel).
    """CREATE FUNCTION nfod_incident_substances_occurred_at() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        NEW.occurred_at := COALESCE(
            (SELECT i.occurred_at FROM incidents i WHERE i.id = NEW.incident_id),
            NEW.occurred_at);
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER trg_incident_substances_occurred_at
    BEFORE INSERT OR UPDATE OF incident_id ON incident_substances
    FOR EACH ROW EXECUTE FUNCTION nfod_incident_substances_occurred_at()""",
    """CREATE FUNCTION nfod_contact_codes_occurred_at() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        NEW.occurred_at := COALESCE(
            (SELECT i.occurred_at FROM contact_attempts a JOIN incidents i ON i.id = a.incident_id
              WHERE a.id = NEW.contact_id),
            NEW.occurred_at);
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER trg_contact_codes_occurred_at
    BEFORE INSERT OR UPDATE OF contact_id ON contact_codes
    FOR EACH ROW EXECUTE FUNCTION nfod_contact_codes_occurred_at()""",
    # A corrected occurred_at moves the incident's substances and codes with it.
    """CREATE FUNCTION nfod_incidents_occurred_at_copies() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE incident_substances SET occurred_at = NEW.occurred_at WHERE incident_id = NEW.id;
        UPDATE contact_codes SET occurred_at = NEW.occurred_at
         WHERE contact_id IN (SELECT a.id FROM contact_attempts a WHERE a.incident_id = NEW.id);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER trg_incidents_occurred_at_copies
    AFTER UPDATE OF occurred_at ON incidents
    FOR EACH ROW WHEN (OLD.occurred_at IS DISTINCT FROM NEW.occurred_at)
    EXECUTE FUNCTION nfod_incidents_occurred_at_copies()""",
    # An attempt moved to another incident (no service does this) takes its codes along.
    """CREATE FUNCTION nfod_contact_attempts_occurred_at_copies() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE contact_codes
           SET occurred_at = (SELECT i.occurred_at FROM incidents i WHERE i.id = NEW.incident_id)
         WHERE contact_id = NEW.id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER trg_contact_attempts_occurred_at_copies
    AFTER UPDATE OF incident_id ON contact_attempts
    FOR EACH ROW WHEN (OLD.incident_id IS DISTINCT FROM NEW.incident_id)
    EXECUTE FUNCTION nfod_contact_attempts_occurred_at_copies()""",
]
PG_DROP = [
    "DROP TRIGGER IF EXISTS trg_contact_attempts_occurred_at_copies ON contact_attempts",
    "DROP TRIGGER IF EXISTS trg_incidents_occurred_at_copies ON incidents",
    "DROP TRIGGER IF EXISTS trg_contact_codes_occurred_at ON contact_codes",
    "DROP TRIGGER IF EXISTS trg_incident_substances_occurred_at ON incident_substances",
    "DROP FUNCTION IF EXISTS nfod_contact_attempts_occurred_at_copies()",
    "DROP FUNCTION IF EXISTS nfod_incidents_occurred_at_copies()",
    "DROP FUNCTION IF EXISTS nfod_contact_codes_occurred_at()",
    "DROP FUNCTION IF EXISTS nfod_incident_substances_occurred_at()",
]

_SUBSTANCE_OF = "(SELECT i.occurred_at FROM incidents i WHERE i.id = NEW.incident_id)"
_CODE_OF = (
    "(SELECT i.occurred_at FROM contact_attempts a JOIN incidents i ON i.id = a.incident_id"
    " WHERE a.id = NEW.contact_id)"
)
SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER trg_incident_substances_occurred_at
    AFTER INSERT ON incident_substances FOR EACH ROW BEGIN
        UPDATE incident_substances SET occurred_at = COALESCE({_SUBSTANCE_OF}, NEW.occurred_at)
         WHERE incident_id = NEW.incident_id AND position = NEW.position;
    END""",
    f"""CREATE TRIGGER trg_incident_substances_occurred_at_moved
    AFTER UPDATE OF incident_id ON incident_substances FOR EACH ROW BEGIN
        UPDATE incident_substances SET occurred_at = COALESCE({_SUBSTANCE_OF}, NEW.occurred_at)
         WHERE incident_id = NEW.incident_id AND position = NEW.position;
    END""",
    f"""CREATE TRIGGER trg_contact_codes_occurred_at
    AFTER INSERT ON contact_codes FOR EACH ROW BEGIN
        UPDATE contact_codes SET occurred_at = COALESCE({_CODE_OF}, NEW.occurred_at)
         WHERE contact_id = NEW.contact_id AND kind = NEW.kind AND code = NEW.code;
    END""",
    f"""CREATE TRIGGER trg_contact_codes_occurred_at_moved
    AFTER UPDATE OF contact_id ON contact_codes FOR EACH ROW BEGIN
        UPDATE contact_codes SET occurred_at = COALESCE({_CODE_OF}, NEW.occurred_at)
         WHERE contact_id = NEW.contact_id AND kind = NEW.kind AND code = NEW.code;
    END""",
    """CREATE TRIGGER trg_incidents_occurred_at_copies
    AFTER UPDATE OF occurred_at ON incidents FOR EACH ROW
    WHEN OLD.occurred_at IS NOT NEW.occurred_at BEGIN
        UPDATE incident_substances SET occurred_at = NEW.occurred_at WHERE incident_id = NEW.id;
        UPDATE contact_codes SET occurred_at = NEW.occurred_at
         WHERE contact_id IN (SELECT a.id FROM contact_attempts a WHERE a.incident_id = NEW.id);
    END""",
    """CREATE TRIGGER trg_contact_attempts_occurred_at_copies
    AFTER UPDATE OF incident_id ON contact_attempts FOR EACH ROW
    WHEN OLD.incident_id IS NOT NEW.incident_id BEGIN
        UPDATE contact_codes
           SET occurred_at = (SELECT i.occurred_at FROM incidents i WHERE i.id = NEW.incident_id)
         WHERE contact_id = NEW.id;
    END""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS trg_contact_attempts_occurred_at_copies",
    "DROP TRIGGER IF EXISTS trg_incidents_occurred_at_copies",
    "DROP TRIGGER IF EXISTS trg_contact_codes_occurred_at_moved",
    "DROP TRIGGER IF EXISTS trg_contact_codes_occurred_at",
    "DROP TRIGGER IF EXISTS trg_incident_substances_occurred_at_moved",
    "DROP TRIGGER IF EXISTS trg_incident_substances_occurred_at",
]


def create_triggers() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    for statement in PG_TRIGGERS if postgresql else SQLITE_TRIGGERS:
        op.execute(statement)


def drop_triggers() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    for statement in PG_DROP if postgresql else SQLITE_DROP:
        op.execute(statement)


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    with op.batch_alter_table('incident_substances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('occurred_at', models.base.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('contact_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('occurred_at', models.base.UTCDateTime(timezone=True), nullable=True))
    # Triggers first: on PostgreSQL creating them locks out concurrent writers until this
    # transaction commits, so no row escapes both the triggers and the back-fill below.
    create_triggers()
    if postgresql:
        op.execute(
            'UPDATE incident_substances s SET occurred_at = i.occurred_at'
            ' FROM incidents i WHERE i.id = s.incident_id'
        )
        op.execute(
            'UPDATE contact_codes c SET occurred_at = i.occurred_at'
            ' FROM contact_attempts a JOIN incidents i ON i.id = a.incident_id'
            ' WHERE a.id = c.contact_id'
        )
    else:
        op.execute(
            'UPDATE incident_substances SET occurred_at ='
            ' (SELECT i.occurred_at FROM incidents i WHERE i.id = incident_substances.incident_id)'
        )
        op.execute(
            'UPDATE contact_codes SET occurred_at ='
            ' (SELECT i.occurred_at FROM contact_attempts a JOIN incidents i ON i.id = a.incident_id'
            ' WHERE a.id = contact_codes.contact_id)'
        )
    with op.batch_alter_table('incident_substances', schema=None) as batch_op:
        batch_op.create_index('ix_incident_substances_occurred_at_incident_id_substance', ['occurred_at', 'incident_id', 'substance'], unique=False)
    with op.batch_alter_table('contact_codes', schema=None) as batch_op:
        batch_op.create_index('ix_contact_codes_occurred_at_kind_code', ['occurred_at', 'kind', 'code'], unique=False)


def downgrade() -> None:
    drop_triggers()
    with op.batch_alter_table('contact_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_contact_codes_occurred_at_kind_code')
        batch_op.drop_column('occurred_at')
    with op.batch_alter_table('incident_substances', schema=None) as batch_op:
        batch_op.drop_index('ix_incident_substances_occurred_at_incident_id_substance')
        batch_op.drop_column('occurred_at')
