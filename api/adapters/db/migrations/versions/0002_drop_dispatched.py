"""Drop actions.dispatched: nothing reads it. Sweepers go by "unclaimed for a while"
instead, since a broker may lose a message it accepted.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ALTER TABLE ... DROP COLUMN in place (SQLite >= 3.35). A rebuilt table would be
    # dropped with foreign keys on, and the drop cascades to every action's steps.
    op.drop_column("actions", "dispatched")


def downgrade() -> None:
    op.add_column("actions", sa.Column("dispatched", sa.Boolean, nullable=False,
                                       server_default=sa.false()))
