"""The offline verifier: checks the authority's access tokens without a call per token.

Importing it loads only the standard library and ``cryptography``. Framework glue is in
``authority.verifier.asgi`` and ``authority.verifier.litestar``.
"""

from authority.verifier.cache import CachePolicy, Fetch, HttpResponse, httpx_fetch, urllib_fetch
from authority.verifier.jose import (
    MAX_TOKEN_BYTES,
    InvalidToken,
    IssuerMismatch,
    KeysUnavailable,
    Reason,
)
from authority.verifier.status import StatusUnavailable
from authority.verifier.verify import REQUIRED_CLAIMS, Verifier

__all__ = [
    "MAX_TOKEN_BYTES",
    "REQUIRED_CLAIMS",
    "CachePolicy",
    "Fetch",
    "HttpResponse",
    "InvalidToken",
    "IssuerMismatch",
    "KeysUnavailable",
    "Reason",
    "StatusUnavailable",
    "Verifier",
    "httpx_fetch",
    "urllib_fetch",
]
