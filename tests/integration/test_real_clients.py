"""Standard OAuth and JOSE libraries against a real ``authority serve`` process
(README, "HTTP API" and "Tokens"): Authlib's httpx client obtains, refreshes, introspects and
revokes tokens; PyJWT, joserfc and (in Node.js) panva's jose verify the access tokens with
the served JWKS.

The server runs with a reuse grace of 0, so that a rotated refresh token is refused
at once.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client import OAuthError
from joserfc import jwt as jose_jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet

from tests.helpers.deployment import PASSWORD, USERNAME, Client, Deployment, database, provision
from tests.helpers.node import run_node_json
from tests.helpers.processes import Server

with warnings.catch_warnings():
    # Authlib 1.9 prefers the httpx2 package and warns when it falls back to httpx,
    # which is what this project installs.
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import OAuth2Client

AUDIENCE = "default"
ACCESS_TTL = 900
SCOPES = "read write"
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"]


@dataclass
class Authority:
    deployment: Deployment
    server: Server
    client: Client

    @property
    def issuer(self) -> str:
        return self.server.url  # the default issuer, http://HOST:PORT

    def url(self, path: str) -> str:
        return f"{self.server.url}{path}"

    def oauth_client(self, method: str = "client_secret_basic", **kwargs: Any) -> OAuth2Client:
        return OAuth2Client(
            client_id=self.client.client_id,
            client_secret=self.client.client_secret,
            token_endpoint_auth_method=method,
            timeout=10,
            **kwargs,
        )

    def client_token(self) -> str:
        with self.oauth_client() as client:
            token: str = client.fetch_token(
                self.url("/oauth/token"), grant_type="client_credentials"
            )["access_token"]
        return token

    def login(self, client: OAuth2Client) -> dict[str, Any]:
        return dict(
            client.fetch_token(
                self.url("/oauth/token"),
                grant_type="password",
                username=USERNAME,
                password=PASSWORD,
            )
        )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def authority(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Authority]:
    workdir = tmp_path_factory.mktemp(f"clients-{request.param}")
    with database(request.param, workdir) as url:
        deployment = provision(
            workdir, url, AUTHORITY_REFRESH_REUSE_GRACE="0", AUTHORITY_ACCESS_TTL=str(ACCESS_TTL)
        )
        client = deployment.create_client(
            "backend",
            "--grant",
            "client_credentials",
            "--grant",
            "password",
            "--grant",
            "refresh_token",
            "--scope",
            "read",
            "--scope",
            "write",
        )
        try:
            (server,) = deployment.start()
            yield Authority(deployment, server, client)
        finally:
            deployment.stop()


def assert_rfc9068(
    claims: dict[str, Any], authority: Authority, *, sub: str, username: str | None
) -> None:
    """RFC 9068 section 2.2: the claims of a JWT access token."""
    assert claims["iss"] == authority.issuer
    assert claims["sub"] == sub
    assert claims["aud"] == AUDIENCE
    assert claims["client_id"] == authority.client.client_id
    assert claims["scope"] == SCOPES
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) >= 16
    assert isinstance(claims["iat"], int)
    assert abs(claims["iat"] - time.time()) < 60
    assert claims["exp"] - claims["iat"] == ACCESS_TTL
    if username is None:
        assert "username" not in claims
    else:
        assert claims["username"] == username


def tampered(token: str) -> str:
    """The token with one payload claim changed and the signature kept."""
    header, payload, signature = token.split(".")
    claims = jwt.utils.base64url_decode(payload)
    forged = jwt.utils.base64url_encode(claims.replace(b'"read write"', b'"admin"')).decode()
    assert forged != payload
    return f"{header}.{forged}.{signature}"


def introspect(client: OAuth2Client, authority: Authority, token: str) -> dict[str, Any]:
    response = client.introspect_token(authority.url("/oauth/introspect"), token=token)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_fetches_a_client_credentials_token_with_each_client_secret_method(
    authority: Authority, method: str
) -> None:
    with authority.oauth_client(method) as client:
        token = client.fetch_token(authority.url("/oauth/token"), grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == ACCESS_TTL
    assert token["scope"] == SCOPES
    assert "refresh_token" not in token
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["sub"] == authority.client.client_id


def test_authlib_refreshes_a_user_token_and_the_old_refresh_token_is_refused_afterwards(
    authority: Authority,
) -> None:
    with authority.oauth_client() as client:
        first = authority.login(client)
        second = dict(client.refresh_token(authority.url("/oauth/token")))
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        assert second["scope"] == SCOPES
        with pytest.raises(OAuthError) as refused:
            client.refresh_token(
                authority.url("/oauth/token"), refresh_token=first["refresh_token"]
            )
    assert refused.value.error == "invalid_grant"


def test_pyjwt_verifies_client_and_user_access_tokens_with_the_served_jwks(
    authority: Authority,
) -> None:
    with authority.oauth_client() as client:
        user_token = authority.login(client)["access_token"]
    keys = jwt.PyJWKClient(authority.url("/.well-known/jwks.json"))
    for token, sub, username in (
        (authority.client_token(), authority.client.client_id, None),
        (user_token, str(authority.deployment.user_id), USERNAME),
    ):
        header = jwt.get_unverified_header(token)
        assert (header["alg"], header["typ"]) == ("RS256", "at+jwt")
        signing_key = keys.get_signing_key_from_jwt(token)
        assert signing_key.key_id == header["kid"]
        claims = jwt.decode(
            token,
            signing_key.key,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=authority.issuer,
            options={"require": REQUIRED_CLAIMS},
        )
        assert_rfc9068(claims, authority, sub=sub, username=username)
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(
                tampered(token),
                signing_key.key,
                algorithms=["RS256"],
                audience=AUDIENCE,
                issuer=authority.issuer,
            )


def test_joserfc_verifies_client_and_user_access_tokens_with_the_served_key_set(
    authority: Authority,
) -> None:
    with authority.oauth_client() as client:
        user_token = authority.login(client)["access_token"]
    key_set = KeySet.import_key_set(httpx.get(authority.url("/.well-known/jwks.json")).json())
    for token, sub, username in (
        (authority.client_token(), authority.client.client_id, None),
        (user_token, str(authority.deployment.user_id), USERNAME),
    ):
        decoded = jose_jwt.decode(token, key_set, algorithms=["RS256"])
        assert (decoded.header["alg"], decoded.header["typ"]) == ("RS256", "at+jwt")
        assert decoded.header["kid"] in {key.kid for key in key_set}
        expected: dict[str, Any] = {
            "iss": {"essential": True, "value": authority.issuer},
            "aud": {"essential": True, "value": AUDIENCE},
            "sub": {"essential": True, "value": sub},
            "client_id": {"essential": True, "value": authority.client.client_id},
            "scope": {"essential": True, "value": SCOPES},
            **{name: {"essential": True} for name in ("exp", "iat", "jti")},
        }
        if username is not None:
            expected["username"] = {"essential": True, "value": username}
        jose_jwt.JWTClaimsRegistry(leeway=30, **expected).validate(decoded.claims)
        assert_rfc9068(decoded.claims, authority, sub=sub, username=username)
        with pytest.raises(BadSignatureError):
            jose_jwt.decode(tampered(token), key_set, algorithms=["RS256"])


def test_introspection_says_active_for_a_fresh_access_token_and_exactly_inactive_once_it_is_revoked(
    authority: Authority,
) -> None:
    revoked, kept = authority.client_token(), authority.client_token()
    with authority.oauth_client() as client:
        active = introspect(client, authority, revoked)
        assert active["active"] is True
        assert active["client_id"] == authority.client.client_id
        assert active["sub"] == authority.client.client_id
        assert active["jti"] == jwt.decode(revoked, options={"verify_signature": False})["jti"]

        response = client.revoke_token(
            authority.url("/oauth/revoke"), token=revoked, token_type_hint="access_token"
        )
        assert response.status_code == 200, response.text
        assert introspect(client, authority, revoked) == {"active": False}
        assert introspect(client, authority, kept)["active"] is True


def test_revoking_a_refresh_token_revokes_its_family_whose_access_tokens_then_introspect_inactive(
    authority: Authority,
) -> None:
    with authority.oauth_client() as client, authority.oauth_client() as bystander:
        first = authority.login(client)
        second = dict(client.refresh_token(authority.url("/oauth/token")))
        other = authority.login(bystander)  # another session of the same user
        for token in (first["access_token"], second["access_token"], other["access_token"]):
            assert introspect(client, authority, token)["active"] is True
        assert introspect(client, authority, second["refresh_token"])["active"] is True

        response = client.revoke_token(
            authority.url("/oauth/revoke"),
            token=second["refresh_token"],
            token_type_hint="refresh_token",
        )
        assert response.status_code == 200, response.text
        for token in (first["access_token"], second["access_token"], second["refresh_token"]):
            assert introspect(client, authority, token) == {"active": False}
        with pytest.raises(OAuthError) as refused:
            client.refresh_token(
                authority.url("/oauth/token"), refresh_token=second["refresh_token"]
            )
        assert refused.value.error == "invalid_grant"

        assert introspect(client, authority, other["access_token"])["active"] is True
        assert introspect(client, authority, other["refresh_token"])["active"] is True


def test_panva_jose_in_node_verifies_access_tokens_with_the_served_jwks(
    authority: Authority,
) -> None:
    with authority.oauth_client() as client:
        user_token = authority.login(client)["access_token"]
    client_token = authority.client_token()
    results = run_node_json(
        "jose_verify.mjs",
        authority.issuer,
        AUDIENCE,
        client_token,
        user_token,
        tampered(user_token),
    )
    accepted, user, forged = results
    assert accepted["ok"], accepted
    assert accepted["alg"] == "RS256"
    assert_rfc9068(accepted["claims"], authority, sub=authority.client.client_id, username=None)
    assert user["ok"], user
    assert_rfc9068(
        user["claims"], authority, sub=str(authority.deployment.user_id), username=USERNAME
    )
    assert forged == {"ok": False, "code": "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"}


# --- ES256 and EdDSA keys (README, "Signing algorithms") ------------------------------


@pytest.fixture(scope="module", params=["ES256", "EdDSA"])
def curve_authority(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Authority]:
    """A server whose keys are of KEY_ALGORITHM ES256 or EdDSA from the first one on."""
    workdir = tmp_path_factory.mktemp(f"clients-{request.param}")
    with database("sqlite", workdir) as url:
        deployment = provision(
            workdir,
            url,
            AUTHORITY_KEY_ALGORITHM=request.param,
            AUTHORITY_ACCESS_TTL=str(ACCESS_TTL),
        )
        client = deployment.create_client(
            "backend", "--grant", "client_credentials", "--scope", "read", "--scope", "write"
        )
        try:
            (server,) = deployment.start()
            yield Authority(deployment, server, client)
        finally:
            deployment.stop()


def test_panva_jose_and_pyjwt_verify_es256_and_eddsa_access_tokens_with_the_served_jwks(
    curve_authority: Authority,
) -> None:
    authority = curve_authority
    alg = str(authority.deployment.env["AUTHORITY_KEY_ALGORITHM"])
    token = authority.client_token()
    assert jwt.get_unverified_header(token)["alg"] == alg

    jwks = httpx.get(authority.url("/.well-known/jwks.json")).json()
    (published,) = jwks["keys"]
    assert published["alg"] == alg
    assert published["kty"] == {"ES256": "EC", "EdDSA": "OKP"}[alg]
    assert published["crv"] == {"ES256": "P-256", "EdDSA": "Ed25519"}[alg]

    key = jwt.PyJWKClient(authority.url("/.well-known/jwks.json")).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=[alg], audience=AUDIENCE)
    assert_rfc9068(claims, authority, sub=authority.client.client_id, username=None)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(tampered(token), key.key, algorithms=[alg], audience=AUDIENCE)

    accepted, forged = run_node_json(
        "jose_verify.mjs", authority.issuer, AUDIENCE, token, tampered(token)
    )
    assert accepted["ok"], accepted
    assert accepted["alg"] == alg
    assert_rfc9068(accepted["claims"], authority, sub=authority.client.client_id, username=None)
    assert forged == {"ok": False, "code": "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"}
