"""Initial schema: instances, their hosts, actions, steps and task results.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lambda_instances",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("services", sa.JSON, nullable=False),
        sa.Column("failure_message", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_lambda_instances_owner", "lambda_instances", ["owner", "created_at"])
    op.create_table(
        "instance_hosts",
        sa.Column(
            "instance_id",
            sa.String(36),
            sa.ForeignKey("lambda_instances.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("server_id", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
    )
    op.create_table(
        "actions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "instance_id",
            sa.String(36),
            sa.ForeignKey("lambda_instances.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("compute_url", sa.Text),
        sa.Column("token_cipher", sa.Text),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", sa.DateTime),
        sa.Column("dispatched", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_actions_instance", "actions", ["instance_id", "created_at"])
    op.create_index("ix_actions_state", "actions", ["state"])
    op.create_table(
        "action_steps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "action_id",
            sa.String(36),
            sa.ForeignKey("actions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("message", sa.Text),
    )
    op.create_index("ix_action_steps_action", "action_steps", ["action_id", "id"])
    op.create_table(
        "action_tasks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "action_id",
            sa.String(36),
            sa.ForeignKey("actions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("role", sa.String(64)),
        sa.Column("play", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("duration", sa.Float),
    )
    op.create_index("ix_action_tasks_action", "action_tasks", ["action_id", "id"])


def downgrade() -> None:
    for table in ("action_tasks", "action_steps", "actions", "instance_hosts", "lambda_instances"):
        op.drop_table(table)
