"""Serve a baseline app the way ``authority serve`` serves ours.

    python -m bench.serve bench.baseline_apps:constant_bytes --port 8123

The options are ``authority serve``'s own, so the comparison measures the app.
"""

from __future__ import annotations

import argparse

import uvicorn

from authority.cli.serve import UVICORN_OPTIONS


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve")
    parser.add_argument("app", help="module:factory")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(args.app, host="127.0.0.1", port=args.port, workers=args.workers, **UVICORN_OPTIONS)


if __name__ == "__main__":
    main()
