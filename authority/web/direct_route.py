"""One route served straight from the ASGI call, around Litestar's router.

The token endpoint is the service's hot path, and Litestar's routing, middleware
stack and handler signature model cost it a few percent of a request's CPU besides
the signature (callgrind: 0.27 M of a refresh's 7.5 M instructions; issue 14).
``DirectRoute`` answers exactly one method and path by calling the route handler's own
function with a ``Request``, then turning its answer into ASGI the way Litestar does
(``HTTPRouteHandler.to_response``); anything else, and any request Litestar would
treat differently, goes to the application unchanged.

What the router would have done is kept, or refused at start-up:
- the scope gets the route handler (the body limit reads it), its path template and
  path parameters, as routing sets them;
- an exception the handler lets through, or that making its answer raises, goes to
  the application's exception handlers, resolved for the route, as Litestar's
  exception middleware would send it;
- a cross-origin request (an ``Origin`` header, when CORS is configured) takes the
  application's way, through its CORS middleware;
- the answer goes through the route's own response path (its after-request hook,
  headers and cookies, if it has them);
- the route may have no guards, before-request or after-response hook, cache or
  middleware that applies to it, the application no after-exception hook, and its
  function takes the request alone: ``DirectRoute`` refuses to be built otherwise, so
  a route that gains one cannot be served around it by mistake.
"""

from __future__ import annotations

import inspect
from typing import Any

from litestar import Litestar, Request
from litestar.exceptions import HTTPException
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler
from litestar.middleware import DefineMiddleware
from litestar.types import ASGIApp, ExceptionHandler, ExceptionHandlersMap, Receive, Scope, Send

from authority.web.http import scope_header


class DirectRoute:
    """ASGI wrapper of the application: ``handler``'s method and path, served directly."""

    def __init__(self, app: ASGIApp, litestar: Litestar, handler: BaseRouteHandler) -> None:
        if not isinstance(handler, HTTPRouteHandler):
            raise TypeError(f"{handler}: a direct route is an HTTP route")
        methods = handler.http_methods
        paths = handler.paths
        if len(methods) != 1 or len(paths) != 1:
            raise ValueError(f"{handler}: a direct route has one method and one path")
        _check_direct(handler)
        if litestar.after_exception:
            raise ValueError(f"{handler}: cannot be served directly: after-exception hooks")
        self.app = app
        self.litestar = litestar
        self.handler = handler
        self.method = next(iter(methods))
        self.path = next(iter(paths))
        self.fn = handler.fn
        self.exception_handlers = handler.resolve_exception_handlers()
        self.cors = litestar.cors_config is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["path"] != self.path
            or scope.get("method") != self.method  # a websocket has none
            or scope.get("root_path")
            or (self.cors and scope_header(scope, b"origin") is not None)
        ):
            await self.app(scope, receive, send)
            return
        scope["route_handler"] = self.handler
        scope["path_template"] = self.path
        scope["path_params"] = {}
        request: Request[Any, Any, Any] = Request(scope, receive, send)
        try:
            answer = await self.fn(request)
            response = await self.handler.to_response(self.litestar, answer, request)
        except Exception as exc:  # what the handler did not turn into an answer itself
            on_error = _exception_handler(self.exception_handlers, exc)
            if on_error is None:
                raise
            response = await self.handler.to_response(
                self.litestar, on_error(request, exc), request
            )
        await response(scope, receive, send)


def _exception_handler(
    handlers: ExceptionHandlersMap, exc: Exception
) -> ExceptionHandler[Any] | None:
    """The handler Litestar's exception middleware picks: an HTTP error's status code
    first, then the exception's classes, nearest first, then the 500 handler for
    anything that is not an HTTP error."""
    if isinstance(exc, HTTPException) and exc.status_code in handlers:
        return handlers[exc.status_code]
    for kind in type(exc).__mro__:
        if kind in handlers:
            return handlers[kind]
    return None if isinstance(exc, HTTPException) else handlers.get(500)


def _check_direct(handler: HTTPRouteHandler) -> None:
    """Refuse a route whose guards, hooks, cache, middleware or parameters the router
    would have applied."""
    problems = []
    if handler.resolve_guards():
        problems.append("guards")
    if handler.resolve_before_request():
        problems.append("a before-request hook")
    if handler.resolve_after_response():
        problems.append("an after-response hook")
    if handler.cache:
        problems.append("a response cache")
    for middleware in handler.resolve_middleware():
        defined = middleware.kwargs if isinstance(middleware, DefineMiddleware) else {}
        opt_key = getattr(defined.get("config"), "exclude_opt_key", None)
        if not opt_key or not handler.opt.get(opt_key):
            problems.append(f"middleware {middleware!r}")
    if list(inspect.signature(handler.fn).parameters) != ["request"]:
        problems.append("parameters besides the request")
    if not inspect.iscoroutinefunction(handler.fn):
        problems.append("a synchronous function")
    if problems:
        raise ValueError(f"{handler}: cannot be served directly: {', '.join(problems)}")
