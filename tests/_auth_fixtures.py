"""An in-process authority for /auth tests: the real app with its lifespan running, and
any number of independent browsers (cookie jars) talking to it over ASGI."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar
from sqlalchemy import select

from authority.accounts.users import create_user
from authority.settings import Settings
from authority.storage.database import create_engine
from authority.storage.tables import LoginThrottle, RefreshFamily, RefreshToken, User
from tests._oauth_fixtures import PASSWORD, World, open_world, password_hash

BASE_URL = "http://testserver.local"
_names = itertools.count(1)


@dataclass
class Site:
    """The app, and the browsers opened on it (closed with the site)."""

    world: World
    app: Litestar
    browsers: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.world.settings

    def browser(self, address: str = "203.0.113.7", **headers: str) -> httpx.AsyncClient:
        """A new cookie jar, whose requests come from ``address``."""
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=(address, 5000)),
            base_url=BASE_URL,
            headers=headers,
        )
        self.browsers.append(client)
        return client

    async def new_user(self) -> tuple[str, str]:
        """A fresh user; its name and email."""
        n = next(_names)
        name, email = f"auth{n}-{time.time_ns() % 10**8}", f"auth{n}@example.org"
        await self.world.db.write(
            create_user,
            username=name,
            email=email,
            password_hash=password_hash(),
            now=time.time(),
        )
        return name, email

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
        response = await self.browser().post(
            "/auth/login", json={"username": name, "password": PASSWORD, "delivery": "body"}
        )
        assert response.status_code == 200, response.text
        return dict(response.json()["tokens"])

    async def close(self) -> None:
        for client in self.browsers:
            await client.aclose()
        self.browsers.clear()


def site_settings(directory: Path, **overrides: Any) -> Settings:
    """Settings for an in-process site whose files live in ``directory``."""
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{directory / 'authority.db'}",
        "keys_dir": directory / "keys",
        "env": "test",
        "secret_key": "s" * 40,
    }
    return Settings(**{**values, **overrides})


@contextlib.asynccontextmanager
async def open_site(settings: Settings) -> AsyncIterator[Site]:
    async with open_world(settings) as world:
        site = Site(world, world.http.app)
        try:
            yield site
        finally:
            await site.close()


def csrf(client: httpx.AsyncClient) -> dict[str, str]:
    return {"X-CSRFToken": client.cookies["csrftoken"]}


TABLES = {
    "users": (User.__table__, User.id),
    "refresh_families": (RefreshFamily.__table__, RefreshFamily.id),
    "refresh_tokens": (RefreshToken.__table__, RefreshToken.id),
    "login_throttle": (LoginThrottle.__table__, LoginThrottle.key),
}


async def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables /auth writes, read through a new engine of its own."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                name: [tuple(row) for row in await conn.execute(select(table).order_by(key))]
                for name, (table, key) in TABLES.items()
            }
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def unchanged(site: Site) -> AsyncIterator[None]:
    before = await snapshot(site.settings.database_url)
    yield
    assert await snapshot(site.settings.database_url) == before


def cookie_names(response: httpx.Response) -> Iterator[str]:
    for header in response.headers.get_list("set-cookie"):
        yield header.split("=", 1)[0]
