"""A small Python load generator for what wrk cannot do: refresh token chains.

Each of N chains holds one keep-alive connection and one refresh token: it logs in
once (password grant, not measured), then refreshes again and again, each request
presenting the token the previous answer returned (rotation on every use). Requests
are plain HTTP/1.1 written by hand and answers are parsed with ``httptools`` (the parser
uvicorn uses) on ``uvloop``, so the client costs a few tens of microseconds per request.
It still costs CPU on the same machine, which is why a baseline is measured with the
same client (``bench.baseline_apps:rs256_token``) and why the server's own CPU per
request is recorded too.

Two modes: closed loop (each chain sends its next request when the answer arrives: the
throughput) and paced (the chains together send ``rate`` requests/s on a fixed schedule
and latency counts from the scheduled time, so a stall is not hidden by the client
waiting: the latency at a given load, free of coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httptools
import uvloop

from bench.harness import HOST, BenchError, CpuMeter, Server

TIMEOUT = 10.0  # seconds for one request before the run fails


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.lost = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(exc or ConnectionError("connection closed by the server"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), b"".join(self.body)))

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.transport is None or self.lost:
            raise ConnectionError("connection closed")
        self.body = []
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await asyncio.wait_for(self.waiter, TIMEOUT)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def post_form(
    port: int, path: str, form: dict[str, str], headers: dict[str, str] | None = None
) -> bytes:
    body = urlencode(form).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def get_request(port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()


def percentiles(latencies_s: list[float]) -> dict[str, float]:
    if not latencies_s:
        return {f"{p}_ms": 0.0 for p in ("p50", "p75", "p90", "p99", "max")}
    ordered = sorted(latencies_s)

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {
        "p50_ms": at(0.50),
        "p75_ms": at(0.75),
        "p90_ms": at(0.90),
        "p99_ms": at(0.99),
        "max_ms": round(1000 * ordered[-1], 3),
    }


@dataclass
class RefreshChains:
    """``chains`` refresh chains of one public client against one server.

    The refresh tokens survive between runs (connections do not: each run opens its
    own), so a chain logs in once and keeps rotating across warm-up and rounds."""

    srv: Server
    client_id: str
    username: str
    password: str
    chains: int = 32
    tokens: list[str] = field(default_factory=list)
    relogins: int = 0

    def _login(self) -> bytes:
        return post_form(
            self.srv.port,
            "/oauth/token",
            {
                "grant_type": "password",
                "username": self.username,
                "password": self.password,
                "client_id": self.client_id,
            },
        )

    def _refresh(self, token: str) -> bytes:
        return post_form(
            self.srv.port,
            "/oauth/token",
            {"grant_type": "refresh_token", "refresh_token": token, "client_id": self.client_id},
        )

    async def _open(self) -> list[Connection]:
        loop = asyncio.get_running_loop()
        connections = []
        for _ in range(self.chains):
            _, conn = await loop.create_connection(Connection, HOST, self.srv.port)
            connections.append(conn)
        return connections

    async def _login_all(self, connections: list[Connection]) -> None:
        async def one(conn: Connection) -> str:
            status, body = await conn.request(self._login())
            if status != 200:
                raise BenchError(f"password grant answered {status}: {body[:200]!r}")
            return str(json.loads(body)["refresh_token"])

        self.tokens = list(await asyncio.gather(*(one(c) for c in connections)))

    def run(self, duration: float, rate: float | None = None) -> dict[str, Any]:
        """Refresh for ``duration`` seconds on every chain, closed loop or at ``rate``
        requests/s in all; returns requests/s, latency percentiles, errors and CPU."""
        return run_uvloop(self._run(duration, rate, None))

    def run_while(
        self, busy: Callable[[], bool], limit: float, rate: float | None = None
    ) -> dict[str, Any]:
        """Like ``run``, for as long as ``busy()`` says so (at most ``limit`` seconds)."""
        return run_uvloop(self._run(limit, rate, busy))

    async def _run(
        self, duration: float, rate: float | None, busy: Callable[[], bool] | None
    ) -> dict[str, Any]:
        connections = await self._open()
        try:
            if len(self.tokens) != self.chains:
                await self._login_all(connections)
            latencies: list[float] = []
            errors: dict[str, int] = {}
            meter = CpuMeter(self.srv)
            start = time.monotonic()
            deadline = start + duration
            interval = self.chains / rate if rate else 0.0

            def running() -> bool:
                return time.monotonic() < deadline and (busy is None or busy())

            async def chain(i: int) -> None:
                conn = connections[i]
                scheduled = start + interval * i / self.chains
                while running():
                    if interval:
                        delay = scheduled - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                            if not running():
                                return
                    else:
                        scheduled = time.monotonic()
                    status, body = await conn.request(self._refresh(self.tokens[i]))
                    latencies.append(time.monotonic() - scheduled)
                    scheduled += interval
                    if status == 200:
                        self.tokens[i] = json.loads(body)["refresh_token"]
                        continue
                    key = f"{status} {error_code(body)}"
                    errors[key] = errors.get(key, 0) + 1
                    if status == 400:  # the chain is broken (reuse, expiry): log in again
                        self.relogins += 1
                        status, body = await conn.request(self._login())
                        if status == 200:
                            self.tokens[i] = json.loads(body)["refresh_token"]

            await asyncio.gather(*(chain(i) for i in range(self.chains)))
            elapsed = time.monotonic() - start
            cpu = meter.stop(len(latencies))
        finally:
            for conn in connections:
                conn.close()
        return {
            "requests_per_s": round(len(latencies) / elapsed, 1),
            **percentiles(latencies),
            "requests": len(latencies),
            "errors": sum(errors.values()),
            "error_kinds": errors,
            "seconds": round(elapsed, 2),
            **cpu,
        }


def error_code(body: bytes) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(body).get("error"))
    return "?"


def run_uvloop(coro: Any) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def compare_chains(
    targets: dict[str, RefreshChains], duration: float, warmup: float, rounds: int = 2
) -> dict[str, Any]:
    """``harness.compare`` for refresh chains: warm each up (logins included), then
    ``rounds`` closed-loop runs each, alternating the order; keeps each one's best."""
    from bench.harness import best_of

    for chains in targets.values():
        chains.run(warmup)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    names = list(targets)
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            result = targets[name].run(duration)
            if result["errors"]:
                raise BenchError(f"{name}: errors under load: {result['error_kinds']}")
            runs[name].append(result)
    return {name: best_of(measured) for name, measured in runs.items()}
