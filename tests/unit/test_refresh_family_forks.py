"""A refresh family never forks (README, "Refresh tokens: rotation and reuse"): grace
siblings (RFC 9700 section 4.14.2 reuse detection with a grace window for concurrent
tabs) are consumed together, and a consumed token cannot probe its session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from authority.sessions.families import Rotation, rotate_token, token_state
from authority.sessions.refresh_tokens import new_refresh_token
from authority.storage.database import Database
from tests.helpers.clock import Clock
from tests.helpers.families import new_family

TTL, FAMILY_TTL, GRACE = 600, 86400, 10


@pytest.fixture
async def db(migrated_url: str) -> AsyncIterator[Database]:
    database = Database(migrated_url)
    yield database
    await database.dispose()


async def login(db: Database, now: float) -> tuple[str, bytes]:
    """A client and the first refresh token (its hash) of a new family of its own."""
    client_id, token_hash, _ = await new_family(db, now=now, refresh_ttl=TTL, family_ttl=FAMILY_TTL)
    return client_id, token_hash


async def rotate(
    db: Database,
    client_id: str,
    presented: bytes,
    now: float,
    grace: int = GRACE,
    extra: dict[str, str] | None = None,
) -> tuple[Rotation, bytes]:
    """The outcome of presenting ``presented`` (with ``extra`` scope or audience), and
    the replacement it would get."""
    _, replacement = new_refresh_token()
    extra = extra or {}
    scope = extra.get("scope")
    result = await db.write(
        rotate_token,
        presented=presented,
        replacement=replacement,
        client_id=client_id,
        now=now,
        refresh_ttl=TTL,
        grace=grace,
        scope=scope.split() if scope is not None else None,
        audience=extra.get("audience"),
    )
    return result, replacement


async def live(db: Database, token: bytes, now: float) -> bool:
    state = await db.read(token_state, token, now)
    return state is not None and state.active


async def test_grace_replays_of_an_old_token_leave_no_branch_alive_once_one_is_used(
    db: Database, clock: Clock
) -> None:
    client_id, r1 = await login(db, clock.now)
    first, r2 = await rotate(db, client_id, r1, clock.now)
    assert first.outcome == "rotated"
    siblings = []
    for _ in range(5):  # a thief replays R1 within the grace window
        clock.advance(1)
        replay, sibling = await rotate(db, client_id, r1, clock.now)
        assert replay.outcome == "grace"
        siblings.append(sibling)
    clock.advance(GRACE + 1)
    used, r3 = await rotate(db, client_id, r2, clock.now)
    assert used.outcome == "rotated"
    assert not any([await live(db, s, clock.now) for s in siblings])
    stolen, _ = await rotate(db, client_id, siblings[2], clock.now)
    assert stolen.outcome == "reuse"
    assert not await live(db, r3, clock.now)  # the whole family is revoked


async def test_using_a_grace_sibling_consumes_the_token_it_raced_with(
    db: Database, clock: Clock
) -> None:
    client_id, r1 = await login(db, clock.now)
    _, r2 = await rotate(db, client_id, r1, clock.now)
    sibling_result, sibling = await rotate(db, client_id, r1, clock.now + 1)
    assert sibling_result.outcome == "grace"
    clock.advance(GRACE + 5)
    assert (await rotate(db, client_id, sibling, clock.now))[0].outcome == "rotated"
    assert (await rotate(db, client_id, r2, clock.now + 1))[0].outcome == "reuse"


async def test_two_tabs_sharing_storage_both_stay_signed_in_through_a_race(
    db: Database, clock: Clock
) -> None:
    """Both tabs refresh R1 at once: one gets R2, the other the grace sibling R2'. The
    tab that wrote last leaves R2' in the shared storage; both tabs go on using it,
    again racing, for many rounds past the grace window."""
    client_id, shared = await login(db, clock.now)
    for _ in range(4):
        (a, _), (b, b_token) = await asyncio.gather(
            rotate(db, client_id, shared, clock.now), rotate(db, client_id, shared, clock.now)
        )
        assert sorted([a.outcome, b.outcome]) == ["grace", "rotated"]
        shared = b_token  # the last write to the shared storage wins
        clock.advance(GRACE * 3)
        assert await live(db, shared, clock.now)
    final, _ = await rotate(db, client_id, shared, clock.now)
    assert final.outcome == "rotated"


async def test_without_grace_a_race_still_has_exactly_one_winner(
    db: Database, clock: Clock
) -> None:
    client_id, r1 = await login(db, clock.now)
    results = await asyncio.gather(
        *(rotate(db, client_id, r1, clock.now, grace=0) for _ in range(6))
    )
    outcomes = [result.outcome for result, _ in results]
    assert outcomes.count("rotated") == 1, outcomes
    assert set(outcomes) - {"rotated"} <= {"reuse", "revoked"}, outcomes


@pytest.mark.parametrize(("field", "value"), [("scope", "read write admin"), ("audience", "x")])
async def test_a_consumed_token_cannot_probe_its_session_with_scope_or_audience(
    db: Database, clock: Clock, field: str, value: str
) -> None:
    client_id, r1 = await login(db, clock.now)
    _, r2 = await rotate(db, client_id, r1, clock.now)
    clock.advance(GRACE + 1)
    probe, _ = await rotate(db, client_id, r1, clock.now, extra={field: value})
    assert probe.outcome == "reuse"
    assert not await live(db, r2, clock.now)


async def test_a_live_token_asking_more_scope_changes_nothing(db: Database, clock: Clock) -> None:
    client_id, r1 = await login(db, clock.now)
    refused, _ = await rotate(db, client_id, r1, clock.now, extra={"scope": "read admin"})
    assert refused.outcome == "scope"
    assert await live(db, r1, clock.now)
