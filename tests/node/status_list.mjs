// @sd-jwt/jwt-status-list reads the authority's token status list
// (draft-ietf-oauth-status-list): each access token's `status` claim names its index
// and list; the list is fetched, its signature verified with panva's jose against the
// published JWKS, and decoded by the package.
// Usage: node status_list.mjs ISSUER TOKEN...
// Prints one JSON object: {tokens: [{idx, uri, status}], set: [every index whose
// status is not 0], size, bits, ttl}.
import { createRemoteJWKSet, jwtVerify } from "jose";
import { getListFromStatusListJWT, getStatusListFromJWT } from "@sd-jwt/jwt-status-list";

const [issuer, ...tokens] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`));
const lists = new Map();

async function list(uri) {
  if (!lists.has(uri)) {
    const response = await fetch(uri, { headers: { accept: "application/statuslist+jwt" } });
    if (!response.ok) throw new Error(`${uri}: ${response.status}`);
    const jwt = await response.text();
    const { payload } = await jwtVerify(jwt, jwks, { typ: "statuslist+jwt", subject: uri });
    lists.set(uri, { list: getListFromStatusListJWT(jwt), ttl: payload.ttl });
  }
  return lists.get(uri);
}

const results = [];
for (const token of tokens) {
  const { idx, uri } = getStatusListFromJWT(token);
  results.push({ idx, uri, status: (await list(uri)).list.getStatus(idx) });
}
const { list: statuses, ttl } = await list(`${issuer}/status/1`);
const size = statuses.statusList.length;
const set = [];
for (let i = 0; i < size; i++) {
  if (statuses.getStatus(i) !== 0) set.push(i);
}
console.log(JSON.stringify({ tokens: results, set, size, bits: statuses.getBitsPerStatus(), ttl }));
