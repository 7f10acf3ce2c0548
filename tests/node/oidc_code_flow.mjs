// panva's openid-client drives the authorization code flow with PKCE against a real
// authority: discovery, the authorization URL, the code exchange with ID token
// validation, userinfo, refresh, and the RP-initiated logout URL. The browser's part
// (a cookie login on /auth/login with its CSRF token, then following
// /oauth/authorize) is played with fetch, as a first-party app's browser would.
// Usage: node oidc_code_flow.mjs ISSUER CLIENT_ID REDIRECT_URI POST_LOGOUT_URI USERNAME PASSWORD
// Prints one JSON document of what each step saw.
import * as client from "openid-client";

const [issuer, clientId, redirectUri, postLogoutUri, username, password] = process.argv.slice(2);
const jar = new Map();

function remember(response) {
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(";");
    const [name, ...value] = pair.split("=");
    jar.set(name.trim(), value.join("="));
  }
}

const cookies = () => [...jar].map(([k, v]) => `${k}=${v}`).join("; ");

async function browse(url, init = {}) {
  const response = await fetch(url, {
    ...init,
    redirect: "manual",
    headers: { ...(init.headers ?? {}), cookie: cookies() },
  });
  remember(response);
  return response;
}

const config = await client.discovery(new URL(issuer), clientId, undefined, client.None(), {
  execute: [client.allowInsecureRequests],
});

const csrf = (await (await browse(`${issuer}/auth/csrf`)).json()).csrf_token;
const login = await browse(`${issuer}/auth/login`, {
  method: "POST",
  headers: { "content-type": "application/json", "x-csrftoken": csrf },
  body: JSON.stringify({ username, password }),
});
if (login.status !== 200) throw new Error(`login: ${login.status}`);

const codeVerifier = client.randomPKCECodeVerifier();
const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
const state = client.randomState();
const nonce = client.randomNonce();
const authorizationUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: "openid profile email",
  code_challenge: codeChallenge,
  code_challenge_method: "S256",
  state,
  nonce,
});
const authorized = await browse(authorizationUrl.href);
const callback = new URL(authorized.headers.get("location"));

const tokens = await client.authorizationCodeGrant(config, callback, {
  pkceCodeVerifier: codeVerifier,
  expectedState: state,
  expectedNonce: nonce,
  idTokenExpected: true,
});
const claims = tokens.claims();
const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);

const logoutUrl = client.buildEndSessionUrl(config, {
  id_token_hint: tokens.id_token,
  post_logout_redirect_uri: postLogoutUri,
  state: "bye",
});
const loggedOut = await browse(logoutUrl.href);
let refreshAfterLogout;
try {
  await client.refreshTokenGrant(config, refreshed.refresh_token);
  refreshAfterLogout = "accepted";
} catch (error) {
  refreshAfterLogout = error.error ?? String(error);
}

console.log(
  JSON.stringify({
    metadata: config.serverMetadata(),
    callback_iss: callback.searchParams.get("iss"),
    claims,
    userinfo,
    scope: tokens.scope,
    refreshed: { access: Boolean(refreshed.access_token), rotated: refreshed.refresh_token !== tokens.refresh_token },
    logout: { status: loggedOut.status, location: loggedOut.headers.get("location") },
    refresh_after_logout: refreshAfterLogout,
  }),
);
