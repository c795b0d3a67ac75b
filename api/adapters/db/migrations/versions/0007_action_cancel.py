"""Add actions.cancel_requested_by and cancel_requested_at: who asked to cancel an action,
and when. The worker holding the action polls them and stops it.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ALTER TABLE ... ADD COLUMN in place on both databases: no table rebuild, which on
    # SQLite would cascade-delete the steps of every action.
    op.add_column("actions", sa.Column("cancel_requested_by", sa.String(64)))
    op.add_column("actions", sa.Column("cancel_requested_at", sa.DateTime))


def downgrade() -> None:
    # DROP COLUMN in place (SQLite >= 3.35), for the same reason.
    op.drop_column("actions", "cancel_requested_at")
    op.drop_column("actions", "cancel_requested_by")
