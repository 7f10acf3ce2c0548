"""Users: creation, lookup by name or email (case-insensitive), listing, passwords,
disabling and enabling."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from authority.storage.tables import User

MAX_USERNAME = 150
MAX_EMAIL = 320


class UserExists(ValueError):
    """The username or email is taken; ``field`` says which."""

    def __init__(self, field: str):
        super().__init__(f"a user with this {field} already exists")
        self.field = field


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: int
    username: str
    email: str
    password_hash: str
    is_active: bool
    date_joined: float


def fold(value: str) -> str:
    """The form that uniqueness and lookups compare: NFKC, case-folded."""
    return unicodedata.normalize("NFKC", value).casefold()


def _record(row: Any) -> UserRecord:
    return UserRecord(
        row.id, row.username, row.email, row.password_hash, row.is_active, row.date_joined
    )


def create_user(
    conn: Connection, *, username: str, email: str, password_hash: str, now: float
) -> UserRecord:
    taken = taken_field(conn, username, email)
    if taken is not None:
        raise UserExists(taken)
    try:
        with conn.begin_nested():
            user_id = conn.execute(
                insert(User)
                .values(
                    username=username,
                    username_key=fold(username),
                    email=email,
                    email_key=fold(email),
                    password_hash=password_hash,
                    is_active=True,
                    date_joined=now,
                    password_changed_at=now,
                )
                .returning(User.id)
            ).scalar_one()
    except IntegrityError:
        raise UserExists("username or email") from None
    return UserRecord(user_id, username, email, password_hash, True, now)


def taken_field(conn: Connection, username: str, email: str) -> str | None:
    """Which of ``username`` and ``email`` another user already has, if any."""
    if "\x00" in username + email:  # PostgreSQL text cannot hold NUL; no name has one
        return None
    taken = conn.execute(
        select(User.username_key, User.email_key).where(
            or_(User.username_key == fold(username), User.email_key == fold(email))
        )
    ).first()
    if taken is None:
        return None
    return "username" if taken.username_key == fold(username) else "email"


def find_user(conn: Connection, login: str) -> UserRecord | None:
    """By username, or by email when ``login`` contains ``@``."""
    if "\x00" in login:  # PostgreSQL text cannot hold NUL; no name has one
        return None
    column = User.email_key if "@" in login else User.username_key
    row = conn.execute(select(User).where(column == fold(login))).first()
    return _record(row) if row is not None else None


def get_user(conn: Connection, user_id: int) -> UserRecord | None:
    row = conn.execute(select(User).where(User.id == user_id)).first()
    return _record(row) if row is not None else None


def list_users(conn: Connection) -> list[UserRecord]:
    return [_record(row) for row in conn.execute(select(User).order_by(User.id))]


def set_password_hash(conn: Connection, user_id: int, password_hash: str) -> None:
    """Replace a hash made with old parameters (the password itself is unchanged)."""
    conn.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))


def replace_password(
    conn: Connection, user_id: int, password_hash: str, now: float, expected: str | None = None
) -> bool:
    """A new password; with ``expected``, only while the stored hash is still that one
    (a compare-and-set: of two changes from the same old password, one wins)."""
    which = [User.id == user_id]
    if expected is not None:
        which.append(User.password_hash == expected)
    changed = conn.execute(
        update(User).where(*which).values(password_hash=password_hash, password_changed_at=now)
    )
    return changed.rowcount == 1


def set_active(conn: Connection, user_id: int, active: bool) -> bool:
    """Whether this changed anything (False when the user already was so)."""
    changed = conn.execute(
        update(User).where(User.id == user_id, User.is_active != active).values(is_active=active)
    )
    return changed.rowcount == 1
