"""Add action_events, the numbered events of each action (states, steps, task results)
that its event stream serves, and actions.last_event, the seq of its newest.

Actions recorded before this revision have no events: an ended one's stream answers 204,
an unfinished one's starts with what happens next.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ALTER TABLE ... ADD COLUMN in place: a rebuilt actions table would cascade its drop
    # to the steps (see 0002).
    op.add_column("actions", sa.Column("last_event", sa.Integer, nullable=False,
                                       server_default=sa.text("0")))
    op.create_table(
        "action_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("action_id", sa.String(36),
                  sa.ForeignKey("actions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer),
        sa.Column("data", sa.JSON, nullable=False),
        sa.UniqueConstraint("action_id", "seq", name="uq_action_events_seq"),
    )


def downgrade() -> None:
    op.drop_table("action_events")
    op.drop_column("actions", "last_event")
