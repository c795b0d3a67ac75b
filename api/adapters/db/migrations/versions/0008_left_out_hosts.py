"""Add lambda_instances.left_out_hosts and actions.excluded_hosts: a start may leave out
slaves (a VM that will not boot); the action records which, and the instance which hosts
its last successful start left out. NULL reads as none, so existing rows need no update.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ALTER TABLE ... ADD COLUMN in place: no table rebuild, nothing cascades (see 0002).
    op.add_column("lambda_instances", sa.Column("left_out_hosts", sa.JSON))
    op.add_column("actions", sa.Column("excluded_hosts", sa.JSON))


def downgrade() -> None:
    op.drop_column("actions", "excluded_hosts")
    op.drop_column("lambda_instances", "left_out_hosts")
