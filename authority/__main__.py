"""``python -m authority`` runs the command line."""

from authority.cli.main import main

main()
