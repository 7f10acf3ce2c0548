"""``POST /oauth/token`` is served around Litestar's router (``authority.web.direct_route``)
and answers exactly as the router would: the same status, body and headers for good
and bad requests, the application's answer to an error the handler lets through, the
access log's route, and the router's way for a cross-origin request or another method.
A route the router would guard, hook or give parameters cannot be served directly."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, post
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.middleware import DefineMiddleware
from litestar.params import FromQuery
from litestar.plugins.prometheus import PrometheusConfig
from litestar.routes.http import HTTPRoute
from sqlalchemy.exc import DBAPIError, OperationalError

from authority.grants import GRANTS
from authority.web.direct_route import DirectRoute, _exception_handler
from authority.web.http import ReadyJson
from tests.helpers.world import ClientSpec, World, WorldConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")
ORIGIN = "https://app.example"
CLIENTS = {"service": ClientSpec(False, ["client_credentials"], ["read"], ["billing"])}
FORM = "application/x-www-form-urlencoded"
# Headers that differ between two answers by design: the CORS headers (only the
# routed request asks for them), the request id, and a token answer's length.
VARYING = {"x-request-id", "vary", "content-length"}


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ``/oauth`` paths Litestar's router handled."""
    seen: list[str] = []
    handle = HTTPRoute.handle

    async def counting(self: HTTPRoute, scope: Any, receive: Any, send: Any) -> None:
        if scope["path"].startswith("/oauth/"):
            seen.append(scope["path"])
        await handle(self, scope, receive, send)

    monkeypatch.setattr(HTTPRoute, "handle", counting)
    return seen


def _open(tmp_path: Path) -> Any:
    settings = {"secret_key": "s" * 40, "cors_origins": (ORIGIN,)}
    return WorldConfig(settings=settings, clients=CLIENTS).open(tmp_path)


def _requests(world: World) -> dict[str, tuple[dict[str, str], bytes]]:
    """Good and bad token requests: (headers, body)."""
    good = world.basic("service")
    form = {"content-type": FORM}
    return {
        "granted": ({**form, "authorization": good}, b"grant_type=client_credentials"),
        "wrong secret": (
            {**form, "authorization": world.basic("service")[:-4] + "AAA="},
            b"grant_type=client_credentials",
        ),
        "no grant_type": ({**form, "authorization": good}, b"scope=read"),
        "unknown grant": ({**form, "authorization": good}, b"grant_type=magic"),
        "grant not allowed": ({**form, "authorization": good}, b"grant_type=password"),
        "repeated": ({**form, "authorization": good}, b"grant_type=a&grant_type=b"),
        "json body": (
            {"content-type": "application/json", "authorization": good},
            b'{"grant_type": "client_credentials"}',
        ),
        "too large": ({**form, "authorization": good}, b"grant_type=" + b"x" * 20_000),
        "no client": (form, b"grant_type=client_credentials"),
        "malformed basic": ({**form, "authorization": "Basic !!"}, b"grant_type=x"),
        "not utf-8": ({**form, "authorization": good}, b"grant_type=\xff"),
    }


async def _both_ways(
    world: World, headers: dict[str, str], body: bytes
) -> tuple[httpx.Response, httpx.Response]:
    """The same token request directly, then through the router (with an ``Origin``)."""
    direct = await world.http.post("/oauth/token", content=body, headers=headers)
    crossing = await world.http.post(
        "/oauth/token", content=body, headers={**headers, "origin": ORIGIN}
    )
    return direct, crossing


