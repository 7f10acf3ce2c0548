"""A running authority for OAuth endpoint tests: the real app in-process with four
clients, a fresh user and login session per test, helpers to send raw forms, and a
proof that a request changed nothing (read through a fresh engine, never the app's
own connections)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import functools
import itertools
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import select

from authority.accounts.clients import ClientRecord, create_client, hash_secret
from authority.accounts.passwords import hash_password
from authority.accounts.users import UserRecord, create_user
from authority.settings import Settings
from authority.signing.file_store import FileKeyStore
from authority.signing.manager import ensure_key
from authority.storage.database import Database, create_engine
from authority.storage.migrate import upgrade
from authority.storage.tables import Client, RefreshFamily, RefreshToken, RevokedAccessToken, User
from authority.web.app import create_app

FORM = "application/x-www-form-urlencoded"
PASSWORD = "correct horse battery staple"
# RFC 6749 section 5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
DESCRIPTION_CHARS = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}

# name: (public?, grant types)
CLIENTS: dict[str, tuple[bool, list[str]]] = {
    "app": (False, ["password", "refresh_token"]),  # the session's owner
    "other": (False, ["password", "refresh_token"]),  # a second confidential client
    "spa": (True, ["password", "refresh_token"]),  # a public client
    "service": (False, ["client_credentials"]),  # may not use the password grant
}


_users = itertools.count(1)


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)  # argon2 once per test run, not once per test


def basic(client_id: str, secret: str) -> str:
    """RFC 6749 section 2.3.1 client_secret_basic."""
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


Form = bytes | str | Sequence[tuple[str, str]] | Mapping[str, str]


def encode_form(body: Form) -> bytes:
    """Pairs or a mapping are urlencoded; a str or bytes is sent exactly as written."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("ascii")
    pairs = list(body.items()) if isinstance(body, Mapping) else list(body)
    return urlencode(pairs).encode("ascii")


def assert_oauth_error(
    response: httpx.Response, status: int | tuple[int, ...], error: str | tuple[str, ...]
) -> dict[str, Any]:
    """An RFC 6749 section 5.2 error: the status, no-store, and exactly
    ``{"error", "error_description"}`` with a description in the allowed characters."""
    statuses = (status,) if isinstance(status, int) else status
    errors = (error,) if isinstance(error, str) else error
    assert response.status_code < 500, response.text
    assert response.status_code in statuses, response.text
    assert response.headers.get("cache-control") == "no-store"
    assert response.headers.get("content-type", "").startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] in errors, body
    assert body["error_description"], body
    assert set(body["error_description"]) <= DESCRIPTION_CHARS, body
    if body["error"] == "invalid_client":
        assert response.status_code == 401
        assert response.headers.get("www-authenticate", "").startswith("Basic ")
    return dict(body)


Snapshot = dict[str, list[tuple[Any, ...]]]
SNAPSHOT_TABLES = {
    "users": (User.__table__, User.id),
    "clients": (Client.__table__, Client.client_id),
    "refresh_families": (RefreshFamily.__table__, RefreshFamily.id),
    "refresh_tokens": (RefreshToken.__table__, RefreshToken.id),
    "revoked_access_tokens": (RevokedAccessToken.__table__, RevokedAccessToken.jti),
}


