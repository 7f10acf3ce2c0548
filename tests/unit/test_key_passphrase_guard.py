"""Every change to the key store first proves that ``KEY_PASSPHRASE`` opens the keys
already stored (README, "Signing keys"): a key written under another passphrase would
leave a store that no passphrase loads whole, and the server would not start. The
commands, ``setup``'s first key, ``keys encrypt`` and the server's own rotation refuse
with one line and change nothing; ``keys list`` says so too. Both key stores."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from authority.cli.main import main
from authority.settings import Settings
from authority.signing.database_store import DatabaseKeyStore
from authority.signing.encryption import encrypt_keys
from authority.signing.file_store import FileKeyStore
from authority.signing.manager import KeyManager, ensure_key, rotation_due
from authority.signing.records import KeyStore
from authority.storage.database import create_engine
from authority.storage.migrate import upgrade
from tests.helpers.clock import Clock

RIGHT = "the right passphrase, long enough"
WRONG = "a wrong passphrase, long enough!"


@pytest.fixture(params=["file", "database"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The environment of a key store of each kind (``setup`` makes it)."""
    return {
        "AUTHORITY_ENV": "test",
        "AUTHORITY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}",
        "AUTHORITY_KEYSTORE": request.param,
        "AUTHORITY_KEYS_DIR": str(tmp_path / "keys"),
        "AUTHORITY_SECRET_KEY_FILE": str(tmp_path / "secret_key"),
    }


def run(env: dict[str, str], *args: str, passphrase: str | None = RIGHT) -> tuple[int, str, str]:
    values = dict(env)
    if passphrase is not None:
        values["AUTHORITY_KEY_PASSPHRASE"] = passphrase
    result = CliRunner().invoke(main, list(args), env=values, prog_name="authority")
    assert passphrase is None or passphrase not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr


def listed(env: dict[str, str]) -> list[dict[str, object]]:
    code, out, err = run(env, "keys", "list", "--json")
    assert code == 0, err
    rows: list[dict[str, object]] = json.loads(out)
    return rows


async def add_encrypted_key(env: dict[str, str], passphrase: str) -> None:
    from authority.signing.keys import generate
    from tests.helpers.stores import open_store, settings_of

    now = time.time()
    record = generate(2048, passphrase, now + 3600, now)  # a next key, listed second
    async with open_store(settings_of(env)) as store, store.transaction() as tx:
        await tx.add(record)


def set_up(env: dict[str, str]) -> str:
    code, out, err = run(env, "setup", "--json")
    assert code == 0, err
    kid: str = json.loads(out)["created_key"]
    return kid


@pytest.mark.parametrize(
    "args",
    [("keys", "rotate"), ("keys", "rotate", "--now"), ("keys", "revoke", "KID"), ("keys", "prune")],
)
def test_a_key_change_with_a_wrong_passphrase_is_refused_and_changes_nothing(
    env: dict[str, str], args: tuple[str, ...]
) -> None:
    kid = set_up(env)
    before = listed(env)
    code, out, err = run(env, *(kid if a == "KID" else a for a in args), passphrase=WRONG)
    assert (code, out) == (1, "")
    assert err == (
        f"error: AUTHORITY_KEY_PASSPHRASE does not open the stored key {kid}: nothing was "
        "changed (give the passphrase the keys are encrypted with)\n"
    )
    assert listed(env) == before
    code, _, err = run(env, "keys", "rotate", "--now")
    assert code == 0, "the right passphrase still opens every key"


def test_a_key_change_without_the_passphrase_of_encrypted_keys_is_refused(
    env: dict[str, str],
) -> None:
    kid = set_up(env)
    code, _, err = run(env, "keys", "rotate", passphrase=None)
    assert code == 1
    assert err == (
        f"error: key {kid} is encrypted but AUTHORITY_KEY_PASSPHRASE is not set: "
        "nothing was changed\n"
    )
    assert len(listed(env)) == 1


def test_setup_does_not_add_the_first_current_key_under_a_wrong_passphrase(
    env: dict[str, str],
) -> None:
    assert run(env, "db", "upgrade")[0] == 0
    code, out, _ = run(env, "keys", "rotate", "--json")  # a next key, none current yet
    pending = json.loads(out)["kid"]
    code, _, err = run(env, "setup", passphrase=WRONG)
    assert code == 1
    assert f"does not open the stored key {pending}" in err
    assert [row["kid"] for row in listed(env)] == [pending]


