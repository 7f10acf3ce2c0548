"""Token status list (draft-ietf-oauth-status-list): leased index blocks, set bits, the
list's version, the index each refresh token's access token holds, and the indexes of
``client_credentials`` tokens with their client.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "status_blocks",
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("leased_at", sa.Float(), nullable=False),
        sa.Column("reusable_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("slot", name=op.f("pk_status_blocks")),
    )
    op.create_index(op.f("ix_status_blocks_reusable_at"), "status_blocks", ["reusable_at"])
    op.create_table(
        "status_revoked",
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_status_revoked")),
    )
    op.create_table(
        "status_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_state")),
    )
    op.create_table(
        "status_client_tokens",
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("idx", name=op.f("pk_status_client_tokens")),
    )
    op.create_index(
        op.f("ix_status_client_tokens_client_id"), "status_client_tokens", ["client_id"]
    )
    op.execute("INSERT INTO status_state (id, version) VALUES (1, 0)")
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.add_column(sa.Column("status_idx", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_column("status_idx")
    op.drop_index(op.f("ix_status_client_tokens_client_id"), table_name="status_client_tokens")
    op.drop_table("status_client_tokens")
    op.drop_table("status_state")
    op.drop_table("status_revoked")
    op.drop_index(op.f("ix_status_blocks_reusable_at"), table_name="status_blocks")
    op.drop_table("status_blocks")
