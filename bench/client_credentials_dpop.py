"""``client_credentials`` with a fresh DPoP proof (RFC 9449) on every request against
the same requests without one, on the same ``authority serve`` in one run: what binding
the tokens to a key costs (the proof's checks, its signature, and remembering its
``jti`` across replicas in the ``dpop_proofs`` table).

The server signs with its default RS256 key, which is judged, and then with an ES256
key, the cheapest signature, so that the proof's cost shows most (in the notes). Each
proof is an ES256 JWS made by the load generator before the wrk run it is
used in (one P-256 client key, a new ``jti`` and ``iat`` each), read by the wrk Lua
script from a file, one per request: a proof is used once, as the server demands. Both
sides are driven by the same kind of script (a ``request`` function), so the load
generator does the same per-request work apart from the header. Runs alternate, the
order reversed every other round, and each side keeps its best run
(``harness.best_of``).

Target: requests/s of DPoP-bound issuance >= 0.7 x plain issuance.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from bench.client_credentials import BODY, PATH, claims_alg, post
from bench.harness import (
    BenchError,
    CpuMeter,
    Server,
    best_of,
    free_port,
    verdict,
    workdir,
    wrk,
)
from bench.oauth_setup import basic_auth, deployment

TITLE = "Token endpoint: client_credentials with a DPoP proof (ES256) per request vs without"
TARGET = 0.7
DEFAULT_ALG = "RS256"  # AUTHORITY_KEY_ALGORITHM's default
SPARE = 1.5  # proofs made per wrk run: this many times what the plain run's rate would use
FORM = "application/x-www-form-urlencoded"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class ProofMaker:
    """DPoP proofs by one P-256 key, as a client holding that key makes them."""

    def __init__(self, htu: str):
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")),
        }
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}
        self.header = _b64(json.dumps(header, separators=(",", ":")).encode())
        self.htu = htu
        self.ecdsa = ec.ECDSA(hashes.SHA256())

    def proof(self) -> str:
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": "POST",
            "htu": self.htu,
            "iat": int(time.time()),
        }
        signing_input = f"{self.header}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), self.ecdsa))
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def write(self, path: Path, count: int) -> Path:
        path.write_text("".join(self.proof() + "\n" for _ in range(count)))
        return path


def _lua(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII is a valid Lua string


def lua_script(path: Path, authorization: str, proofs: Path | None) -> Path:
    """A wrk script whose ``request`` POSTs the form, with the next line of ``proofs``
    as its ``DPoP`` header when given (a missing proof repeats the last one: the server
    refuses the replay and wrk counts the error)."""
    headers = f'["Content-Type"] = {_lua(FORM)}, ["Authorization"] = {_lua(authorization)}'
    lines = [f"local body = {_lua(BODY)}", "local proofs, i = {}, 0"]
    if proofs is not None:
        lines.append(f"for line in io.lines({_lua(str(proofs))}) do proofs[#proofs + 1] = line end")
    lines += [
        "request = function()",
        f"  local headers = {{{headers}}}",
    ]
    if proofs is not None:
        lines += [
            "  i = i + 1",
            '  headers["DPoP"] = proofs[i] or proofs[#proofs]',
        ]
    lines += [f"  return wrk.format('POST', {_lua(PATH)}, headers, body)", "end"]
    path.write_text("\n".join(lines) + "\n")
    return path


def check_bound(srv: Server, authorization: str, maker: ProofMaker, alg: str) -> dict[str, Any]:
    """One DPoP request answers a DPoP token bound to the maker's key."""
    status, answer = post(
        srv.url(PATH), BODY, {"Authorization": authorization, "DPoP": maker.proof()}
    )
    if status != 200 or answer.get("token_type") != "DPoP":
        raise BenchError(f"a DPoP request answered {status}: {answer}")
    if claims_alg(answer["access_token"]) != alg:
        raise BenchError(f"the authority did not sign with {alg}")
    return answer


def run(quick: bool) -> dict[str, Any]:
    """The default signing key (RS256) judged; again with an ES256 key, in the notes."""
    result = run_with(quick, DEFAULT_ALG)
    es256 = run_with(quick, "ES256")
    result["es256"] = {k: es256[k] for k in ("ours", "baseline", "ratio", "cpu_ratio")}
    result["notes"] = [
        f"With an ES256 signing key (the cheapest signature, so the proof's cost shows "
        f"most): DPoP {es256['ours']['requests_per_s']:,.0f} req/s, plain "
        f"{es256['baseline']['requests_per_s']:,.0f} req/s, ratio {es256['ratio']:.2f} "
        f"(CPU per request ratio {es256['cpu_ratio']:.2f}); what remains is mostly the "
        "proof's ES256 verification, about twice an ES256 signature."
    ]
    return result


def run_with(quick: bool, alg: str) -> dict[str, Any]:
    duration, warmup = (3, 1) if quick else (10, 3)
    with workdir("bench-dpop-") as tmp:
        dep = deployment(tmp, AUTHORITY_KEY_ALGORITHM=alg)
        client_id, secret = dep.confidential_client()
        authorization = basic_auth(client_id, secret)
        with dep.serve(free_port()) as srv:
            maker = ProofMaker(srv.url(PATH))
            check_bound(srv, authorization, maker, alg)
            plain = lua_script(tmp / "plain.lua", authorization, None)
            url = srv.url(PATH)
            rate = wrk(url, warmup, script=plain).requests_per_s

            def dpop_script(seconds: float) -> Path:
                proofs = maker.write(tmp / "proofs.txt", int(rate * seconds * SPARE) + 2000)
                return lua_script(tmp / "dpop.lua", authorization, proofs)

            wrk(url, warmup, script=dpop_script(warmup))
            runs: dict[str, list[dict[str, Any]]] = {"plain": [], "dpop": []}
            for i in range(2):
                for name in ("plain", "dpop") if i % 2 == 0 else ("dpop", "plain"):
                    script = plain if name == "plain" else dpop_script(duration)
                    meter = CpuMeter(srv)
                    result = wrk(url, duration, script=script)
                    cpu = meter.stop(result.requests)
                    if result.errors:
                        raise BenchError(f"{name}: {result.errors} errors under load")
                    runs[name].append({**result.as_dict(), **cpu})
                    rate = max(rate, result.requests_per_s)
    dpop, base = best_of(runs["dpop"]), best_of(runs["plain"])
    return {
        "title": TITLE,
        "columns": ["DPoP", "plain"],
        "ours": dpop,
        "baseline": base,
        **verdict(dpop, base, TARGET),
        "target_text": "DPoP-bound issuance >= 0.7 x plain issuance (requests/s)",
        "method": "wrk with a Lua script; DPoP proofs (ES256) made beforehand, one per request",
        "setup": {"alg": alg, "proof_alg": "ES256", "duration_s": duration, "warmup_s": warmup},
    }
