"""Authorization code with PKCE and OpenID Connect (README, "Log in an app on another
origin"): clients' redirect URIs and first-party flag, users' consents, and the codes,
stored as hashes.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("redirect_uris", sa.Text(), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("post_logout_redirect_uris", sa.Text(), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("first_party", sa.Boolean(), nullable=False, server_default="0"))
    op.create_table(
        "consents",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("granted_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_consents_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.client_id"],
            name=op.f("fk_consents_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "client_id", name=op.f("pk_consents")),
    )
    op.create_table(
        "authorization_codes",
        sa.Column("code_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=True),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("nonce", sa.String(512), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("audience", sa.String(200), nullable=False),
        sa.Column("auth_time", sa.Float(), nullable=False),
        sa.Column("browser_session", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=True),
        sa.Column("family_id", sa.String(32), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.client_id"],
            name=op.f("fk_authorization_codes_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_authorization_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_authorization_codes")),
    )
    for column in ("client_id", "user_id", "browser_session", "expires_at", "family_id"):
        op.create_index(op.f(f"ix_authorization_codes_{column}"), "authorization_codes", [column])


def downgrade() -> None:
    for column in ("client_id", "user_id", "browser_session", "expires_at", "family_id"):
        op.drop_index(op.f(f"ix_authorization_codes_{column}"), table_name="authorization_codes")
    op.drop_table("authorization_codes")
    op.drop_table("consents")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("first_party")
        batch.drop_column("post_logout_redirect_uris")
        batch.drop_column("redirect_uris")
