"""How the OpenAPI document describes DPoP (RFC 9449): the ``DPoP`` request header of
the operations that read it, and their answers to a refused proof. The proofs are
checked by ``authority.grants.dpop`` (``/oauth/token``; ``/auth`` login, sign-up,
refresh and logout) and ``authority.web.auth_dpop`` (a bound access token at ``/auth``):
this only describes them.

OpenAPI has one answer per status code, and the 400 of these operations already
describes their malformed requests: a refused proof is added to that answer, with the
``DPoP-Nonce`` header that ``use_dpop_nonce`` carries (section 8)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from litestar.enums import ParamType
from litestar.openapi.spec import (
    OpenAPIHeader,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Schema,
)

DPOP_NONCE = "DPoP-Nonce"
_STRING = Schema(type=OpenAPIType.STRING)

ISSUING_PROOF = (
    "A DPoP proof (RFC 9449 section 4): a JWT (compact JWS) for this request, signed by "
    "the client's key. The access token issued is bound to that key (cnf.jkt, token_type "
    "DPoP), and so is the refresh token of a public client or of an /auth session, which "
    "then refreshes only with a proof by it."
)
PRESENTING_PROOF = (
    "With Authorization: DPoP, the proof of possession (RFC 9449 section 7) of the key "
    "the access token is bound to: a DPoP proof for this request carrying the token's "
    "hash (ath)."
)
LOGOUT_PROOF = (
    "A DPoP proof (RFC 9449): with the refresh token in the body, by the key its "
    "session is bound to; with Authorization: DPoP, by the access token's key (ath)."
)
PROOF_REFUSED = (
    "; or invalid_dpop_proof (RFC 9449): the DPoP proof is malformed, stale, replayed or "
    "not by the key the presented token is bound to; or use_dpop_nonce, with the "
    "DPoP-Nonce header (when AUTHORITY_DPOP_NONCE is on): the proof must carry that nonce"
)
NONCE_HEADER = OpenAPIHeader(
    schema=_STRING,
    required=False,
    description="With use_dpop_nonce: the nonce the next DPoP proof must carry "
    "(RFC 9449 section 8)",
)


def proof_parameter(description: str) -> Parameter:
    """The optional ``DPoP`` request header."""
    return Parameter(
        name="DPoP",
        param_in=ParamType.HEADER,
        schema=_STRING,
        required=False,
        description=description,
    )


def dpop_operation(
    base: type[Operation] = Operation, description: str = ISSUING_PROOF, *, refuses: bool = True
) -> type[Operation]:
    """``base`` (its ``__post_init__`` first) with the ``DPoP`` header and, when the
    operation ``refuses`` a bad proof with a 400, that answer's DPoP refusals."""
    parameter = proof_parameter(description)
    before: Callable[[Any], None] | None = getattr(base, "__post_init__", None)

    @dataclasses.dataclass
    class DpopOperation(base):  # type: ignore[valid-type,misc]
        def __post_init__(self) -> None:
            if before is not None:
                before(self)
            _describe(self, parameter, refuses=refuses)

    return DpopOperation


def _describe(operation: Operation, parameter: Parameter, *, refuses: bool) -> None:
    operation.parameters = [*(operation.parameters or []), parameter]
    if not refuses:
        return
    responses = operation.responses or {}
    refused = responses.get("400")
    if not isinstance(refused, OpenAPIResponse):
        raise TypeError(f"{operation.operation_id}: no 400 answer to add DPoP refusals to")
    responses["400"] = dataclasses.replace(
        refused,
        description=refused.description + PROOF_REFUSED,
        headers={**(refused.headers or {}), DPOP_NONCE: NONCE_HEADER},
    )
    operation.responses = responses
