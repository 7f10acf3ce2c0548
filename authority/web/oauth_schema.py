"""How the OpenAPI document describes ``/oauth/*``: form bodies (RFC 6749 appendix B)
and the RFC 6749, 7009 and 7662 answers. The handlers read the form themselves
(``oauth_forms.read_form``): these only describe it."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from authority.web.http import UNAVAILABLE, error_spec

FORM = "application/x-www-form-urlencoded"
TEXT = Schema(type=OpenAPIType.STRING)
_CLIENT_AUTH = {"client_id": TEXT, "client_secret": TEXT}


class RevokedOut(msgspec.Struct):
    """RFC 7009 section 2.2: an empty object, also for unknown tokens."""


class IntrospectionOut(msgspec.Struct, omit_defaults=True):
    """RFC 7662 section 2.2: ``{"active": false}`` alone, or the token's details (an
    access token's answer carries all its claims, custom ones included)."""

    active: bool
    token_type: str | None = None
    scope: str | None = None
    client_id: str | None = None
    username: str | None = None
    sub: str | None = None
    aud: str | list[str] | None = None
    iss: str | None = None
    exp: int | None = None
    iat: int | None = None
    jti: str | None = None
    sid: str | None = None


def form_operation(required: list[str], **fields: Schema) -> type[Operation]:
    """An ``Operation`` whose request body is the endpoint's form (RFC 6749 appendix B);
    parameters not listed are ignored, as RFC 6749 section 3.2 requires."""
    body = RequestBody(
        content={
            FORM: OpenAPIMediaType(
                schema=Schema(
                    type=OpenAPIType.OBJECT,
                    properties={**fields, **_CLIENT_AUTH},
                    required=required,
                )
            )
        },
        required=True,
    )

    @dataclass
    class FormOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = body

    return FormOperation


def oauth_responses(ok: type[msgspec.Struct], **extra: str) -> dict[int, ResponseSpec]:
    errors = {
        400: "invalid_request (malformed or repeated parameter, wrong content type) "
        "or another RFC 6749 section 5.2 error, or invalid_target (RFC 8707)",
        401: "invalid_client, with WWW-Authenticate",
        413: "invalid_request: the body is over 16 KiB",
        **{int(code): text for code, text in extra.items()},
    }
    specs = {200: ResponseSpec(ok, description="success", generate_examples=False)}
    for status, text in errors.items():
        specs.update(error_spec(status, text))
    return {**specs, **UNAVAILABLE}
