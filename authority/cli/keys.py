"""``authority keys``: list, rotate, revoke, prune and encrypt signing keys."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from authority.cli.common import (
    DASHED_ARGUMENT,
    CommandError,
    arun,
    console,
    fail,
    json_option,
    load_settings,
    open_key_steps,
    open_keystore,
    reported,
    run_command,
    when,
)
from authority.clock import system_clock
from authority.settings import MIN_KEY_PASSPHRASE, Settings
from authority.signing.encryption import EncryptStep, encrypt_keys
from authority.signing.key_events import KeyAudit
from authority.signing.keys import key_algorithm, prove_passphrase
from authority.signing.manager import prune, revoke, rotate, statuses
from authority.signing.records import KeyRecord, KeyStore, KeyStoreError
from authority.verifier.algorithms import ALGORITHMS

T = TypeVar("T")


@click.group()
def keys() -> None:
    """Signing keys: list, rotate, revoke, prune, encrypt."""


def _key_command(
    body: Callable[[Settings, KeyStore], Coroutine[Any, Any, T]],
) -> Callable[[], T]:
    """A command that reads the key store."""

    def work() -> T:
        settings = load_settings()

        async def go() -> T:
            async with open_keystore(settings) as store:
                return await body(settings, store)

        return arun(go())

    return work


def _key_step(
    body: Callable[[Settings, KeyStore, KeyAudit], Coroutine[Any, Any, T]],
    create_directory: bool = False,
) -> Callable[[], T]:
    """A command that changes the key store, with the audit trail of its steps."""

    def work() -> T:
        settings = load_settings()

        async def go() -> T:
            async with open_key_steps(settings, create_directory) as (store, trail):
                return await body(settings, store, trail)

        return arun(go())

    return work


@keys.command("list")
@json_option
def keys_list(as_json: bool) -> None:
    """Show every key with its state (times in UTC, ISO 8601)."""
    unopened: list[str] = []

    async def body(settings: Settings, store: KeyStore) -> list[dict[str, Any]]:
        records = await store.load()
        unopened.extend(await _unopened(records, settings.key_passphrase))
        return [
            {
                "kid": s.record.kid,
                "state": s.state,
                "algorithm": s.record.algorithm.name,
                "size": s.record.size,
                "created_at": when(s.record.created_at),
                "activate_at": when(s.record.activate_at),
                "retired_at": when(s.retired_at) or None,
                "remove_after": when(s.remove_after) or None,
                "encrypted": s.record.encrypted,
            }
            for s in statuses(records, settings, system_clock())
        ]

    def show(rows: list[dict[str, Any]]) -> None:
        # Whole kids, whatever the terminal's width: `keys revoke KID` needs them.
        table = Table(box=None, pad_edge=False)
        for name in ("kid", "state", "alg", "size", "signs from", "removed after", "encrypted"):
            table.add_column(name, no_wrap=True)
        for r in rows:
            table.add_row(
                r["kid"],
                r["state"],
                r["algorithm"],
                str(r["size"]),
                r["activate_at"],
                r["remove_after"] or "",
                "yes" if r["encrypted"] else "NO",
            )
        Console(width=max(console.width, 120)).print(table)

    with reported(as_json):
        rows = _key_command(body)()
    if not as_json:
        show(rows)
    if unopened:
        more = f" and {len(unopened) - 1} more" if len(unopened) > 1 else ""
        fail(
            [
                f"AUTHORITY_KEY_PASSPHRASE does not open the stored key {unopened[0]}{more}: "
                "the server would not start and key changes are refused"
            ],
            as_json,
        )
    if as_json:
        click.echo(json.dumps(rows))


async def _unopened(records: list[KeyRecord], passphrase: str | None) -> list[str]:
    """The kids of encrypted keys that ``passphrase`` does not open (none checked
    without one: listing needs no passphrase)."""
    if not passphrase:
        return []
    found = []
    for record in records:
        try:
            await asyncio.to_thread(prove_passphrase, [record], passphrase, set())
        except KeyStoreError:
            found.append(record.kid)
    return found


@keys.command("rotate")
@click.option(
    "--now",
    "now_",
    is_flag=True,
    help="Make the new key current at once (emergencies: tokens signed with it "
    "fail at verifiers whose JWKS cache predates it).",
)
@click.option("--size", type=click.Choice(["2048", "3072", "4096"]), help="RSA key size.")
@click.option(
    "--alg",
    type=click.Choice(list(ALGORITHMS)),
    help="Algorithm of the new key (default: AUTHORITY_KEY_ALGORITHM).",
)
@json_option
def keys_rotate(now_: bool, size: str | None, alg: str | None, as_json: bool) -> None:
    """Publish a new key; it signs after KEY_PUBLISH_DELAY (or at once with --now)."""

    async def body(settings: Settings, store: KeyStore, trail: KeyAudit) -> dict[str, Any]:
        # Without --alg, a pending key of any algorithm is the one --now promotes.
        algorithm = ALGORITHMS[alg] if alg else None
        made = algorithm or key_algorithm(settings)
        if size and made.bits is not None:
            raise CommandError(f"--size is for RSA keys; {made.name} keys have one size")
        chosen = int(size) if size else None
        result = await rotate(
            store, settings, now_=now_, size=chosen, algorithm=algorithm, trail=trail
        )
        return {"outcome": result.outcome, "kid": result.kid, "activate_at": result.activate_at}

    def show(r: dict[str, Any]) -> None:
        messages = {
            "created": "published new key",
            "promoted": "promoted pending key",
            "pending": "a next key is already pending, nothing to do:",
        }
        console.print(
            f"{messages[r['outcome']]} [bold]{r['kid']}[/], signs from {when(r['activate_at'])}"
        )

    run_command(as_json, _key_step(body, create_directory=True), show)


@keys.command("revoke", context_settings=DASHED_ARGUMENT)
@click.argument("kid")
@json_option
def keys_revoke(kid: str, as_json: bool) -> None:
    """Remove a key from the JWKS now (compromise); tokens it signed stop verifying."""

    async def body(settings: Settings, store: KeyStore, trail: KeyAudit) -> dict[str, Any]:
        replacement = await revoke(store, settings, kid, trail=trail)
        return {"revoked": kid, "replacement": replacement.kid if replacement else None}

    def show(r: dict[str, Any]) -> None:
        console.print(f"revoked [bold]{r['revoked']}[/]")
        if r["replacement"]:
            console.print(f"[bold]{r['replacement']}[/] signs from now on")

    run_command(as_json, _key_step(body), show)


@keys.command("prune")
@json_option
def keys_prune(as_json: bool) -> None:
    """Delete retired keys whose tokens have all expired."""

    async def body(settings: Settings, store: KeyStore, trail: KeyAudit) -> dict[str, Any]:
        return {"pruned": await prune(store, settings, trail=trail)}

    run_command(
        as_json, _key_step(body), lambda r: console.print(f"pruned {len(r['pruned'])} key(s)")
    )


@keys.command("encrypt")
@click.option(
    "--old-passphrase-stdin",
    "old_from_stdin",
    is_flag=True,
    help="Read the passphrase(s) keys are encrypted with now from standard input, "
    "one a line (to change KEY_PASSPHRASE).",
)
@json_option
def keys_encrypt(old_from_stdin: bool, as_json: bool) -> None:
    """Encrypt every stored private key with AUTHORITY_KEY_PASSPHRASE, in place, one key
    at a time (safe to interrupt and run again)."""

    def progress(step: EncryptStep) -> None:
        click.echo(f"{step.outcome} {step.kid}", err=True)

    async def body(settings: Settings, store: KeyStore) -> dict[str, Any]:
        new = passphrase(settings)
        if old_from_stdin and not old:
            raise CommandError("--old-passphrase-stdin: no passphrase on standard input")
        steps = await encrypt_keys(store, new, old, progress)
        return {
            outcome: [s.kid for s in steps if s.outcome == outcome]
            for outcome in ("encrypted", "re-encrypted", "unchanged")
        }

    def passphrase(settings: Settings) -> str:
        if not settings.key_passphrase:
            raise CommandError("AUTHORITY_KEY_PASSPHRASE is not set: nothing to encrypt with")
        if len(settings.key_passphrase) < MIN_KEY_PASSPHRASE:
            raise CommandError(
                f"AUTHORITY_KEY_PASSPHRASE must be at least {MIN_KEY_PASSPHRASE} characters"
            )
        return settings.key_passphrase

    def show(r: dict[str, list[str]]) -> None:
        console.print(
            f"encrypted {len(r['encrypted'])}, re-encrypted {len(r['re-encrypted'])}, "
            f"already under AUTHORITY_KEY_PASSPHRASE {len(r['unchanged'])} key(s)"
        )

    lines = sys.stdin.read().splitlines() if old_from_stdin else []
    old = [line for line in lines if line]
    run_command(as_json, _key_command(body), show)
