"""Add host_keys: the SSH host keys pinned per server on first sight, which every later
run checks the host against.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "host_keys",
        sa.Column("server_id", sa.String(64), primary_key=True),
        sa.Column("key_type", sa.String(64), primary_key=True),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("host_name", sa.String(255), nullable=False),
        sa.Column("pinned_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("host_keys")
