"""Database tables, declared once for the application and for Alembic's migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    Update,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class StoredKey(Base):
    """A key of the database key store; its state follows from the timestamps."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    activate_at: Mapped[float] = mapped_column(Float)
    private_pem: Mapped[bytes] = mapped_column(LargeBinary)
    public_jwk: Mapped[str] = mapped_column(Text)


class KeystoreState(Base):
    """One row: its update is the key store's lock, its version tells replicas to reload."""

    __tablename__ = "keystore_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite needs INTEGER for rowid aliasing


class User(Base):
    """A person who logs in; names and emails are unique case-insensitively (``*_key``)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(150))
    username_key: Mapped[str] = mapped_column(String(150), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    date_joined: Mapped[float] = mapped_column(Float)
    password_changed_at: Mapped[float] = mapped_column(Float)


class Client(Base):
    """An OAuth client; the secret is stored only as a keyed hash (HMAC-SHA256)."""

    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    secret_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    # During ``clients rotate-secret --overlap``: the old secret, until the overlap ends.
    previous_secret_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    previous_secret_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    grant_types: Mapped[str] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(Text)
    audiences: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[float] = mapped_column(Float)
    # Authorization code clients (README, "Log in an app on another origin"): their
    # exact redirect URIs, space-separated (none holds a space), and whether consent
    # is skipped.
    redirect_uris: Mapped[str] = mapped_column(Text, default="", server_default="")
    post_logout_redirect_uris: Mapped[str] = mapped_column(Text, default="", server_default="")
    first_party: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class RefreshFamily(Base):
    """A login session: every refresh token issued from one grant, rotated in a chain."""

    __tablename__ = "refresh_families"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    scope: Mapped[str] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoke_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Where the session was opened (``/auth/sessions``); its last use is its newest token.
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # RFC 9449 section 5: the thumbprint of the DPoP key its refresh tokens are bound to.
    dpop_jkt: Mapped[str | None] = mapped_column(String(64), nullable=True)


class RefreshToken(Base):
    """One refresh token, stored as its SHA-256; ``consumed_at`` is set once, by rotation."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    family_id: Mapped[str] = mapped_column(
        ForeignKey("refresh_families.id", ondelete="CASCADE"), index=True
    )
    parent_id: Mapped[int | None] = mapped_column(ID, nullable=True, index=True)  # siblings
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)  # for pruning
    consumed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The status list index of the access token issued with this refresh token
    # (``authority.status``): a family's revocation sets the bits of its tokens.
    status_idx: Mapped[int | None] = mapped_column(Integer, nullable=True)


class RevokedAccessToken(Base):
    """An access token revoked before its expiry, by ``jti``; pruned once it has expired."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class LoginThrottle(Base):
    """Attempt counter of one account, client address or (account, address) pair, in a
    fixed window; ``blocked_until`` is its backoff (``authority.accounts.throttle``)."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[float] = mapped_column(Float, index=True)
    blocked_until: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")


class AuditEvent(Base):
    """One security event (SPEC section 12), never a secret; ``authority.storage.audit``."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    type: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[int | None] = mapped_column(ID, nullable=True, index=True)
    username: Mapped[str | None] = mapped_column(String(150), nullable=True)
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="{}", server_default="{}")


class StatusBlock(Base):
    """A block of status list indexes (``authority.status.store``): leased by one
    replica at ``leased_at``, free again at ``reusable_at``, when every token issued
    from it has expired."""

    __tablename__ = "status_blocks"

    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    leased_at: Mapped[float] = mapped_column(Float)
    reusable_at: Mapped[float] = mapped_column(Float, index=True)


class StatusRevoked(Base):
    """A set bit of the status list: the token holding ``idx`` under its block's current
    lease is revoked. Cleared when the block is leased again."""

    __tablename__ = "status_revoked"

    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revoked_at: Mapped[float] = mapped_column(Float)


class StatusClientToken(Base):
    """The status list index of a ``client_credentials`` token and the client it was
    issued to (``authority.status.indexes`` writes them in batches, once a second), so
    that disabling or deleting the client sets their bits. Cleared with the block."""

    __tablename__ = "status_client_tokens"

    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    client_id: Mapped[str] = mapped_column(String(64), index=True)


class StatusState(Base):
    """One row: its version grows with every change of the list; replicas poll it."""

    __tablename__ = "status_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)

    @staticmethod
    def bump() -> Update:
        """The statement that tells every replica the list changed."""
        return (
            update(StatusState).where(StatusState.id == 1).values(version=StatusState.version + 1)
        )


class DpopProof(Base):
    """A DPoP proof accepted by any replica (RFC 9449 section 11.1): the SHA-256 of its
    key's thumbprint and its ``jti``, kept until the proof window has passed."""

    __tablename__ = "dpop_proofs"

    proof_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class Consent(Base):
    """The scopes a user allowed a client (``authority.authorization.consents``)."""

    __tablename__ = "consents"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), primary_key=True
    )
    scope: Mapped[str] = mapped_column(Text)
    granted_at: Mapped[float] = mapped_column(Float)


class AuthorizationCode(Base):
    """An authorization code (RFC 6749 section 4.1), stored as its SHA-256; ``used_at``
    is set once, by compare-and-set; ``family_id`` is the session it opened, revoked if
    the code is presented again (``authority.authorization.codes``)."""

    __tablename__ = "authorization_codes"

    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("clients.client_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    redirect_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    code_challenge: Mapped[str] = mapped_column(String(128))
    nonce: Mapped[str | None] = mapped_column(String(512), nullable=True)
    scope: Mapped[str] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(String(200))
    auth_time: Mapped[float] = mapped_column(Float)
    # The browser's login session (the /auth family) the code was issued in.
    browser_session: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    family_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    # RFC 9449 section 10: the thumbprint of the DPoP key the exchange must prove.
    dpop_jkt: Mapped[str | None] = mapped_column(String(64), nullable=True)
