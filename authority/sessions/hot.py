"""Statements of every refresh-token rotation, compiled once for SQLite's own driver
(README, "Benchmarks"): the rotation's hot path, shared by ``families``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.expression import Executable

QMARK = sqlite.dialect(paramstyle="qmark")


@dataclass(frozen=True)
class Hot:
    """A statement of every rotation, compiled once, also to plain SQLite SQL: on
    SQLite it runs on the driver's own cursor, skipping SQLAlchemy's per-statement
    work, which costs more than SQLite itself. One definition serves both."""

    statement: Executable
    sql: str
    order: tuple[str, ...]

    @classmethod
    def of(cls, statement: Executable) -> Hot:
        compiled = statement.compile(dialect=QMARK)  # type: ignore[attr-defined]
        return cls(statement, str(compiled), tuple(compiled.positiontup or ()))

    def execute(self, conn: Connection, **params: Any) -> Any:
        """A cursor (SQLite) or a result (elsewhere): both have fetchone and rowcount."""
        if conn.dialect.name == "sqlite":
            # The same transaction: Database.write began it on this very connection.
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            return cursor.execute(self.sql, [params[name] for name in self.order])
        return conn.execute(self.statement, params)
