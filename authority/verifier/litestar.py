"""Litestar integration of the verifier: a plugin that authenticates every route with a
bearer token (RFC 6750) and a ``requires_scope`` guard.

    verifier = Verifier(issuer, audience)
    app = Litestar([...], plugins=[BearerAuth(verifier, exclude_paths=["/schema"])])

    @get("/orders", guards=[requires_scope("orders:read")])
    async def orders(request: Request[Any, dict[str, Any], Any]) -> ...:
        request.auth["sub"]  # the verified claims

Routes with ``opt={"no_auth": True}`` (or under ``exclude_paths``) are public. Responses
are those of ``authority.verifier.asgi``; a failed ``requires_scope`` is a 403
``insufficient_scope`` with its ``WWW-Authenticate`` challenge. This module imports
Litestar; ``authority.verifier`` does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from litestar import Request, Response, types
from litestar.config.app import AppConfig
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.plugins import InitPlugin

from authority.verifier.asgi import ASGIApp, BearerAuthMiddleware, Denied, Scope, check_scopes
from authority.verifier.verify import Verifier

NO_AUTH = "no_auth"


class InsufficientScope(PermissionDeniedException):
    """403 with RFC 6750's ``insufficient_scope`` challenge."""

    def __init__(self, denied: Denied):
        super().__init__(detail="insufficient_scope", headers=denied.headers())
        self.denied = denied


class _Middleware(BearerAuthMiddleware):
    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier,
        exclude_paths: Iterable[str],
        realm: str | None,
        opt_key: str,
    ):
        super().__init__(app, verifier, exclude_paths=exclude_paths, realm=realm)
        self.opt_key = opt_key

    def skip(self, scope: Scope) -> bool:
        handler = scope.get("route_handler")
        if isinstance(handler, BaseRouteHandler) and handler.opt.get(self.opt_key):
            return True
        return super().skip(scope)


def _middleware(
    app: types.ASGIApp,
    verifier: Verifier,
    exclude_paths: Iterable[str],
    realm: str | None,
    opt_key: str,
) -> types.ASGIApp:
    # Litestar types its scopes as TypedDicts; the middleware takes any mapping.
    wrapped = _Middleware(cast(ASGIApp, app), verifier, exclude_paths, realm, opt_key)
    return cast(types.ASGIApp, wrapped)


class BearerAuth(InitPlugin):
    """Adds the bearer middleware to the app and renders ``InsufficientScope``."""

    def __init__(
        self,
        verifier: Verifier,
        *,
        exclude_paths: Iterable[str] = (),
        realm: str | None = None,
        opt_key: str = NO_AUTH,
    ):
        self.verifier = verifier
        self.exclude_paths = tuple(exclude_paths)
        self.realm = realm
        self.opt_key = opt_key

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.middleware.append(
            DefineMiddleware(
                _middleware,
                verifier=self.verifier,
                exclude_paths=self.exclude_paths,
                realm=self.realm,
                opt_key=self.opt_key,
            )
        )
        app_config.exception_handlers[InsufficientScope] = _insufficient_scope
        return app_config


def _insufficient_scope(_: Request[Any, Any, Any], exc: InsufficientScope) -> Response[Any]:
    return Response(exc.denied.body(), status_code=403, headers=exc.denied.headers())


def requires_scope(*scopes: str, realm: str | None = None) -> types.Guard:
    """A guard: the verified token must grant every one of ``scopes``."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        claims = connection.scope.get("auth")
        if not isinstance(claims, dict):  # the route is public or the plugin is missing
            raise NotAuthorizedException(headers={"WWW-Authenticate": "Bearer"})
        try:
            check_scopes(claims, scopes, realm)
        except Denied as denied:
            raise InsufficientScope(denied) from None

    return guard
