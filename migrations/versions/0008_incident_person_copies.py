"""reports: the person's sex and age at the overdose copied onto each incident

The summary report bands a period's incidents by the person's sex and age at the overdose.
Joining a year's ~100 k incidents to every person for that was about half of the report's
main statement at national scale (a hash of all 300 k persons; BENCHMARKS.md, sixteenth
round). With copies on the incident the report reads the period's rows and nothing else: the
copies join the report's covering index (0001), so the period is still read from it alone.

The copies are kept by the database, as 0002's are, so no writer can forget them:

- an incident takes its person's sex and age when it is inserted, and again when its
  ``person_id`` or ``occurred_at`` changes (a correction, a merge). The age is whole years
  from the date of birth to the UTC date of ``occurred_at`` (a birthday on the day counts;
  29 February birthdays count from 1 March in other years), null without a date of birth;
  both are null without a person;
- a change of a person's sex or date of birth (a gap filled by a later notification, a
  merge's fill) is copied to all of their incidents in the same transaction.

Values a writer gives are kept only when the person is not visible to the trigger's look-up:
intake on PostgreSQL inserts a new person in the same statement as its incident, and a
trigger does not see rows its own statement inserts (0002's substances have the same rule).

PostgreSQL: the look-up locks the person's row FOR SHARE, so an incident inserted while
another transaction changes its person's date of birth waits for that one and reads the new
value (without the lock the two would each miss the other: the insert would read the old
value and the person's update would not see the uncommitted incident).

Operations: on PostgreSQL the back-fill is one UPDATE of every incident with a person, in the
migration's transaction, and writers to incidents and persons wait for it (about 4 minutes for
1 M incidents on the benchmark machine; BENCHMARKS.md, sixteenth round). Run it in a quiet
hour: notifications sent meanwhile wait or time out, and partners' retries with their
Idempotency-Key are answered once it is done.

Note for later SQLite migrations: a batch operation that re-creates incidents or persons
drops their triggers; re-create them (``create_triggers``) after such an operation.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Whole years from dob to the UTC date of occurred: the year difference, less one when the
# month and day of the overdose come before the birthday's (compared as month * 100 + day).
PG_AGE_FUNCTION = """
CREATE FUNCTION nfod_age_at(occurred timestamptz, dob date) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (date_part('year', timezone('UTC', occurred)) - date_part('year', dob)
            - CASE WHEN date_part('month', timezone('UTC', occurred)) * 100
                        + date_part('day', timezone('UTC', occurred))
                      < date_part('month', dob) * 100 + date_part('day', dob)
                   THEN 1 ELSE 0 END)::integer
