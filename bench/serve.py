"""Serve a baseline app the way ``authority serve`` serves ours.

    python -m bench.serve bench.baseline_apps:constant_bytes --port 8123

UVICORN_OPTIONS must stay equal to the options of ``uvicorn.run`` in
``authority/cli.py:_serve``, or the comparison measures the server, not the app.
"""

from __future__ import annotations

import argparse

import uvicorn

UVICORN_OPTIONS = {
    "factory": True,
    "loop": "uvloop",
    "http": "httptools",
    "lifespan": "on",
    "server_header": False,
    "proxy_headers": False,
    "access_log": False,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve")
    parser.add_argument("app", help="module:factory")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(args.app, host="127.0.0.1", port=args.port, workers=args.workers, **UVICORN_OPTIONS)


if __name__ == "__main__":
    main()
