"""Group commit for PostgreSQL's hot path (README, "Durability and workers"): the calls
made in one turn of the event loop go to the database as one statement, and the calls
that come while it runs make the next one.

A statement's round trip, its parse and plan, its commit and the WAL flush that makes
the commit durable cost the database and the worker far more than one more row does.
With many requests in flight, each turn of the loop brings several, so a batch of
them pays those costs once. At most ``in_flight`` batches run at once: a request never
waits for more than the batch in flight before its own starts, and on a quiet server
a batch is one call, sent at the end of the turn that made it.

A call whose caller has gone (a cancelled request) before its batch starts is left
out; once its batch has started, the batch completes without it, since the statement
is already on its way. An exception of the batch is raised in each of its callers.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
IN_FLIGHT = 2  # batches of one kind running at once, per process (each on a connection)


class Batches(Generic[T, R]):
    """``await batches.submit(item)``: ``run`` answers a list of items, in their order."""

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R]]],
        *,
        in_flight: int = IN_FLIGHT,
        most: int = 64,
    ):
        self._run = run
        self._in_flight = in_flight
        self._most = most
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._scheduled = False
        self.loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        self.loop = loop
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, future))
        if not self._scheduled and len(self._running) < self._in_flight:
            self._scheduled = True
            loop.call_soon(self._start)  # after the other callers of this turn
        return await future

    def _start(self) -> None:
        self._scheduled = False
        while self._waiting and len(self._running) < self._in_flight:
            taken, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
            batch = [(item, future) for item, future in taken if not future.done()]
            if batch:
                task = asyncio.get_running_loop().create_task(self._send(batch))
                self._running.add(task)

    async def _send(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} got {len(results)} answers")
        except Exception as exc:  # each caller raises its own copy
            for _, future in batch:
                if not future.done():
                    future.set_exception(copy.copy(exc))
        except BaseException:  # the loop is closing: so are its callers
            for _, future in batch:
                future.cancel()
            raise
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            current = asyncio.current_task()
            if current is not None:
                self._running.discard(current)
            if self._waiting and not self._scheduled:
                self._start()
