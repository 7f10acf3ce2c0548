"""A setting that is misspelled, in lower case or without its prefix in ``.env`` is
refused before anything starts, one line per problem naming the closest real setting
(README, "Configuration"); so is every ``AUTHORITY_`` name the repository itself sets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from authority.cli.main import main
from authority.settings import Settings, SettingsError, setting_names

ROOT = Path(__file__).resolve().parents[2]


def problems_of(environ: dict[str, str], dotenv: Path | None = None) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ, dotenv=dotenv)
    assert all("\n" not in problem for problem in caught.value.problems)
    return caught.value.problems


@pytest.mark.parametrize(
    ("name", "says"),
    [
        (
            "AUTHORITY_ACCES_TTL",
            "AUTHORITY_ACCES_TTL is not a setting; did you mean AUTHORITY_ACCESS_TTL?",
        ),
        (
            "authority_access_ttl",
            "authority_access_ttl is not a setting; did you mean AUTHORITY_ACCESS_TTL?",
        ),
        ("Authority_Leeway", "Authority_Leeway is not a setting; did you mean AUTHORITY_LEEWAY?"),
        (
            "AUTHORITY_KEYSTOR",
            "AUTHORITY_KEYSTOR is not a setting; did you mean AUTHORITY_KEYSTORE?",
        ),
        ("AUTHORITY_PASSPHRASE", "did you mean AUTHORITY_KEY_PASSPHRASE?"),
    ],
)
def test_a_misspelled_setting_in_the_environment_names_the_closest_one(
    name: str, says: str
) -> None:
    assert says in problems_of({name: "60"})[0]


def test_a_name_like_no_setting_at_all_is_refused_too() -> None:
    [problem] = problems_of({"AUTHORITY_ZZZZZZZZ": "1"})
    assert problem == "AUTHORITY_ZZZZZZZZ is not a setting (see README, Configuration)"


def test_other_programs_variables_in_the_environment_are_left_alone() -> None:
    settings = Settings.from_env(
        {"ACCESS_TTL": "5", "BFF_AUTHORITY_URL": "x", "PATH": "/bin"}, dotenv=None
    )
    assert settings.access_ttl == 900


def test_a_name_without_the_prefix_in_dotenv_names_the_setting(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("ACCESS_TTL=60\nAUTHORITY_LEEWAY=5\nkeystore=database\nPOSTGRES_PASSWORD=x\n")
    assert problems_of({}, dotenv) == [
        f"{dotenv}: ACCESS_TTL is not a setting; did you mean AUTHORITY_ACCESS_TTL?",
        f"{dotenv}: keystore is not a setting; did you mean AUTHORITY_KEYSTORE?",
    ]


def test_every_problem_is_reported_at_once_one_line_each() -> None:
    found = problems_of(
        {
            "AUTHORITY_ACCES_TTL": "60",
            "AUTHORITY_PORT": "eighty",
            "AUTHORITY_KEYSTORE": "s3",
            "AUTHORITY_DATABASE_URL": "mysql://x",
        }
    )
    assert len(found) == 4
    assert [p.split(" ", 1)[0].rstrip(":") for p in found] == [
        "AUTHORITY_ACCES_TTL",
        "AUTHORITY_PORT",
        "AUTHORITY_KEYSTORE",
        "AUTHORITY_DATABASE_URL",
    ]


@pytest.mark.parametrize(
    "args",
    [("serve",), ("setup",), ("db", "upgrade"), ("keys", "rotate"), ("clients", "list")],
)
def test_every_command_refuses_a_misspelled_setting_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"AUTHORITY_ENV": "test", "AUTHORITY_ACCES_TTL": "60", "authority_leeway": "5"}
    result = CliRunner().invoke(main, [*args, "--json"], env=env, input="")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: AUTHORITY_ACCES_TTL is not a setting; did you mean AUTHORITY_ACCESS_TTL?",
        "error: authority_leeway is not a setting; did you mean AUTHORITY_LEEWAY?",
    ]
    assert list(tmp_path.iterdir()) == [], "nothing was created"


def test_the_repository_sets_no_authority_name_that_is_not_a_setting() -> None:
    """The test switches (``TEST_POSTGRES_URL``, ``TEST_REQUIRE_*``) and anything CI,
    the Makefile, the benchmarks or the docs set must not carry the prefix, or the
    check above would refuse to start under them."""
    places = [ROOT / ".ci" / "run", ROOT / "Makefile", ROOT / "README.md"]
    for folder in ("tests", "bench", "docs", "examples"):
        places += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".sh", ".md")]
    known = set(setting_names())
    stray = {
        (str(path.relative_to(ROOT)), name)
        for path in places
        # (the README's own example of the refusal excepted)
        for name in re.findall(r"\bAUTHORITY_[A-Z][A-Z_]*[A-Z]\b(?! is not a)", path.read_text())
        if name not in known and path != Path(__file__)
    }
    assert stray == set()
