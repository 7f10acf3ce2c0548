"""Refresh-token siblings consumed together (an index on ``parent_id``), and login
throttling with backoff (``login_throttle.blocked_until``).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_refresh_tokens_parent_id"), "refresh_tokens", ["parent_id"])
    with op.batch_alter_table("login_throttle") as batch:
        batch.add_column(sa.Column("blocked_until", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("login_throttle") as batch:
        batch.drop_column("blocked_until")
    op.drop_index(op.f("ix_refresh_tokens_parent_id"), table_name="refresh_tokens")
