"""Sign-up rules (NIST SP 800-63B section 3.1.1.2): length, not a common password, not
the username or email, not only whitespace; no composition rules. Each problem names
its field.

A username may not mix scripts the way a spoof does (UTS #39 section 5.2, "Highly
Restrictive"): one script, or Latin with the Han-based sets of Japanese, Chinese or
Korean. So ``dave`` spelt with a Cyrillic ``a`` (U+0430) cannot sit next to ``dave``. Usernames
written wholly in another script that happen to look Latin (whole-script confusables)
are not caught: that needs stored UTS #39 skeletons."""

from __future__ import annotations

import functools
import gzip
import re
from importlib import resources

from confusable_homoglyphs import categories

from authority.accounts.passwords import MAX_LENGTH, MIN_LENGTH, normalize
from authority.accounts.users import MAX_EMAIL, MAX_USERNAME, fold

# Letters, digits and . + - _ (no "@": a login containing one is looked up as an email).
USERNAME = re.compile(r"[\w.+-]+")
# Scripts a username may combine (UTS #39 section 5.2); Common and Inherited (digits,
# punctuation, combining marks) go with any.
NEUTRAL = frozenset({"COMMON", "INHERITED"})
SCRIPT_SETS = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
EMAIL = re.compile(r"[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f.]+")


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (see ``authority/accounts/data/README.md``)."""
    data = (
        resources.files("authority.accounts").joinpath("data/common-passwords.txt.gz").read_bytes()
    )
    return frozenset(gzip.decompress(data).decode().split("\n")) - {""}


def username_problem(username: str) -> str | None:
    if not username:
        return "a username is required"
    if len(username) > MAX_USERNAME:
        return f"a username has at most {MAX_USERNAME} characters"
    if not USERNAME.fullmatch(username):
        return "a username may contain only letters, digits and . + - _"
    if not single_script(username):
        return "a username may not mix letters of different scripts"
    return None


def single_script(name: str) -> bool:
    """Whether ``name`` keeps to one script, or to one of the sets that go together."""
    scripts = {categories.alias(ch) for ch in name} - NEUTRAL
    return len(scripts) <= 1 or any(scripts <= allowed for allowed in SCRIPT_SETS)


def email_problem(email: str) -> str | None:
    if not email:
        return "an email address is required"
    if len(email) > MAX_EMAIL:
        return f"an email address has at most {MAX_EMAIL} characters"
    if not EMAIL.fullmatch(email):
        return "this is not a valid email address"
    return None


def password_problem(password: str, username: str, email: str) -> str | None:
    """Judged on the password as it is hashed (``passwords.normalize``)."""
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    password = normalize(password)
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password has at most {MAX_LENGTH} characters"
    if not password.strip():
        return "a password cannot be only spaces"
    folded = fold(password)
    if folded in common_passwords():
        return "this password is too common"
    if folded in (fold(username), fold(email), fold(email.split("@")[0])):
        return "the password must not be your username or email address"
    return None


def registration_problems(username: str, email: str, password: str) -> dict[str, str]:
    """Every problem of a sign-up, by field; empty when it may go ahead."""
    problems = {
        "username": username_problem(username),
        "email": email_problem(email),
        "password": password_problem(password, username, email),
    }
    return {field: problem for field, problem in problems.items() if problem}
