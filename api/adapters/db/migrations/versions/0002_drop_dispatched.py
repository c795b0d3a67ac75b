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
    # Batch mode: SQLite rebuilds the table, PostgreSQL alters it in place.
    with op.batch_alter_table("actions") as batch:
        batch.drop_column("dispatched")


def downgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("dispatched", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
