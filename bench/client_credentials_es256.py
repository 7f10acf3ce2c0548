"""``client_credentials`` as ``bench/client_credentials.py`` does it, with an ES256 key
(``KEY_ALGORITHM=ES256``) against the same bare endpoint signing with an ES256 key, with
``BENCH_WORKERS`` workers and again with 2 (in the notes).

Target: requests/s of ours >= 0.8 x the baseline's.
"""

from __future__ import annotations

from typing import Any

from bench.client_credentials import run_curve


def run(quick: bool) -> dict[str, Any]:
    return run_curve(quick, "ES256")
