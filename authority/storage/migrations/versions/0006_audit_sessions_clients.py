"""Operators' lifecycle (SPEC section 12): the audit trail, where a session was opened
from, unique client names, and a client's previous secret during a rotation overlap.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("user_id", ID, nullable=True),
        sa.Column("username", sa.String(150), nullable=True),
        sa.Column("client_id", sa.String(64), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False, server_default="{}"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index(op.f("ix_audit_events_at"), "audit_events", ["at"])
    op.create_index(op.f("ix_audit_events_user_id"), "audit_events", ["user_id"])
    op.create_index(op.f("ix_audit_events_client_id"), "audit_events", ["client_id"])
    with op.batch_alter_table("refresh_families") as batch:
        batch.add_column(sa.Column("address", sa.String(64), nullable=True))
        batch.add_column(sa.Column("user_agent", sa.String(256), nullable=True))
    # Names become unique: an older database may hold the same name twice; the later
    # ones get their client id appended, so nothing is lost and the index can exist.
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT client_id, name FROM clients ORDER BY created_at, client_id")
    ).fetchall()
    seen: set[str] = set()
    for client_id, name in rows:
        if name in seen:
            renamed = f"{name} ({client_id})"[:200]
            conn.execute(
                sa.text("UPDATE clients SET name = :name WHERE client_id = :id"),
                {"name": renamed, "id": client_id},
            )
            name = renamed
        seen.add(name)
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("previous_secret_hash", sa.LargeBinary(32), nullable=True))
        batch.add_column(sa.Column("previous_secret_until", sa.Float(), nullable=True))
        batch.create_unique_constraint(op.f("uq_clients_name"), ["name"])


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_constraint(op.f("uq_clients_name"), type_="unique")
        batch.drop_column("previous_secret_until")
        batch.drop_column("previous_secret_hash")
    with op.batch_alter_table("refresh_families") as batch:
        batch.drop_column("user_agent")
        batch.drop_column("address")
    op.drop_index(op.f("ix_audit_events_client_id"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_user_id"), table_name="audit_events")
    op.drop_index(op.f("ix_audit_events_at"), table_name="audit_events")
    op.drop_table("audit_events")
