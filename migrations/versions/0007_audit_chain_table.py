"""audit: each entry's place in the hash chain is a row of a narrow table of its own

Until now the seal trigger (0005) gave an entry its place in the chain by rewriting the
entry's own row: a second version of a wide row, and an entry in each of audit_log's seven
indexes twice (two of them, chain_seq and prev_hash, only for the chain). Every audited
commit does that once per entry, inside COMMIT, under the lock every audited commit of the
service waits for. From here on the seal inserts one small row into ``audit_chain``
(chain_seq, entry_seq, prev_hash, hash; two indexes) and audit_log loses its three chain
columns and their two unique indexes. Measured with pgbench, a transaction of two entries
(BENCHMARKS.md, eleventh round): 0.47 -> 0.30-0.34 ms of machine CPU, 1.5 times the
transactions per second.

The guarantees stay as they were: every committed entry has its link (the trigger runs
inside COMMIT, under the same advisory lock, so links are made in commit order); the chain
cannot fork (chain_seq is the primary key); an entry has at most one place (entry_seq is
unique). Existing links are copied as they are, so every hash ever written still verifies.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

CHAIN_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The same advisory lock key as 0005 (and services.audit before it).
SEAL_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_log_seal() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    last_hash text;
    last_pos bigint;
BEGIN
    -- Only services.audit knows an entry's canonical form; an entry without its content
    -- hash (an older writer, a hand-made INSERT) would turn every later link into NULL.
    IF NEW.content_hash IS NULL THEN
        RAISE EXCEPTION 'audit_log entry % has no content_hash; entries are written by services.audit', NEW.id
            USING ERRCODE = 'not_null_violation';
    END IF;
    PERFORM pg_advisory_xact_lock(7362001);
    SELECT hash, chain_seq INTO last_hash, last_pos
      FROM audit_chain
     ORDER BY chain_seq DESC
     LIMIT 1;
    IF last_pos IS NULL THEN
        last_hash := repeat('0', 64);
        last_pos := 0;
    END IF;
    INSERT INTO audit_chain (chain_seq, entry_seq, prev_hash, hash)
    VALUES (last_pos + 1, NEW.seq, last_hash,
            encode(sha256(convert_to(last_hash || NEW.content_hash, 'UTF8')), 'hex'));
    RETURN NULL;
END
$$
"""

SEAL_TRIGGER = """
CREATE CONSTRAINT TRIGGER audit_log_seal
AFTER INSERT ON audit_log
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW
EXECUTE FUNCTION audit_log_seal()
"""



def _revision_0005():
    """Migration 0005's module: the downgrade puts back its seal function and trigger."""
    path = Path(__file__).with_name("0005_ingest_performance.py")
    spec = importlib.util.spec_from_file_location("nfod_migration_0005", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("DROP TRIGGER IF EXISTS audit_log_seal ON audit_log")
    op.create_table(
        "audit_chain",
        sa.Column("chain_seq", CHAIN_ID, autoincrement=False, nullable=False),
        sa.Column("entry_seq", CHAIN_ID, nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chain_seq", name=op.f("pk_audit_chain")),
        sa.UniqueConstraint("entry_seq", name=op.f("uq_audit_chain_entry_seq")),
    )
    op.execute(
        "INSERT INTO audit_chain (chain_seq, entry_seq, prev_hash, hash) "
        "SELECT chain_seq, seq, prev_hash, hash FROM audit_log WHERE chain_seq IS NOT NULL"
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audit_log_chain_seq"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_audit_log_prev_hash"), type_="unique")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("chain_seq")
    if postgresql:
        op.execute(SEAL_FUNCTION)
        op.execute(SEAL_TRIGGER)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("DROP TRIGGER IF EXISTS audit_log_seal ON audit_log")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chain_seq", CHAIN_ID, nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    link = "(SELECT c.{0} FROM audit_chain c WHERE c.entry_seq = audit_log.seq)"
    op.execute(
        "UPDATE audit_log SET "
        + ", ".join(
            f"{column} = {link.format(column)}" for column in ("chain_seq", "prev_hash", "hash")
        )
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f("uq_audit_log_chain_seq"), ["chain_seq"])
        batch_op.create_unique_constraint(batch_op.f("uq_audit_log_prev_hash"), ["prev_hash"])
    op.drop_table("audit_chain")
    if postgresql:
        previous = _revision_0005()
        op.execute(previous.SEAL_FUNCTION)
        op.execute(previous.SEAL_TRIGGER)
