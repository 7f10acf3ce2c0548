"""The authority in-process: the real app with its lifespan running, its database, the
clients registered in it, users and their sessions, and the requests the tests send.

One ``World`` serves every in-process test of the app:

- the OAuth endpoints (``token``, ``refresh``, ``introspect``, ``granted``, ``decode``),
  with a user and a login session of a test's own (``with_session``) whose refresh
  token the attack tests aim at;
- the first-party ``/auth`` API, through any number of independent browsers (cookie
  jars, ``browser``), and users made on the spot (``new_user``, ``logged_in``);
- a proof that a request changed nothing (``unchanged``), read through a fresh engine,
  never the app's own connections.

``open_world`` starts one. The ``world`` fixture (``tests/conftest.py``) gives each test
the world of its module, configured by the module's ``world_config``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from litestar import Litestar
from sqlalchemy import select

from authority.accounts.clients import ClientRecord, create_client, hash_secret
from authority.accounts.passwords import hash_password
from authority.accounts.users import UserRecord, create_user
from authority.settings import Settings
from authority.signing.file_store import FileKeyStore
from authority.signing.manager import ensure_key
from authority.storage.database import Database, create_engine
from authority.storage.migrate import upgrade
from authority.storage.tables import (
    AuthorizationCode,
    Client,
    Consent,
    LoginThrottle,
    RefreshFamily,
    RefreshToken,
    RevokedAccessToken,
    User,
)
from authority.web.app import create_app
from tests.helpers.oauth import FORM, Form, basic, encode_form
from tests.helpers.postgres import postgres_database

PASSWORD = "correct horse battery staple"  # every user's
BASE_URL = "http://testserver.local"


@dataclass(frozen=True)
class ClientSpec:
    """A client to register: confidential (with a secret) or public."""

    public: bool
    grant_types: Sequence[str]
    scopes: Sequence[str] = ("read", "write")
    audiences: Sequence[str] = ()
    redirect_uris: Sequence[str] = ()
    first_party: bool = False
    post_logout_redirect_uris: Sequence[str] = ()


CLIENTS: Mapping[str, ClientSpec] = {
    "app": ClientSpec(False, ["password", "refresh_token"]),  # the session's owner
    "other": ClientSpec(False, ["password", "refresh_token"]),  # a second confidential client
    "spa": ClientSpec(True, ["password", "refresh_token"]),  # a public client
    "service": ClientSpec(False, ["client_credentials"]),  # may not use the password grant
}


@dataclass(frozen=True)
class WorldConfig:
    """How a module's world is made (the ``world_config`` fixture).

    ``settings``: overrides of ``settings_in``; ``clients``: the clients registered;
    ``session_scope``: when set, each test's ``world`` starts with a user of its own,
    logged in once by the ``app`` client (password grant) with this scope."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    clients: Mapping[str, ClientSpec] = field(default_factory=lambda: CLIENTS)
    session_scope: str | None = None

    def open(self, directory: Path) -> contextlib.AbstractAsyncContextManager[World]:
        """``open_world`` on this configuration, its files in ``directory``."""
        return open_world(settings_in(directory, **self.settings), self.clients)


@contextlib.contextmanager
def on_backend(config: WorldConfig, backend: str) -> Iterator[WorldConfig]:
    """``config`` on ``backend`` (one of ``BACKENDS``): SQLite, in the world's own file,
    or a new PostgreSQL database, dropped afterwards (skipped when there is no server)."""
    if backend == "sqlite":
        yield config
        return
    with postgres_database() as url:
        yield dataclasses.replace(config, settings={**config.settings, "database_url": url})


def settings_in(directory: Path, **overrides: Any) -> Settings:
    """Settings for an in-process app whose files live in ``directory``."""
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{directory / 'authority.db'}",
        "keys_dir": directory / "keys",
        "env": "test",
        "secret_key": "s" * 40,
    }
    return Settings(**{**values, **overrides})


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)  # argon2 once per test run, not once per user


_users = itertools.count(1)

Snapshot = dict[str, list[tuple[Any, ...]]]
# Every table a request to the app may write.
SNAPSHOT_TABLES = {
    "users": (User.__table__, User.id),
    "clients": (Client.__table__, Client.client_id),
    "refresh_families": (RefreshFamily.__table__, RefreshFamily.id),
    "refresh_tokens": (RefreshToken.__table__, RefreshToken.id),
    "revoked_access_tokens": (RevokedAccessToken.__table__, RevokedAccessToken.jti),
    "login_throttle": (LoginThrottle.__table__, LoginThrottle.key),
    "consents": (Consent.__table__, Consent.user_id),
    "authorization_codes": (AuthorizationCode.__table__, AuthorizationCode.code_hash),
}


