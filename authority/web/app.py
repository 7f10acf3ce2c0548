"""The application factory: ``create_app(settings)`` wires storage, keys and routes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, MediaType, Request, Response, get
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from sqlalchemy.exc import DBAPIError

from authority import __version__
from authority.accounts.clients import ClientCache
from authority.accounts.passwords import HashingBusy
from authority.clock import Clock, system_clock
from authority.sessions.pruning import run_pruning
from authority.sessions.service import Authority
from authority.settings import Settings
from authority.signing.key_events import audit_trail
from authority.signing.manager import KeyManager
from authority.signing.records import KeyStoreError
from authority.signing.signer import AccessTokenSigner, ClaimsHook
from authority.signing.stores import make_keystore
from authority.status.indexes import StatusIndexes
from authority.status.publisher import StatusPublisher, status_uri
from authority.status.store import StatusListFull
from authority.storage.database import Database, DatabaseUnavailable, describe_db_error, is_outage
from authority.storage.migrate import check_database
from authority.web.account import ACCOUNT_HANDLERS
from authority.web.auth import auth_routes
from authority.web.authorize import authorize_handlers
from authority.web.cookies import CookieSessions
from authority.web.direct_route import DirectRoute
from authority.web.discovery import discovery_handlers
from authority.web.frontend import frontend_handlers
from authority.web.http import SKIP_METRICS, unavailable
from authority.web.oauth import TOKEN_PATH, oauth_handlers
from authority.web.oidc import oidc_handlers
from authority.web.requests import RequestLog
from authority.web.schema_page import SwaggerPage, schema_router
from authority.web.status import status_handlers

log = logging.getLogger("authority")


def cors_config(settings: Settings) -> CORSConfig | None:
    """Cross-origin requests only from ``CORS_ORIGINS``, which may send credentials."""
    if not settings.cors_origins:
        return None
    return CORSConfig(
        allow_origins=list(settings.cors_origins),
        allow_credentials=True,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Authorization", "Content-Type", "X-CSRFToken", "DPoP"],
        expose_headers=["Retry-After", "WWW-Authenticate", "DPoP-Nonce"],
        max_age=600,
    )


def create_app(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    claims_hook: ClaimsHook | None = None,
    freeze_startup: bool = False,
) -> Litestar:
    """Build the service. Startup fails (and nothing is served) when the database is
    unreachable or unmigrated, or when no signing key can be loaded.

    ``claims_hook(claims) -> extra claims`` adds custom claims to every access token;
    it cannot change the registered ones (``authority.signing.signer.RESERVED_CLAIMS``).
    ``freeze_startup`` (a server process of its own: ``authority serve``) moves what
    start-up made out of the garbage collector's sight once the app has started.
    """
    problems = settings.production_problems()
    if problems:
        raise RuntimeError("; ".join(problems))
    db = Database(settings.database_url, full_sync=settings.sqlite_full_sync)
    keys = KeyManager(make_keystore(settings, db), settings, clock, audit_trail(db, clock))
    indexes = StatusIndexes(db, settings, clock)
    auth = Authority(
        settings=settings,
        db=db,
        keys=keys,
        signer=AccessTokenSigner(
            settings.issuer, settings.access_ttl, claims_hook, status_uri(settings.issuer)
        ),
        secret_key=settings.secret_key_bytes(),
        clock=clock,
        clients=ClientCache(),
        status=indexes,
    )
    publisher = StatusPublisher(db, keys, settings, clock)
    browser_sessions = CookieSessions(auth, keys)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            await check_database(db)
            await keys.load()
            keys.report()
            await publisher.sync()
            tasks = [
                asyncio.create_task(publisher.run(), name="authority-status-list"),
                asyncio.create_task(indexes.run(), name="authority-status-indexes"),
                asyncio.create_task(keys.run(), name="authority-keys"),
                asyncio.create_task(
                    run_pruning(
                        db,
                        clock,
                        settings.maintenance_interval,
                        settings.login_failure_window,
                        settings.audit_retention,
                    ),
                    name="authority-pruning",
                ),
            ]
            if freeze_startup:
                # What start-up made lives as long as the worker: out of the collector's
                # sight, each full collection has far fewer objects to walk. Only in a
                # process of its own: frozen objects are never collected as cycles.
                gc.collect()
                gc.freeze()
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                try:
                    await indexes.flush()  # the client tokens of the last second
                except Exception:
                    log.exception("writing client tokens' status indexes failed")
        finally:
            await db.dispose()

    @get("/health/live", sync_to_thread=False, tags=["operations"])
    def live() -> dict[str, str]:
        return {"status": "ok"}

    @get(
        "/health/ready",
        tags=["operations"],
        responses={
            503: ResponseSpec(
                dict[str, Any],
                description="not ready: each check's state",
                generate_examples=False,
            )
        },
    )
    async def ready() -> Response[dict[str, Any]]:
        # The answer is public: it names the failed check, the log says why (the key
        # manager logs its own problems). A kid is public anyway, in the JWKS.
        checks = {"database": "ok", "signing_key": "unavailable", "keystore": "ok"}
        try:
            await db.ping(within=2.0)
        except DatabaseUnavailable as exc:
            log.warning("not ready: database: %s", exc)
            checks["database"] = "unavailable"
        signing = None
        try:
            signing = keys.signing_key().kid
            checks["signing_key"] = f"ok ({signing})"
        except KeyStoreError as exc:
            log.warning("not ready: signing key: %s", exc)
        # The current key vanished (deleted, not revoked) and an older, still published
        # key signs: tokens verify, and every replica shares the store, so turning them
        # all away would be an outage. Degraded, still ready, until a newer key signs.
        missing = keys.missing_current
        if missing is not None and signing is not None:
            log.warning("degraded: signing key %s is missing, %s signs", missing.kid, signing)
            checks["signing_key"] = f"degraded ({signing})"
        # A broken store with a loaded key keeps signing: degraded, still ready.
        if keys.problem:
            checks["keystore"] = "degraded"
        is_ready = checks["database"] == "ok" and checks["signing_key"] != "unavailable"
        return Response(
            {"status": "ready" if is_ready else "unavailable", "checks": checks},
            status_code=200 if is_ready else 503,
        )

    app = Litestar(
        route_handlers=[
            *discovery_handlers(settings, keys, db),
            *oauth_handlers(auth, keys),
            *authorize_handlers(browser_sessions),
            *oidc_handlers(browser_sessions),
            *status_handlers(publisher),
            auth_routes(auth, keys, ACCOUNT_HANDLERS),
            *frontend_handlers(),
            live,
            ready,
            Metrics,
        ],
        lifespan=[lifespan],
        middleware=[
            PrometheusConfig(
                app_name="authority",
                prefix="authority",
                group_path=True,
                exclude_opt_key=SKIP_METRICS,
            ).middleware
        ],
        exception_handlers={
            DatabaseUnavailable: _unavailable,
            DBAPIError: _database_error,
            KeyStoreError: _unavailable,
            HashingBusy: _unavailable,
            StatusListFull: _unavailable,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        cors_config=cors_config(settings),
        openapi_config=OpenAPIConfig(
            title="Token authority",
            version=__version__,
            path="/schema",
            render_plugins=[SwaggerPage("/schema")],
            openapi_router=schema_router("/schema"),
        ),
        debug=False,
        # Logging is the server process's to configure (authority.logs), not the app's.
        logging_config=None,
    )
    # The token endpoint around the router (``DirectRoute``); the request log around
    # routing and its errors too, so every answer has its X-Request-ID.
    token_route = app.route_handler_method_map[TOKEN_PATH]["POST"]
    app.asgi_handler = RequestLog(DirectRoute(app.asgi_handler, app, token_route))
    return app


class Metrics(PrometheusController):
    """Litestar's Prometheus endpoint, documented as the text format it serves."""

    @get(media_type=MediaType.TEXT, tags=["operations"], summary="Prometheus metrics")
    async def get(self) -> Response[Any]:
        return await PrometheusController.get.fn(self)  # type: ignore[no-any-return]


def _unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    log.error("%s %s: unavailable: %s", request.method, request.url.path, exc)
    return unavailable()


def _database_error(request: Request[Any, Any, Any], exc: DBAPIError) -> Response[Any]:
    """An outage the handler did not expect is a 503; any other database error a bug."""
    if is_outage(exc):
        return _unavailable(request, DatabaseUnavailable(describe_db_error(exc)))
    return _internal_error(request, exc)


def _http_error(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"status_code": exc.status_code, "detail": exc.detail}
    if exc.extra:
        body["extra"] = exc.extra
    return Response(body, status_code=exc.status_code, headers=exc.headers)


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Response({"status_code": 500, "detail": "Internal Server Error"}, status_code=500)


def app_from_env() -> Litestar:
    """Factory for ``uvicorn --factory`` and worker processes: settings from the env."""
    return create_app(Settings.from_env(), freeze_startup=True)
