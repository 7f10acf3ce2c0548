"""The first-party client behind /auth, and failed-login counters.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FIRST_PARTY_CLIENT = "authority-web"


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )
    op.create_index(op.f("ix_login_throttle_window_start"), "login_throttle", ["window_start"])
    clients = sa.table(
        "clients",
        sa.column("client_id", sa.String),
        sa.column("name", sa.String),
        sa.column("secret_hash", sa.LargeBinary),
        sa.column("grant_types", sa.Text),
        sa.column("scopes", sa.Text),
        sa.column("audiences", sa.Text),
        sa.column("is_active", sa.Boolean),
        sa.column("created_at", sa.Float),
    )
    # A public client with no OAuth grant: /oauth/token refuses it, only /auth uses it.
    op.bulk_insert(
        clients,
        [
            {
                "client_id": FIRST_PARTY_CLIENT,
                "name": "first-party web and app login (/auth)",
                "secret_hash": None,
                "grant_types": "",
                "scopes": "",
                "audiences": "",
                "is_active": True,
                "created_at": time.time(),
            }
        ],
    )


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM clients WHERE client_id = 'authority-web'"))
    op.drop_index(op.f("ix_login_throttle_window_start"), table_name="login_throttle")
    op.drop_table("login_throttle")
