"""Rename actions.token_cipher to encrypted_token: the column holds the caller's token,
encrypted; "token cipher" named the object that encrypts it.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ALTER TABLE ... RENAME COLUMN in place on both databases (SQLite >= 3.25): no table
    # rebuild, which on SQLite would cascade-delete the steps of every action.
    op.alter_column("actions", "token_cipher", new_column_name="encrypted_token")


def downgrade() -> None:
    op.alter_column("actions", "encrypted_token", new_column_name="token_cipher")