$$"""

PG_TRIGGERS = [
    PG_AGE_FUNCTION,
    """CREATE FUNCTION nfod_incidents_person_copies() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        p_sex varchar(10);
        p_dob date;
    BEGIN
        IF NEW.person_id IS NULL THEN
            NEW.person_sex := NULL;
            NEW.person_age := NULL;
            RETURN NEW;
        END IF;
        SELECT p.sex, p.date_of_birth INTO p_sex, p_dob
          FROM persons p WHERE p.id = NEW.person_id
           FOR SHARE;
        IF FOUND THEN
            NEW.person_sex := p_sex;
            NEW.person_age := nfod_age_at(NEW.occurred_at, p_dob);
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER trg_incidents_person_copies
    BEFORE INSERT OR UPDATE OF person_id, occurred_at ON incidents
    FOR EACH ROW EXECUTE FUNCTION nfod_incidents_person_copies()""",
    """CREATE FUNCTION nfod_persons_incident_copies() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE incidents
           SET person_sex = NEW.sex, person_age = nfod_age_at(occurred_at, NEW.date_of_birth)
         WHERE person_id = NEW.id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER trg_persons_incident_copies
    AFTER UPDATE OF sex, date_of_birth ON persons
    FOR EACH ROW WHEN (OLD.sex IS DISTINCT FROM NEW.sex
                       OR OLD.date_of_birth IS DISTINCT FROM NEW.date_of_birth)
    EXECUTE FUNCTION nfod_persons_incident_copies()""",
]
PG_DROP = [
    "DROP TRIGGER IF EXISTS trg_persons_incident_copies ON persons",
    "DROP TRIGGER IF EXISTS trg_incidents_person_copies ON incidents",
    "DROP FUNCTION IF EXISTS nfod_persons_incident_copies()",
    "DROP FUNCTION IF EXISTS nfod_incidents_person_copies()",
    "DROP FUNCTION IF EXISTS nfod_age_at(timestamptz, date)",
]


def _sqlite_age(occurred: str, dob: str) -> str:
    # SQLite stores both as text (UTC without an offset; YYYY-MM-DD); null dob -> null.
    return (
        f"(CAST(strftime('%Y', {occurred}) AS INTEGER) - CAST(strftime('%Y', {dob}) AS INTEGER)"
        f" - (strftime('%m-%d', {occurred}) < strftime('%m-%d', {dob})))"
    )


# SQLite cannot change NEW: the row is updated after it is written. A person is always
# visible here (intake writes it in a statement of its own first).
_OWN = (
    "UPDATE incidents SET"
    " person_sex = (SELECT p.sex FROM persons p WHERE p.id = NEW.person_id),"
    f" person_age = (SELECT {_sqlite_age('NEW.occurred_at', 'p.date_of_birth')}"
    " FROM persons p WHERE p.id = NEW.person_id)"
    " WHERE id = NEW.id;"
)
SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER trg_incidents_person_copies
    AFTER INSERT ON incidents FOR EACH ROW BEGIN
        {_OWN}
    END""",
    f"""CREATE TRIGGER trg_incidents_person_copies_moved
    AFTER UPDATE OF person_id, occurred_at ON incidents FOR EACH ROW BEGIN
        {_OWN}
    END""",
    f"""CREATE TRIGGER trg_persons_incident_copies
    AFTER UPDATE OF sex, date_of_birth ON persons FOR EACH ROW
    WHEN OLD.sex IS NOT NEW.sex OR OLD.date_of_birth IS NOT NEW.date_of_birth BEGIN
        UPDATE incidents
           SET person_sex = NEW.sex,
               person_age = {_sqlite_age('incidents.occurred_at', 'NEW.date_of_birth')}
         WHERE person_id = NEW.id;
    END""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS trg_persons_incident_copies",
    "DROP TRIGGER IF EXISTS trg_incidents_person_copies_moved",
    "DROP TRIGGER IF EXISTS trg_incidents_person_copies",
]


def create_triggers() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in PG_TRIGGERS if postgresql else SQLITE_TRIGGERS:
        op.execute(statement)


def drop_triggers() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in PG_DROP if postgresql else SQLITE_DROP:
        op.execute(statement)


# The report's covering index (0001) with the copies added, so that its period is still read
# from the index alone.
REPORT_INDEX = "ix_incidents_occurred_at_report"
REPORT_COLUMNS = [
    "occurred_at",
    "id",
    "person_id",
    "source_agency_id",
    "postcode_district",
    "fu_status",
    "within_window",
    "first_contact_at",
    "contact_due_at",
]


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    # Plain ADD COLUMN (no batch: on SQLite a batch re-creation would drop 0002's triggers).
    op.add_column("incidents", sa.Column("person_sex", sa.String(length=10), nullable=True))
    op.add_column("incidents", sa.Column("person_age", sa.Integer(), nullable=True))
    # Triggers first: on PostgreSQL creating them locks out concurrent writers until this
    # transaction commits, so no row escapes both the triggers and the back-fill below.
    create_triggers()
    if postgresql:
        op.execute(
            "UPDATE incidents i"
            " SET person_sex = p.sex, person_age = nfod_age_at(i.occurred_at, p.date_of_birth)"
            " FROM persons p WHERE p.id = i.person_id"
        )
    else:
        op.execute(
            "UPDATE incidents SET"
            " person_sex = (SELECT p.sex FROM persons p WHERE p.id = incidents.person_id),"
            f" person_age = (SELECT {_sqlite_age('incidents.occurred_at', 'p.date_of_birth')}"
            " FROM persons p WHERE p.id = incidents.person_id)"
            " WHERE person_id IS NOT NULL"
        )
    op.drop_index(REPORT_INDEX, table_name="incidents")
    op.create_index(REPORT_INDEX, "incidents", [*REPORT_COLUMNS, "person_sex", "person_age"])


def downgrade() -> None:
    drop_triggers()
    op.drop_index(REPORT_INDEX, table_name="incidents")
    op.create_index(REPORT_INDEX, "incidents", REPORT_COLUMNS)
    op.drop_column("incidents", "person_age")
    op.drop_column("incidents", "person_sex")
