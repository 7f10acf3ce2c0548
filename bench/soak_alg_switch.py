"""Soak variant: switching the signing algorithm from RS256 to ES256 under load.

The soak's mixed load (``bench/soak.py``: ``client_credentials``, refresh chains, JWKS
fetches, logouts, and offline verification of every issued token plus an archived
one, by ``authority.verifier.Verifier`` as a resource server runs it) against an
authority that starts with an RS256 key. ``SWITCH_AT`` seconds in, the real CLI runs
``authority keys rotate --alg ES256``: the ES256 key is published at once and signs
``KEY_PUBLISH_DELAY`` seconds later (7 s here, longer than the JWKS ``max-age`` plus
the store poll), while the RS256 key stays published for the tokens it signed. No
other rotation happens, so every token is signed by one of these two keys.

A *false rejection* is an unexpired token the server issued that the verifier refuses;
there must be none, before, during (both keys published, either signing) and after
the switch. The run also shows when the first ES256 token was issued and
``client_credentials`` requests/s before and after the switch (ES256 signs faster).

    python -m bench soak_alg_switch                 # 40 s (30 s with --quick)
    python -m bench soak_alg_switch --duration 120
"""

from __future__ import annotations

import time
from typing import Any

from bench.harness import BenchError
from bench.oauth_setup import Deployment
from bench.soak import SETTINGS, Recorder, rotation_entry, soak

TITLE = "Soak: switching the signing algorithm RS256 -> ES256 under load (`keys rotate --alg`)"
SHORT_S, QUICK_S = 40.0, 30.0  # the switch needs SWITCH_AT + 3 publish delays (26 s)
SWITCH_AT = 5.0  # seconds into the run
FROM_ALG, TO_ALG = "RS256", "ES256"


def run(quick: bool, duration: float | None = None) -> dict[str, Any]:
    duration = duration or (QUICK_S if quick else SHORT_S)
    if duration < SWITCH_AT + 3 * float(SETTINGS["AUTHORITY_KEY_PUBLISH_DELAY"]):
        raise BenchError(f"run the switch for at least {SWITCH_AT + 21:.0f} s")

    def switch(dep: Deployment, rotations: list[dict[str, Any]], elapsed: float) -> None:
        if rotations:
            return
        started = time.monotonic()
        done = dep.cli("keys", "rotate", "--alg", TO_ALG)
        rotations.append(rotation_entry(elapsed, started, done, False) | {"alg": TO_ALG})

    result, rec, keys_after = soak(
        "bench-alg-switch-", duration, switch, SWITCH_AT, duration, AUTHORITY_KEY_ALGORITHM=FROM_ALG
    )
    logouts = result["logouts"]
    result |= switch_figures(result, rec, keys_after)
    result["title"] = TITLE
    result["kind"] = "alg_switch"
    result["ok"] = (
        result["false_rejections"] == 0
        and result["5xx"] == 0
        and logouts["ok"]
        and result["switch"]["switched"]
    )
    return result


def switch_figures(result: dict[str, Any], rec: Recorder, keys_after: Any) -> dict[str, Any]:
    """Tokens issued per algorithm, when the new key first signed, and
    ``client_credentials`` requests/s before the switch and once the new key signs."""
    algs = {k["kid"]: k["algorithm"] for k in keys_after}
    issued: dict[str, int] = {}
    for kid, count in rec.issued_kids.items():
        alg = algs.get(kid, "unknown")
        issued[alg] = issued.get(alg, 0) + count
    rotation = result["rotations"][0] if result["rotations"] else None
    new_kid = rotation["kid"] if rotation else None
    published = rec.published_kids.get(new_kid) if new_kid else None
    first_signed = rec.first_issued.get(new_kid) if new_kid else None
    timeline = result["timeline"]["client_credentials"]
    switched_at = int(first_signed) + 1 if first_signed is not None else len(timeline)
    before = timeline[1 : int(SWITCH_AT)]
    after = timeline[switched_at:]
    return {
        "switch": {
            "from": FROM_ALG,
            "to": TO_ALG,
            "rotated_at_s": rotation["t"] if rotation else None,
            "new_kid": new_kid,
            "new_key_seen_in_jwks_at_s": round(published, 2) if published is not None else None,
            "new_key_first_signed_at_s": round(first_signed, 2)
            if first_signed is not None
            else None,
            "issued_by_alg": issued,
            "switched": first_signed is not None and issued.get(FROM_ALG, 0) > 0,
            "cc_requests_per_s_before": round(sum(before) / max(1, len(before)), 1),
            "cc_requests_per_s_after": round(sum(after) / max(1, len(after)), 1),
        }
    }
