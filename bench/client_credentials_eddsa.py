"""``client_credentials`` as ``bench/client_credentials.py`` does it, with an EdDSA key
(``KEY_ALGORITHM=EdDSA``) against the same bare endpoint signing with an EdDSA key, with
``BENCH_WORKERS`` workers and again with 2 (in the notes).

Target: requests/s of ours >= 0.8 x the baseline's.
"""

from __future__ import annotations

from typing import Any

from bench.client_credentials import run_curve


def run(quick: bool) -> dict[str, Any]:
    return run_curve(quick, "EdDSA")
