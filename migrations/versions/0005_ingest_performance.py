"""ingest: the audit chain is sealed inside COMMIT (no chain lock held across round trips)

Until now every writer took a database-wide advisory lock from its Python code, read the last
hash, inserted its entries and then committed, holding the lock across three round trips and
its own COMMIT - every audited request in the whole service queued there (measured: up to
nine of sixteen sessions waiting on it under ingest load).

From here on an entry is inserted with the SHA-256 of its own content (``content_hash``) and
nothing else; on PostgreSQL a deferred constraint trigger gives it its place in the chain
(``chain_seq``, ``prev_hash``, ``hash`` = SHA-256(prev_hash || content_hash)) while the
transaction commits, under the same advisory lock but without any client round trip inside
it. Committed entries are therefore always chained, exactly as before, and the chain still
cannot fork (``prev_hash`` and ``chain_seq`` are unique). SQLite holds its write lock for the
whole transaction, so services.audit chains there itself before committing.

Existing entries keep their hashes (legacy scheme, no content_hash) and get chain_seq = seq.

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# The same key services.audit used before this revision, so a process still running the old
# code and the trigger serialise against each other during a rolling upgrade.
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
      FROM audit_log
     WHERE chain_seq IS NOT NULL
     ORDER BY chain_seq DESC
     LIMIT 1;
    IF last_pos IS NULL THEN
        last_hash := repeat('0', 64);
        last_pos := 0;
    END IF;
    UPDATE audit_log
       SET chain_seq = last_pos + 1,
           prev_hash = last_hash,
           hash = encode(sha256(convert_to(last_hash || content_hash, 'UTF8')), 'hex')
     WHERE seq = NEW.seq AND chain_seq IS NULL;
    RETURN NULL;
END
$$
"""

SEAL_TRIGGER = """
CREATE CONSTRAINT TRIGGER audit_log_seal
AFTER INSERT ON audit_log
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW WHEN (NEW.chain_seq IS NULL)
EXECUTE FUNCTION audit_log_seal()
"""


def upgrade() -> None:
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column(
                'chain_seq',
                sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                nullable=True,
            )
        )
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=True)
        batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=True)
    op.execute('UPDATE audit_log SET chain_seq = seq')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_audit_log_chain_seq'), ['chain_seq'])
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(SEAL_FUNCTION)
        op.execute(SEAL_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP TRIGGER IF EXISTS audit_log_seal ON audit_log')
        op.execute('DROP FUNCTION IF EXISTS audit_log_seal()')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_audit_log_chain_seq'), type_='unique')
    # Entries chained under the new scheme cannot be expressed in the old one: a downgrade
    # keeps them but the 0001 verifier will report them.
    op.execute("UPDATE audit_log SET prev_hash = 'unchained-' || seq WHERE prev_hash IS NULL")
    op.execute("UPDATE audit_log SET hash = '' WHERE hash IS NULL")
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column('chain_seq')
        batch_op.drop_column('content_hash')
