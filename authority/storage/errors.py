"""What the database layer says when the database is away or busy (a 503, or one line
at the command line), apart from ``Database`` so that code running its own statements
(``sessions.one_statement``) says the same without depending on it."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or is busy; callers answer 503 or exit with one line."""


def describe_db_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "database did not answer in time"
    orig = getattr(exc, "orig", None) or exc
    first_line = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    if "database is locked" in first_line:
        return "database is busy"
    return f"database unreachable: {first_line}"


def is_outage(exc: DBAPIError) -> bool:
    """Connection loss, lock timeouts and serialization failures, not programming errors."""
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return True
    name = type(exc.orig).__name__ if exc.orig is not None else ""
    return name in {
        "SerializationError",
        "DeadlockDetectedError",
        "LockNotAvailableError",
        "CannotConnectNowError",
        "ConnectionDoesNotExistError",
        "InterfaceError",
        "TooManyConnectionsError",
        "AdminShutdownError",
        "QueryCanceledError",
    }