def test_keys_encrypt_refuses_before_its_first_step_when_a_key_does_not_open(
    env: dict[str, str],
) -> None:
    """One key not encrypted, then one under ``RIGHT`` (a store no command makes any
    more, written here through the store itself): ``keys encrypt`` under ``WRONG``
    without the old passphrase must not encrypt the first before failing on the second."""
    code, _, err = run(env, "setup", passphrase=None)
    assert code == 0, err
    asyncio.run(add_encrypted_key(env, RIGHT))
    before = listed(env)
    assert [row["encrypted"] for row in before] == [False, True]
    code, _, err = run(env, "keys", "encrypt", passphrase=WRONG)
    assert code == 1
    assert err.startswith(f"error: cannot decrypt key {before[1]['kid']}")
    assert err.count("\n") == 1
    assert listed(env) == before


def test_keys_list_says_when_the_passphrase_does_not_open_a_key(env: dict[str, str]) -> None:
    kid = set_up(env)
    code, out, err = run(env, "keys", "list", passphrase=WRONG)
    assert code == 1
    assert kid in out, "the keys are still listed"
    assert err == (
        f"error: AUTHORITY_KEY_PASSPHRASE does not open the stored key {kid}: "
        "the server would not start and key changes are refused\n"
    )
    code, out, _ = run(env, "keys", "list", "--json", passphrase=WRONG)
    assert code == 1
    assert "does not open the stored key" in json.loads(out)["error"]
    assert run(env, "keys", "list", passphrase=None)[0] == 0, "listing needs no passphrase"
    assert run(env, "keys", "list")[0] == 0


# --- the server's own rotation -----------------------------------------------------------


@pytest.fixture(params=["file", "database"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyStore]:
    if request.param == "file":
        (tmp_path / "keys").mkdir()
        yield FileKeyStore(tmp_path / "keys")
        return
    url = f"sqlite+aiosqlite:///{tmp_path / 'authority.db'}"
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    try:
        yield DatabaseKeyStore(engine)
    finally:
        await engine.dispose()


async def test_the_server_does_not_rotate_under_a_passphrase_that_no_longer_opens_the_keys(
    store: KeyStore, clock: Clock
) -> None:
    """A running server keeps the keys it decrypted; once `keys encrypt` has put them
    under a new passphrase, its old one must not be used to add a key beside them."""
    settings = Settings(env="test", key_passphrase=RIGHT, key_rotation_interval=1000)
    assert await ensure_key(store, settings, clock) is not None
    manager = KeyManager(store, settings, clock)
    await manager.load()
    await encrypt_keys(store, WRONG, [RIGHT])
    clock.advance(1000)
    assert rotation_due(await store.load(), settings, clock()) is not None
    await manager.maintain()
    assert len(await store.load()) == 1
    assert manager.problem is not None
    assert "AUTHORITY_KEY_PASSPHRASE does not open the stored key" in manager.problem


def test_a_passphrase_given_to_a_store_of_plain_keys_is_refused_until_keys_encrypt(
    env: dict[str, str],
) -> None:
    """A hurried ``AUTHORITY_KEY_PASSPHRASE=… keys rotate`` on a store made without
    one would write the only key that needs it; ``keys encrypt`` encrypts them all."""
    code, out, err = run(env, "setup", "--json", passphrase=None)
    assert code == 0, err
    kid = json.loads(out)["created_key"]
    before = listed(env)
    code, out, err = run(env, "keys", "rotate", passphrase=RIGHT)
    assert (code, out) == (1, "")
    assert err == (
        f"error: key {kid} is stored unencrypted but AUTHORITY_KEY_PASSPHRASE is set: "
        "nothing was changed (run `authority keys encrypt` first to encrypt every key, "
        "or unset AUTHORITY_KEY_PASSPHRASE)\n"
    )
    assert listed(env) == before
    code, _, err = run(env, "keys", "encrypt", passphrase=RIGHT)
    assert code == 0, err
    code, _, err = run(env, "keys", "rotate", passphrase=RIGHT)
    assert code == 0, err
    assert len(listed(env)) == 2