def _shape(answer: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    body = answer.json()
    if answer.status_code == 200:  # a new token each time: compare what it holds
        body = {key: (value if key != "access_token" else "…") for key, value in body.items()}
    headers = {
        name: value
        for name, value in answer.headers.items()
        if name not in VARYING and not name.startswith("access-control-")
    }
    return answer.status_code, body, headers


async def test_token_requests_skip_the_router_and_answer_as_it_would(
    tmp_path: Path, routed: list[str]
) -> None:
    async with _open(tmp_path) as world:
        for name, (headers, body) in _requests(world).items():
            direct = await world.http.post("/oauth/token", content=body, headers=headers)
            assert routed == [], name
            crossing = await world.http.post(
                "/oauth/token", content=body, headers={**headers, "origin": ORIGIN}
            )
            assert routed == ["/oauth/token"], name
            routed.clear()
            assert _shape(direct) == _shape(crossing), name
            assert crossing.headers["access-control-allow-origin"] == ORIGIN
            assert "access-control-allow-origin" not in direct.headers
            assert direct.headers["x-request-id"]


async def test_an_error_the_handler_lets_through_gets_the_apps_answer_on_both_ways(
    tmp_path: Path,
    routed: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*_: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(GRANTS["client_credentials"], "handle", broken)
    async with _open(tmp_path) as world:
        headers, body = _requests(world)["granted"]
        answers = await _both_ways(world, headers, body)
    assert routed == ["/oauth/token"]
    assert _shape(answers[0]) == _shape(answers[1])
    assert answers[0].status_code == 500
    assert answers[0].json() == {"status_code": 500, "detail": "Internal Server Error"}
    errors = [r for r in caplog.records if "unhandled error on POST /oauth/token" in r.message]
    assert len(errors) == 2
    assert all(r.exc_info and "a bug" in str(r.exc_info[1]) for r in errors)


async def test_an_answer_that_cannot_be_made_gets_the_apps_500_on_both_ways(
    tmp_path: Path, routed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unmakeable(*_: Any, **__: Any) -> Any:
        raise RuntimeError("the answer failed")

    monkeypatch.setattr(ReadyJson, "to_asgi_response", unmakeable)
    async with _open(tmp_path) as world:
        headers, body = _requests(world)["granted"]
        answers = await _both_ways(world, headers, body)
    assert routed == ["/oauth/token"]
    assert answers[0].status_code == 500
    assert answers[0].json() == {"status_code": 500, "detail": "Internal Server Error"}
    assert _shape(answers[0]) == _shape(answers[1])


async def test_an_outage_the_handler_lets_through_is_the_apps_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outage = OperationalError("SELECT 1", {}, Exception("database is locked"))

    async def locked(*_: Any) -> Any:
        raise outage

    monkeypatch.setattr(GRANTS["client_credentials"], "handle", locked)
    async with _open(tmp_path) as world:
        headers, body = _requests(world)["granted"]
        direct, crossing = await _both_ways(world, headers, body)
    assert direct.status_code == 503
    assert direct.headers["retry-after"] == "5"
    assert _shape(direct) == _shape(crossing)


async def test_the_access_log_names_the_route_of_a_direct_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="authority.access")
    async with _open(tmp_path) as world:
        headers, body = _requests(world)["granted"]
        await world.http.post(
            "/oauth/token", content=body, headers={**headers, "x-request-id": "direct-1"}
        )
    lines = [json.loads(r.message) for r in caplog.records if r.name == "authority.access"]
    line = next(each for each in lines if each["request_id"] == "direct-1")
    assert (line["method"], line["route"], line["status"]) == ("POST", "/oauth/token", 200)


async def test_other_methods_and_paths_take_the_router(tmp_path: Path, routed: list[str]) -> None:
    async with _open(tmp_path) as world:
        headers = _requests(world)["granted"][0]
        assert (await world.http.get("/oauth/token")).status_code == 405
        revoked = await world.http.post("/oauth/revoke", content=b"token=nothing", headers=headers)
        assert revoked.status_code == 200
        preflight = await world.http.options(
            "/oauth/token",
            headers={"origin": ORIGIN, "access-control-request-method": "POST"},
        )
        assert preflight.status_code == 204
    # The 405 and the preflight are answered before any route's handler.
    assert routed == ["/oauth/revoke"]


# --- routes that cannot be served directly ------------------------------------------


async def _guard(*_: Any) -> None:
    return None


class _Passing:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def _registered(handler: Any, **app: Any) -> tuple[Litestar, Any]:
    litestar = Litestar(route_handlers=[handler], openapi_config=None, **app)
    return litestar, litestar.route_handler_method_map["/t"]["POST"]


@post("/t", guards=[_guard])
async def _guarded(request: Request[Any, Any, Any]) -> None: ...


@post("/t")
async def _with_parameter(request: Request[Any, Any, Any], q: FromQuery[str]) -> None: ...


@post("/t", sync_to_thread=False)
def _synchronous(request: Request[Any, Any, Any]) -> None: ...


@post("/t", cache=True)
async def _cached(request: Request[Any, Any, Any]) -> None: ...


@post("/t", opt={"skip": True})
async def _plain(request: Request[Any, Any, Any]) -> None: ...


@pytest.mark.parametrize(
    ("handler", "app", "problem"),
    [
        (_guarded, {}, "guards"),
        (_with_parameter, {}, "parameters besides the request"),
        (_synchronous, {}, "a synchronous function"),
        (_cached, {}, "a response cache"),
        (_plain, {"before_request": _guard}, "a before-request hook"),
        (_plain, {"after_exception": [_guard]}, "after-exception hooks"),
        (_plain, {"middleware": [PrometheusConfig(app_name="t").middleware]}, "middleware"),
        (_plain, {"middleware": [DefineMiddleware(_Passing)]}, "middleware"),
    ],
)
async def test_a_route_the_router_would_change_is_refused(
    handler: Any, app: dict[str, Any], problem: str
) -> None:
    litestar, registered = _registered(handler, **app)
    with pytest.raises(ValueError, match=problem):
        DirectRoute(litestar.asgi_handler, litestar, registered)


async def test_a_route_whose_middleware_leaves_it_out_is_served() -> None:
    prometheus = PrometheusConfig(app_name="t", exclude_opt_key="skip").middleware
    litestar, registered = _registered(_plain, middleware=[prometheus])
    assert DirectRoute(litestar.asgi_handler, litestar, registered).path == "/t"


async def test_the_direct_route_is_one_method_and_one_path() -> None:
    two = post(["/t", "/u"])(_plain.fn)
    litestar = Litestar(route_handlers=[two], openapi_config=None)
    registered = litestar.route_handler_method_map["/t"]["POST"]
    with pytest.raises(ValueError, match="one method and one path"):
        DirectRoute(litestar.asgi_handler, litestar, registered)


class _Mine(Exception):
    pass


class _Nearer(_Mine):
    pass


HANDLER_MAPS: list[dict[Any, Any]] = [
    {},
    {Exception: "any"},
    {_Mine: "mine", Exception: "any"},
    {500: "500", _Mine: "mine"},
    {404: "404", HTTPException: "http", Exception: "any"},
    {HTTPException: "http"},
    {500: "500"},
    {DBAPIError: "db", Exception: "any"},
]
RAISED = [
    _Mine(),
    _Nearer(),
    ValueError(),
    NotFoundException(),
    ValidationException(),
    HTTPException(status_code=500),
    OperationalError("SELECT 1", {}, Exception()),
]


@pytest.mark.parametrize("handlers", HANDLER_MAPS)
async def test_an_error_finds_the_handler_litestar_would_pick(handlers: dict[Any, Any]) -> None:
    # The reference: Litestar's exception middleware's own choice.
    from litestar.middleware._internal.exceptions.middleware import get_exception_handler

    for exc in RAISED:
        assert _exception_handler(handlers, exc) == get_exception_handler(handlers, exc), exc
