"""Logouts mixed into the soak (``bench/soak.py``): revocation must reach the offline
verifier through the token status list within its ttl plus one poll of the server.

One worker logs in again and again (the password grant of the public client), checks
that the new access token verifies (a refusal is a false rejection, as the soak counts
them), then logs out (RFC 7009 revocation of the refresh token: its family, and with it
the access token's status bit). Every revoked access token is then verified again
every ``SWEEP`` seconds (``WORKERS`` such workers, one sweeper) until the verifier
refuses it as ``revoked``: the delay from the logout's answer to that refusal is
recorded, and a token still accepted after ``bound`` seconds (the list's ttl plus the
server's poll, plus ``SLACK``) is *late*.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from authority.verifier import InvalidToken
from bench.harness import BenchError
from bench.loadgen import percentiles, post_form

if TYPE_CHECKING:
    from bench.soak import Load

STATUS_LIST_TTL = 5  # the soak server's AUTHORITY_STATUS_LIST_TTL (s)
POLL = 1.0  # authority.status.publisher.POLL: how often the server rebuilds its list
SLACK = 1.0  # a busy, shared machine's scheduling: the verifier's fetch, the rebuild
WORKERS = 2
LOGOUT_EVERY = 0.2  # seconds between one logout and the next login
SWEEP = 0.1  # seconds between verifications of a revoked token


class Logouts:
    def __init__(self, load: Load):
        self.load = load
        self.bound = STATUS_LIST_TTL + POLL + SLACK
        self.pending: list[tuple[float, str]] = []  # (revoked at, access token)
        self.delays: list[float] = []
        self.late: list[float] = []
        self.wrong: list[str] = []  # refused for another reason than revoked
        self.logouts = 0
        self.verifications = 0

    async def run(self) -> None:
        """Log in, verify, log out, until the soak's deadline; sweep meanwhile."""
        load = self.load
        port = load.srv.port
        conn = await load.connect()
        while load.running():
            login = {
                "grant_type": "password",
                "username": load.username,
                "password": load.password,
                "client_id": load.public_id,
            }
            conn, status, body = await load.exchange(conn, post_form(port, "/oauth/token", login))
            if status != 200:
                raise BenchError(f"password grant answered {status}: {body[:200]!r}")
            tokens = json.loads(body)
            await load.verify("verify", tokens["access_token"])  # a valid token: must pass
            revoke = {"token": tokens["refresh_token"], "client_id": load.public_id}
            conn, status, body = await load.exchange(conn, post_form(port, "/oauth/revoke", revoke))
            if status != 200:
                raise BenchError(f"revocation answered {status}: {body[:200]!r}")
            self.logouts += 1
            self.pending.append((time.monotonic(), tokens["access_token"]))
            await asyncio.sleep(LOGOUT_EVERY)
        conn.close()

    async def sweeper(self) -> None:
        """``sweep`` every ``SWEEP`` seconds while the load runs."""
        while self.load.running():
            await self.sweep()
            await asyncio.sleep(SWEEP)

    async def sweep(self) -> None:
        """Verify every revoked token not yet refused; record its delay, or that it is
        late. The only one to replace ``pending`` (the workers append to it)."""
        batch, self.pending = self.pending, []
        still = []
        for revoked_at, token in batch:
            self.verifications += 1
            try:
                await self.load.verifier.averify(token)
            except InvalidToken as exc:
                if exc.reason == "revoked":
                    self.delays.append(time.monotonic() - revoked_at)
                else:
                    self.wrong.append(exc.reason)
                continue
            waited = time.monotonic() - revoked_at
            if waited > self.bound:
                self.late.append(waited)
            else:
                still.append((revoked_at, token))
        self.pending = still + self.pending

    async def drain(self) -> None:
        """After the load: sweep until every revoked token was refused or is late."""
        while self.pending:
            await self.sweep()
            await asyncio.sleep(SWEEP)

    def summary(self) -> dict[str, Any]:
        return {
            "logouts": self.logouts,
            "refused_revoked": len(self.delays),
            "late": len(self.late),
            "refused_otherwise": len(self.wrong),
            "reasons_otherwise": sorted(set(self.wrong)),
            "bound_s": self.bound,
            "ttl_plus_poll_s": STATUS_LIST_TTL + POLL,
            "over_ttl_plus_poll": sum(d > STATUS_LIST_TTL + POLL for d in self.delays),
            "status_list_ttl_s": STATUS_LIST_TTL,
            "verifications": self.verifications,
            "delay": percentiles(self.delays) if self.delays else {},
            "delay_max_s": round(max(self.delays), 2) if self.delays else None,
            "ok": not self.late and not self.wrong and len(self.delays) == self.logouts > 0,
        }
