"""The ``authority`` command (README, "Command line"): serve, set up, migrate, and manage
keys, users, clients and sessions; one module per command group.

Every command takes ``--json`` and then prints one JSON document; errors print one
line on stderr (and ``{"error": ...}`` with ``--json``) and exit non-zero.
"""

from __future__ import annotations

try:
    import click
    import rich  # noqa: F401 (checked here: every command prints with it)
except ImportError as missing:  # the base install is only the verifier library
    raise SystemExit(
        f"error: the authority server is not installed ({missing.name} is missing): "
        "pip install 'authority[server]'"
    ) from None

from authority.cli.clients import clients_group
from authority.cli.common import CommandGroup
from authority.cli.events import events
from authority.cli.keys import keys
from authority.cli.serve import db, serve, setup
from authority.cli.tokens import tokens
from authority.cli.users import users
from authority.grants import GRANTS


@click.group(cls=CommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="authority")
def main() -> None:
    """Token authority: signed access tokens, rotating keys, refresh token families."""


for command in (serve, setup, db, keys, users, clients_group(sorted(GRANTS)), tokens, events):
    main.add_command(command)
