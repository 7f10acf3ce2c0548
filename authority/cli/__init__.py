"""The ``authority`` command, one module per command group."""
