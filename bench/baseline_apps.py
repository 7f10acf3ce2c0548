"""Bare Litestar apps that do the least a real endpoint could do: the yardsticks.

Each is a factory for ``uvicorn --factory`` (see ``bench/serve.py``), configured from
``BENCH_*`` environment variables so the benchmark can match the real endpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

from litestar import Litestar, Response, get


def constant_bytes() -> Litestar:
    """``GET /`` returns the bytes of the file ``BENCH_BODY_FILE`` as application/json."""
    body = Path(os.environ["BENCH_BODY_FILE"]).read_bytes()

    @get("/", sync_to_thread=False)
    def index() -> Response[bytes]:
        return Response(body, media_type="application/json")

    return Litestar(route_handlers=[index], openapi_config=None, debug=False)
