// panva's openid-client obtains DPoP-bound tokens with its own DPoP support (RFC 9449)
// and calls a resource server with them.
// Usage: node openid_client_dpop.mjs ISSUER CLIENT_ID CLIENT_SECRET PUBLIC_CLIENT_ID
//          USERNAME PASSWORD RESOURCE_URL
// Prints one JSON object of what each step gave.
import * as client from "openid-client";

const [issuer, clientId, clientSecret, publicId, username, password, resource] =
  process.argv.slice(2);
const options = { execute: [client.allowInsecureRequests], algorithm: "oauth2" };
const error = (e) => e.error ?? e.code ?? String(e);

const service = await client.discovery(
  new URL(issuer), clientId, undefined, client.ClientSecretBasic(clientSecret), options,
);
const serviceKey = client.getDPoPHandle(service, await client.randomDPoPKeyPair("ES256"));
const granted = await client.clientCredentialsGrant(service, {}, { DPoP: serviceKey });
const withProof = await client.fetchProtectedResource(
  service, granted.access_token, new URL(resource), "GET", undefined, undefined,
  { DPoP: serviceKey },
);
const asBearer = await fetch(resource, {
  headers: { authorization: `Bearer ${granted.access_token}` },
});
const withoutProof = await fetch(resource, {
  headers: { authorization: `DPoP ${granted.access_token}` },
});

const app = await client.discovery(new URL(issuer), publicId, undefined, client.None(), options);
const appKey = client.getDPoPHandle(app, await client.randomDPoPKeyPair("ES256"));
const login = await client.genericGrantRequest(
  app, "password", { username, password }, { DPoP: appKey },
);
const refreshed = await client.refreshTokenGrant(app, login.refresh_token, {}, { DPoP: appKey });
let refreshWithoutProof = "accepted";
try {
  await client.refreshTokenGrant(app, refreshed.refresh_token);
} catch (e) {
  refreshWithoutProof = error(e);
}
const otherKey = client.getDPoPHandle(app, await client.randomDPoPKeyPair("ES256"));
let refreshByOtherKey = "accepted";
try {
  await client.refreshTokenGrant(app, refreshed.refresh_token, {}, { DPoP: otherKey });
} catch (e) {
  refreshByOtherKey = error(e);
}

console.log(JSON.stringify({
  clientCredentials: { tokenType: granted.token_type, accessToken: granted.access_token },
  withProof: { status: withProof.status, body: await withProof.json() },
  asBearer: { status: asBearer.status, challenge: asBearer.headers.get("www-authenticate") },
  withoutProof: { status: withoutProof.status, challenge: withoutProof.headers.get("www-authenticate") },
  login: { tokenType: login.token_type },
  refreshed: { tokenType: refreshed.token_type, accessToken: refreshed.access_token },
  refreshWithoutProof,
  refreshByOtherKey,
}));
