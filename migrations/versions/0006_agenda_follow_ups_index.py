"""the agenda's follow-ups (discussed, awaiting contact) on an exact partial index

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

WHERE = "discussed_at_huddle_id IS NOT NULL AND fu_status = 'awaiting_contact'"


def upgrade() -> None:
    op.create_index(
        "ix_incidents_discussed_awaiting_contact_due_at",
        "incidents",
        ["contact_due_at"],
        postgresql_where=sa.text(WHERE),
        sqlite_where=sa.text(WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_incidents_discussed_awaiting_contact_due_at", table_name="incidents")
