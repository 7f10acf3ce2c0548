"""Every answer carries an X-Request-ID (the client's when sane) and each request is one
access-log line that names the route's template, never a query string (SPEC section 3);
audit events and sessions see the request's id and address through ``current_request``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar import Litestar, get
from litestar.params import FromPath
from litestar.testing import TestClient

from authority.storage.audit import current_request
from authority.web.requests import RequestLog
from tests.helpers.log_lines import Lines, caught


@get("/items/{item_id:int}", sync_to_thread=False)
def item(item_id: FromPath[int]) -> dict[str, object]:
    info = current_request()
    assert info is not None
    return {"item": item_id, "request_id": info.request_id, "agent": info.user_agent}


def make_app() -> Litestar:
    app = Litestar([item])
    app.asgi_handler = RequestLog(app.asgi_handler)
    return app


@pytest.fixture
def access() -> Iterator[Lines]:
    with caught("authority.access") as lines:
        yield lines


def test_a_sane_client_id_is_kept_and_seen_by_the_handler(access: Lines) -> None:
    with TestClient(make_app()) as client:
        answer = client.get(
            "/items/7?code=SECRET", headers={"X-Request-ID": "abc-123", "User-Agent": "ua/1"}
        )
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == "abc-123"
    assert answer.json() == {"item": 7, "request_id": "abc-123", "agent": "ua/1"}
    [line] = access.lines
    assert line["method"] == "GET"
    assert line["status"] == 200
    assert line["route"] == "/items/{item_id}"
    assert line["request_id"] == "abc-123"
    assert "SECRET" not in access.text


@pytest.mark.parametrize("sent", ["", "x" * 65, "a b", "<script>", "a;b"])
def test_an_insane_client_id_is_replaced(sent: str) -> None:
    with TestClient(make_app()) as client:
        answer = client.get("/items/1", headers={"X-Request-ID": sent})
    got = answer.headers["x-request-id"]
    assert got != sent
    assert len(got) == 16
    assert answer.headers.get_list("x-request-id") == [got]


def test_unrouted_answers_get_an_id_and_a_line(access: Lines) -> None:
    with TestClient(make_app()) as client:
        answer = client.get("/nowhere")
        other = client.get("/nowhere")
    assert answer.status_code == 404
    assert answer.headers["x-request-id"] != other.headers["x-request-id"]
    lines = access.lines
    assert [line["status"] for line in lines] == [404, 404]
    assert lines[0]["route"] == "/nowhere"
