"""Index instance_hosts by (instance_id, position): every read of an instance (the action
endpoint's 404/409/202 and GET details) fetches its hosts in that order, and with only
the (instance_id, server_id) key SQLite sorted them in a temporary B-tree per request.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_instance_hosts_position", "instance_hosts", ["instance_id", "position"])


def downgrade() -> None:
    op.drop_index("ix_instance_hosts_position", table_name="instance_hosts")
