"""The status list endpoint (draft-ietf-oauth-status-list, section 8): the signed list
token of ``authority.status.publisher``, served from memory with a strong ``ETag``,
``304`` on a match and ``Cache-Control: max-age`` of the list's ttl."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.response.base import ASGIResponse

from authority.status.publisher import MEDIA_TYPE, STATUS_PATH, Published, StatusPublisher
from authority.web.http import SKIP_METRICS, UNAVAILABLE, etag_matches

STATUS_RESPONSES = {
    200: ResponseSpec(
        str,
        description="the status list token (JWS compact)",
        media_type=MEDIA_TYPE,
        generate_examples=False,
    ),
    304: ResponseSpec(None, description="If-None-Match matches the ETag: not modified"),
    **UNAVAILABLE,
}


def status_handlers(publisher: StatusPublisher) -> list[HTTPRouteHandler]:
    cache_control = f"public, max-age={publisher.ttl}"
    answers: dict[str, Any] = {}

    def encoded(token: Published) -> dict[str, Any]:
        if answers.get("token") is not token:
            headers = {"Cache-Control": cache_control, "ETag": token.etag}
            answers.update(
                token=token,
                ok=ASGIResponse(body=token.body, headers=headers, media_type=MEDIA_TYPE),
                not_modified=ASGIResponse(status_code=304, headers=headers),
            )
        return answers

    @get(
        STATUS_PATH,
        sync_to_thread=False,
        tags=["discovery"],
        summary="Token status list (draft-ietf-oauth-status-list): revoked access tokens",
        media_type=MEDIA_TYPE,
        responses=STATUS_RESPONSES,
        opt={SKIP_METRICS: True},
    )
    def status_list(request: Request[Any, Any, Any]) -> ASGIResponse:
        token = publisher.published()
        found = encoded(token)
        for name, value in request.scope["headers"]:
            if name == b"if-none-match" and etag_matches(value.decode("latin-1"), token.etag):
                return found["not_modified"]  # type: ignore[no-any-return]
        return found["ok"]  # type: ignore[no-any-return]

    return [status_list]