async def snapshot(url: str) -> Snapshot:
    """Every row of the tables the app writes, read through a new engine of its own."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                name: [tuple(row) for row in await conn.execute(select(table).order_by(key))]
                for name, (table, key) in SNAPSHOT_TABLES.items()
            }
    finally:
        await engine.dispose()


class AppClient(httpx.AsyncClient):
    """The test client of the app: an httpx client calling it in this event loop, as
    Litestar's ``AsyncTestClient`` does by default (``testclient`` address and user
    agent, redirects followed); ``app`` takes raw ASGI calls."""

    def __init__(self, app: Any):  # Any: httpx and Litestar type the ASGI callable differently
        transport = httpx.ASGITransport(app=app, client=("testclient", 50000))
        super().__init__(
            transport=transport,
            base_url=BASE_URL,
            headers={"user-agent": "testclient"},
            follow_redirects=True,
        )
        self.app: Any = app


@contextlib.asynccontextmanager
async def serving(app: Litestar) -> AsyncIterator[AppClient]:
    """The app with its lifespan (startup, background tasks) running in this event
    loop, and its client. Litestar's ``AsyncTestClient`` runs the lifespan and its own
    requests in a blocking portal's loop on another thread while the browsers' requests
    run in the test's: asyncpg connections belong to the loop that opened them, so on
    PostgreSQL the shared pool handed one loop's connections to the other ("got Future
    attached to a different loop"). One loop serves both backends alike. The lifespan
    runs in a task of its own, which enters and leaves it (its cancel scopes must be
    left by the task that entered them; a fixture's teardown may run in another)."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(run(), name="world-lifespan")
    ready = asyncio.create_task(started.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not started.is_set():
        ready.cancel()
        await task  # the startup failed: its exception
    try:
        async with AppClient(app) as client:
            yield client
    finally:
        stop.set()
        await task


def asgi_client(app: Any, address: str = "127.0.0.1", **headers: str) -> httpx.AsyncClient:
    """An httpx client of an ASGI ``app`` (``Any``: httpx and Litestar type the ASGI
    callable differently), whose requests come from ``address``."""
    transport = httpx.ASGITransport(app=app, client=(address, 5000))
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL, headers=headers)


@dataclass
class World:
    """The running app, its database and what is registered in it. ``user`` and
    ``session`` are a test's own (``with_session``); ``browsers`` are closed with the
    world; ``caplog``, when set, makes ``unchanged`` prove that no error was logged."""

    settings: Settings
    http: AppClient
    db: Database
    clients: dict[str, ClientRecord]
    secrets: dict[str, str]
    jwks: jwt.PyJWKSet
    user: UserRecord | None = None
    session: dict[str, Any] = field(default_factory=dict)
    caplog: pytest.LogCaptureFixture | None = None
    browsers: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def app(self) -> Litestar:
        app: Litestar = self.http.app
        return app

    # --- users and sessions ------------------------------------------------------

    async def add_user(
        self, username: str, email: str, password_hash_: str | None = None
    ) -> UserRecord:
        """A user with ``PASSWORD`` (or the given hash)."""
        hashed = password_hash_
        if hashed is None:
            hashed = await asyncio.to_thread(password_hash)
        return await self.db.write(
            create_user, username=username, email=email, password_hash=hashed, now=time.time()
        )

    async def new_user(self) -> tuple[str, str]:
        """A fresh user; its name and email."""
        user = await self.add_user(*_fresh_names())
        return user.username, user.email

    def seen_by(self, caplog: pytest.LogCaptureFixture | None) -> World:
        """This world, whose ``unchanged`` also checks the log ``caplog`` captures."""
        return dataclasses.replace(self, caplog=caplog)

    async def with_session(
        self, caplog: pytest.LogCaptureFixture | None = None, scope: str | None = "read"
    ) -> World:
        """This world with a new user, logged in by the ``app`` client with ``scope``
        (the password grant): its refresh token is the one the tests attack."""
        user = await self.add_user(*_fresh_names())
        world = dataclasses.replace(self, user=user, caplog=caplog, session={})
        world.session = await world.login(scope=scope)
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

    # --- the OAuth endpoints -----------------------------------------------------

    def client_id(self, name: str) -> str:
        return self.clients[name].client_id

    def basic(self, name: str) -> str:
        """The client_secret_basic ``Authorization`` header of client ``name``."""
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
        """``body`` sent as given, with exactly these headers (bytes are sent raw)."""
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

    async def granted(self, **form: str) -> dict[str, Any]:
        """The answer of a token request (the form holds any client credentials), which
        must succeed."""
        response = await self.token(form, client=None)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def login(self, client: str = "app", scope: str | None = "read") -> dict[str, Any]:
        """The password grant for this world's user."""
        form = {"grant_type": "password", "username": self.username, "password": PASSWORD}
        if scope is not None:
            form["scope"] = scope
        if self.clients[client].is_public:
            form["client_id"] = self.client_id(client)
            return await self.granted(**form)
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

    def decode(self, token: str, audience: str = "default") -> dict[str, Any]:
        """The claims of an access token, verified with the JWKS the app served."""
        kid = jwt.get_unverified_header(token)["kid"]
        return dict(
            jwt.decode(
                token,
                self.jwks[kid].key,
                ["RS256"],
                audience=audience,
                issuer=self.settings.issuer,
            )
        )

    # --- the /auth API, in browsers ----------------------------------------------

    def browser(self, address: str = "203.0.113.7", **headers: str) -> httpx.AsyncClient:
        """A new cookie jar, whose requests come from ``address``."""
        client = asgi_client(self.app, address, **headers)
        self.browsers.append(client)
        return client

    async def logged_in(self, name: str | None = None) -> httpx.AsyncClient:
        """A browser logged in by cookie (a new user unless ``name`` is given)."""
        if name is None:
            name, _ = await self.new_user()
        client = self.browser()
        token = (await client.get("/auth/csrf")).json()["csrf_token"]
        login = await client.post(
            "/auth/login",
            json={"username": name, "password": PASSWORD},
            headers={"X-CSRFToken": token},
        )
        assert login.status_code == 200, login.text
        return client

    async def body_login(self, name: str) -> dict[str, Any]:
        """The tokens of a login with ``delivery: body``."""
        response = await self.browser().post(
            "/auth/login", json={"username": name, "password": PASSWORD, "delivery": "body"}
        )
        assert response.status_code == 200, response.text
        return dict(response.json()["tokens"])

    async def close_browsers(self) -> None:
        for client in self.browsers:
            await client.aclose()
        self.browsers.clear()

    # --- proofs --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def unchanged(self) -> AsyncIterator[None]:
        """The block leaves every table the app writes exactly as it found it, and
        (when the world has a ``caplog``) logs no server error."""
        before = await snapshot(self.settings.database_url)
        logged = len(self.caplog.records) if self.caplog is not None else 0
        yield
        assert await snapshot(self.settings.database_url) == before
        if self.caplog is not None:
            errors = [r for r in self.caplog.records[logged:] if r.levelno >= logging.ERROR]
            assert not errors, [r.getMessage() for r in errors]


def _fresh_names() -> tuple[str, str]:
    """A username and an email no other user of this test run has."""
    n = next(_users)
    return f"user{n}-{time.time_ns() % 10**8}", f"user{n}@example.org"


@contextlib.asynccontextmanager
async def open_world(
    settings: Settings, clients: Mapping[str, ClientSpec] = CLIENTS, **app_options: Any
) -> AsyncIterator[World]:
    """Migrate, make a signing key, register ``clients`` and start the app (made with
    ``create_app(settings, **app_options)``)."""
    await asyncio.to_thread(upgrade, settings.database_url)
    settings.keys_dir.mkdir(exist_ok=True)
    await ensure_key(FileKeyStore(settings.keys_dir), settings)
    db = Database(settings.database_url)
    try:
        now = time.time()
        records: dict[str, ClientRecord] = {}
        secrets: dict[str, str] = {}
        for name, spec in clients.items():
            secret = f"{name}-secret-{'s' * 32}"
            records[name] = await db.write(
                create_client,
                name=name,
                secret_hash=None
                if spec.public
                else hash_secret(settings.secret_key_bytes(), secret),
                grant_types=list(spec.grant_types),
                scopes=list(spec.scopes),
                audiences=list(spec.audiences),
                now=now,
                redirect_uris=list(spec.redirect_uris),
                first_party=spec.first_party,
                post_logout_redirect_uris=list(spec.post_logout_redirect_uris),
            )
            secrets[name] = secret
        async with serving(create_app(settings, **app_options)) as http:
            jwks = jwt.PyJWKSet.from_dict((await http.get("/.well-known/jwks.json")).json())
            world = World(settings, http, db, records, secrets, jwks)
            try:
                yield world
            finally:
                await world.close_browsers()
    finally:
        await db.dispose()


def csrf(client: httpx.AsyncClient) -> dict[str, str]:
    """The CSRF header of a browser, from its cookie."""
    return {"X-CSRFToken": client.cookies["csrftoken"]}


def cookie_names(response: httpx.Response) -> Iterator[str]:
    for header in response.headers.get_list("set-cookie"):
        yield header.split("=", 1)[0]