async def snapshot(url: str) -> Snapshot:
    """Every row of the token tables, read through a new engine of its own."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                name: [tuple(row) for row in await conn.execute(select(table).order_by(key))]
                for name, (table, key) in SNAPSHOT_TABLES.items()
            }
    finally:
        await engine.dispose()


@dataclass
class World:
    settings: Settings
    http: AsyncTestClient  # type: ignore[type-arg]
    db: Database
    user: UserRecord | None
    clients: dict[str, ClientRecord]
    secrets: dict[str, str]
    caplog: pytest.LogCaptureFixture | None = None
    session: dict[str, Any] = field(default_factory=dict)

    async def with_session(self, caplog: pytest.LogCaptureFixture | None = None) -> World:
        """This world with a new user, logged in by the ``app`` client with scope ``read``
        (the password grant): its refresh token is the one the tests attack."""
        n = next(_users)
        user = await self.db.write(
            create_user,
            username=f"user{n}",
            email=f"user{n}@example.org",
            password_hash=await asyncio.to_thread(password_hash),
            now=time.time(),
        )
        world = dataclasses.replace(self, user=user, caplog=caplog)
        world.session = await world.login()
        return world

    @property
    def username(self) -> str:
        assert self.user is not None
        return self.user.username

    @property
    def user_id(self) -> int:
        assert self.user is not None
        return self.user.id

    @property
    def refresh_token(self) -> str:
        return str(self.session["refresh_token"])

    @property
    def access_token(self) -> str:
        return str(self.session["access_token"])

    def client_id(self, name: str) -> str:
        return self.clients[name].client_id

    def basic(self, name: str) -> str:
        return basic(self.client_id(name), self.secrets[name])

    async def post(
        self,
        path: str,
        body: Form,
        *,
        auth: str | None = None,
        content_type: str | None = FORM,
        headers: Mapping[str, str | bytes] | None = None,
    ) -> httpx.Response:
        sent: dict[str, str | bytes] = {}
        if content_type is not None:
            sent["content-type"] = content_type
        if auth is not None:
            sent["authorization"] = auth
        sent.update(headers or {})
        raw = [
            (k.encode(), v if isinstance(v, bytes) else v.encode("latin-1"))
            for k, v in sent.items()
        ]
        return await self.http.post(path, content=encode_form(body), headers=raw)

    async def token(
        self, body: Form, *, client: str | None = "app", auth: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """POST /oauth/token with ``client``'s Basic credentials, or with ``auth`` as
        the Authorization header, or with none when both are None."""
        if auth is None and client is not None:
            auth = self.basic(client)
        return await self.post("/oauth/token", body, auth=auth, **kwargs)

    async def login(self, client: str = "app", scope: str | None = "read") -> dict[str, Any]:
        form = {"grant_type": "password", "username": self.username, "password": PASSWORD}
        if scope is not None:
            form["scope"] = scope
        if self.clients[client].is_public:
            form["client_id"] = self.client_id(client)
            response = await self.token(form, client=None)
        else:
            response = await self.token(form, client=client)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def refresh(self, token: str, client: str = "app", **extra: str) -> httpx.Response:
        form = {"grant_type": "refresh_token", "refresh_token": token, **extra}
        if self.clients[client].is_public:
            return await self.token({**form, "client_id": self.client_id(client)}, client=None)
        return await self.token(form, client=client)

    async def assert_refresh_works(self, token: str, client: str = "app") -> None:
        """The token was left intact: its owner can still rotate it, once."""
        response = await self.refresh(token, client)
        assert response.status_code == 200, response.text
        assert response.json()["refresh_token"] != token

    async def introspect(self, token: str, client: str = "app") -> httpx.Response:
        return await self.post("/oauth/introspect", {"token": token}, auth=self.basic(client))

    @contextlib.asynccontextmanager
    async def unchanged(self) -> AsyncIterator[None]:
        """The block leaves every token table exactly as it found it and logs no
        server error."""
        before = await snapshot(self.settings.database_url)
        logged = len(self.caplog.records) if self.caplog is not None else 0
        yield
        assert await snapshot(self.settings.database_url) == before
        if self.caplog is not None:
            errors = [r for r in self.caplog.records[logged:] if r.levelno >= logging.ERROR]
            assert not errors, [r.getMessage() for r in errors]


@contextlib.asynccontextmanager
async def open_world(settings: Settings) -> AsyncIterator[World]:
    """Migrate, make a signing key, register the clients and start the app. Each test
    then takes ``World.with_session``: a user of its own, logged in once."""
    await asyncio.to_thread(upgrade, settings.database_url)
    settings.keys_dir.mkdir(exist_ok=True)
    await ensure_key(FileKeyStore(settings.keys_dir), settings)
    db = Database(settings.database_url)
    try:
        now = time.time()
        clients: dict[str, ClientRecord] = {}
        secrets: dict[str, str] = {}
        for name, (public, grants) in CLIENTS.items():
            secret = f"{name}-secret-{'s' * 32}"
            clients[name] = await db.write(
                create_client,
                name=name,
                secret_hash=None if public else hash_secret(settings.secret_key_bytes(), secret),
                grant_types=grants,
                scopes=["read", "write"],
                audiences=[],
                now=now,
            )
            secrets[name] = secret
        async with AsyncTestClient(create_app(settings)) as http:
            yield World(settings, http, db, None, clients, secrets)
    finally:
        await db.dispose()
