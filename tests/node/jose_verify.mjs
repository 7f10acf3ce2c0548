// panva's jose verifies access tokens against the authority's published JWKS.
// Usage: node jose_verify.mjs ISSUER AUDIENCE TOKEN...
// Prints one JSON array: per token {ok, alg, claims} or {ok: false, code}.
import { createRemoteJWKSet, jwtVerify } from "jose";

const [issuer, audience, ...tokens] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`));
const results = [];
for (const token of tokens) {
  try {
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer,
      audience,
      typ: "at+jwt",
    });
    results.push({ ok: true, alg: protectedHeader.alg, claims: payload });
  } catch (error) {
    results.push({ ok: false, code: error.code ?? String(error) });
  }
}
console.log(JSON.stringify(results));
