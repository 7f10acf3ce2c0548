"""Prometheus metrics of the authority (request latency comes from Litestar's middleware)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TOKENS_ISSUED = Counter("authority_tokens_issued", "Access tokens issued", ["grant"])
REFRESH_REUSE = Counter(
    "authority_refresh_reuse_detected", "Consumed refresh tokens presented again (families revoked)"
)
LOGIN_FAILURES = Counter("authority_login_failures", "Failed logins")
LOGIN_THROTTLED = Counter(
    "authority_login_throttled", "Logins refused with 429 for too many failures"
)
KEY_AGE = Gauge(
    "authority_signing_key_age_seconds",
    "Seconds since the current signing key started signing",
    multiprocess_mode="max",
)
KEYSTORE_OK = Gauge(
    "authority_keystore_healthy",
    "1 when the last key store load succeeded",
    multiprocess_mode="min",
)
JWKS_REQUESTS = Counter("authority_jwks_requests", "JWKS responses by status", ["status"])
TOKEN_SECONDS = Histogram(
    "authority_token_request_duration_seconds",
    "Time to answer POST /oauth/token, by status",
    ["status"],
)
STATUS_LIST_BYTES = Gauge(
    "authority_status_list_bytes",
    "Size of the signed status list token served at the status list URI",
    multiprocess_mode="max",
)
STATUS_LIST_REVOKED = Gauge(
    "authority_status_list_bits_set",
    "Indexes set (revoked) in the status list",
    multiprocess_mode="max",
)
STATUS_LIST_REBUILDS = Counter(
    "authority_status_list_rebuilds", "Times the status list was rebuilt from the database"
)
