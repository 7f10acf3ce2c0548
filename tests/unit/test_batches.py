"""Group commit for PostgreSQL's hot path (``authority.storage.batches``): the calls of
one turn of the event loop make one batch, the calls that come while batches run make
the next, no more than ``in_flight`` run at once, a caller gone before its batch starts
is left out, and a batch's failure reaches each of its callers."""

from __future__ import annotations

import asyncio

import pytest

from authority.storage.batches import Batches


class Recorder:
    """A ``run`` that answers each item doubled once ``release`` is set, keeping every
    batch it was given and how many ran at once."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_running = 0
        self.release = asyncio.Event()
        self.release.set()
        self.fail: Exception | None = None

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.release.wait()
            if self.fail is not None:
                raise self.fail
            return [2 * item for item in items]
        finally:
            self.running -= 1


async def test_the_calls_of_one_turn_make_one_batch_and_each_gets_its_answer() -> None:
    run = Recorder()
    batches = Batches(run)
    answers = await asyncio.gather(*(batches.submit(i) for i in range(10)))
    assert answers == [2 * i for i in range(10)]
    assert run.batches == [list(range(10))]


async def test_calls_made_while_batches_run_wait_and_go_together_in_the_next() -> None:
    run = Recorder()
    run.release.clear()
    batches = Batches(run, in_flight=2)
    first = asyncio.ensure_future(batches.submit(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    second = asyncio.ensure_future(batches.submit(2))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(batches.submit(i)) for i in (3, 4, 5)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert run.batches == [[1], [2]]  # two in flight; 3, 4 and 5 wait together
    run.release.set()
    assert await asyncio.gather(first, second, *later) == [2, 4, 6, 8, 10]
    assert run.batches == [[1], [2], [3, 4, 5]]
    assert run.most_running == 2


async def test_a_batch_holds_at_most_so_many_calls() -> None:
    run = Recorder()
    batches = Batches(run, in_flight=1, most=4)
    assert await asyncio.gather(*(batches.submit(i) for i in range(10))) == [
        2 * i for i in range(10)
    ]
    assert [len(batch) for batch in run.batches] == [4, 4, 2]
    assert run.most_running == 1


async def test_a_caller_gone_before_its_batch_starts_is_left_out() -> None:
    run = Recorder()
    run.release.clear()
    batches = Batches(run, in_flight=1)
    first = asyncio.ensure_future(batches.submit(1))
    for _ in range(3):
        await asyncio.sleep(0)
    gone = asyncio.ensure_future(batches.submit(2))
    kept = asyncio.ensure_future(batches.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    run.release.set()
    assert await first == 2
    assert await kept == 6
    assert gone.cancelled()
    assert run.batches == [[1], [3]]


async def test_a_failed_batch_raises_in_each_of_its_callers_and_the_next_batch_runs() -> None:
    run = Recorder()
    run.fail = RuntimeError("the database went away")
    batches = Batches(run)
    results = await asyncio.gather(*(batches.submit(i) for i in range(3)), return_exceptions=True)
    assert [str(result) for result in results] == ["the database went away"] * 3
    assert len({id(result) for result in results}) == 3  # each its own exception
    run.fail = None
    assert await batches.submit(7) == 14


async def test_a_caller_cancelled_while_its_batch_runs_leaves_the_batch_to_finish() -> None:
    run = Recorder()
    run.release.clear()
    batches = Batches(run)
    impatient = asyncio.ensure_future(batches.submit(1))
    patient = asyncio.ensure_future(batches.submit(2))
    for _ in range(3):
        await asyncio.sleep(0)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    run.release.set()
    assert await patient == 4
    assert run.batches == [[1, 2]]
