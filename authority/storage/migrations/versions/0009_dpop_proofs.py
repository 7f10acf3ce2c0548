"""DPoP proofs seen by any replica, so each is accepted once (RFC 9449 section 11.1),
and the DPoP key a refresh family is bound to (section 5).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dpop_proofs",
        sa.Column("proof_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("proof_hash", name=op.f("pk_dpop_proofs")),
    )
    op.create_index(op.f("ix_dpop_proofs_expires_at"), "dpop_proofs", ["expires_at"])
    with op.batch_alter_table("refresh_families") as batch:
        batch.add_column(sa.Column("dpop_jkt", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_families") as batch:
        batch.drop_column("dpop_jkt")
    op.drop_index(op.f("ix_dpop_proofs_expires_at"), table_name="dpop_proofs")
    op.drop_table("dpop_proofs")
