"""Settings: one frozen object built from ``AUTHORITY_*`` variables (README, "Configuration").

Nothing reads the environment at import time; ``Settings.from_env`` is called by the
command line and the result is passed to ``create_app(settings)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

PREFIX = "AUTHORITY_"
KEY_SIZES = (2048, 3072, 4096)
KEY_ALGORITHMS = ("RS256", "ES256", "EdDSA")  # authority.verifier.algorithms.ALGORITHMS
MIN_SECRET_KEY = 32
# Production refuses a shorter KEY_PASSPHRASE (README, "Signing keys"): the PKCS#8
# encryption's key derivation slows guessing down, it cannot make a short passphrase
# strong. 16 characters of a password manager's output are far beyond guessing.
MIN_KEY_PASSPHRASE = 16


class SettingsError(ValueError):
    """Settings the authority cannot use: one line per problem in ``problems``."""

    def __init__(self, *problems: str):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


STATUS_BLOCK_SIZE = 1024  # status list indexes a replica leases at once (authority.status)


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    issuer: str = ""
    database_url: str = "sqlite+aiosqlite:///var/authority.db"
    sqlite_full_sync: bool = False  # PRAGMA synchronous=FULL, not NORMAL (README, "Durability")
    keystore: str = "file"
    keys_dir: Path = Path("keys")
    key_passphrase: str | None = field(default=None, repr=False)
    # Keys the client-secret hashes and the CSRF tokens. Required in production;
    # elsewhere, when unset, a random one is kept in ``secret_key_file``.
    secret_key: str | None = field(default=None, repr=False)
    secret_key_file: Path = Path("var/secret_key")
    key_size: int = 2048
    key_algorithm: str = "RS256"  # of new signing keys (README, "Signing algorithms")
    dpop_nonce: bool = False  # DPoP proofs must carry the server's nonce (RFC 9449 8)
    env: str = "development"
    audience: str = "default"
    access_ttl: int = 900
    refresh_ttl: int = 604800
    refresh_family_ttl: int = 2592000
    refresh_reuse_grace: int = 10
    key_rotation_interval: int = 2592000
    key_publish_delay: int = 600
    jwks_max_age: int = 300
    leeway: int = 30
    cors_origins: tuple[str, ...] = ()
    cookie_secure: bool | None = None
    # SameSite of the /auth cookies: lax, strict, or none (cross-site; needs Secure).
    cookie_samesite: str = "lax"
    # Failed logins allowed per account and per client address within the window;
    # past either limit, /auth/login answers 429 until the window ends.
    login_max_failures_account: int = 5
    login_max_failures_address: int = 20
    login_failure_window: int = 300
    # Proxies (addresses or CIDR ranges) whose X-Forwarded-For names the client: a
    # reverse proxy, or a back-end-for-frontend that forwards its users' addresses.
    trusted_proxies: tuple[str, ...] = ()
    # How often a running server looks for key store changes made elsewhere
    # (the CLI or another replica) and runs due lifecycle steps.
    keystore_poll_interval: float = 2.0
    maintenance_interval: float = 30.0
    # How long audit events are kept (s), and whether each request is an access-log line.
    audit_retention: int = 7776000
    access_log: bool = True
    # Token status list: how long verifiers may cache it (s), how many indexes it rings.
    status_list_ttl: int = 60
    status_list_size: int = 2097152
    auth_code_ttl: int = 60  # lifetime of an authorization code (s)

    def __post_init__(self) -> None:
        if not self.issuer:
            object.__setattr__(self, "issuer", f"http://{self.host}:{self.port}")
        object.__setattr__(self, "issuer", self.issuer.rstrip("/"))
        if self.cookie_secure is None:
            object.__setattr__(self, "cookie_secure", self.is_production)
        problems = [*self._problems(), *self._cors_problems()]
        url_problem = database_url_problem(self.database_url)
        if url_problem:
            problems.append(url_problem)
        if problems:
            raise SettingsError(*problems)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def secure_cookies(self) -> bool:
        return bool(self.cookie_secure)

    @property
    def retired_key_lifetime(self) -> int:
        """Seconds a retired key stays published after it stopped signing."""
        return self.access_ttl + self.jwks_max_age + self.leeway

    def _problems(self) -> list[str]:
        problems: list[str] = []
        if self.cookie_samesite not in ("lax", "strict", "none"):
            problems.append(
                "AUTHORITY_COOKIE_SAMESITE must be lax, strict or none, "
                f"not {self.cookie_samesite!r}"
            )
        if self.cookie_samesite == "none" and not self.cookie_secure:
            problems.append("AUTHORITY_COOKIE_SAMESITE=none needs AUTHORITY_COOKIE_SECURE=true")
        if self.env not in ("development", "production", "test"):
            problems.append(
                f"AUTHORITY_ENV must be development, production or test, not {self.env!r}"
            )
        if self.keystore not in ("file", "database"):
            problems.append(f"AUTHORITY_KEYSTORE must be file or database, not {self.keystore!r}")
        if self.key_size not in KEY_SIZES:
            problems.append(f"AUTHORITY_KEY_SIZE must be one of {KEY_SIZES}, not {self.key_size}")
        if self.key_algorithm not in KEY_ALGORITHMS:
            problems.append(
                f"AUTHORITY_KEY_ALGORITHM must be RS256, ES256 or EdDSA, not {self.key_algorithm!r}"
            )
        if not 0 < self.port < 65536:
            problems.append(f"AUTHORITY_PORT must be between 1 and 65535, not {self.port}")
        positive = (  # noqa: SIM905 (a list, one name a line, is 9 lines longer)
            "workers access_ttl refresh_ttl refresh_family_ttl "
            "key_rotation_interval keystore_poll_interval maintenance_interval "
            "audit_retention status_list_ttl status_list_size auth_code_ttl "
            "login_max_failures_account login_max_failures_address "
            "login_failure_window"
        ).split()
        for name in positive:
            if getattr(self, name) <= 0:
                problems.append(f"AUTHORITY_{name.upper()} must be positive")
        for name in ("refresh_reuse_grace", "key_publish_delay", "jwks_max_age", "leeway"):
            if getattr(self, name) < 0:
                problems.append(f"AUTHORITY_{name.upper()} must not be negative")
        if self.status_list_size % STATUS_BLOCK_SIZE:
            problems.append(f"AUTHORITY_STATUS_LIST_SIZE must be a multiple of {STATUS_BLOCK_SIZE}")
        if not self.issuer.startswith(("http://", "https://")):
            problems.append(f"AUTHORITY_ISSUER must be an http(s) URL, not {self.issuer!r}")
        if self.key_passphrase == "":
            problems.append("AUTHORITY_KEY_PASSPHRASE is set but empty")
        if self.secret_key is not None and len(self.secret_key) < MIN_SECRET_KEY:
            problems.append(f"AUTHORITY_SECRET_KEY must be at least {MIN_SECRET_KEY} characters")
        return problems

    def _cors_problems(self) -> list[str]:
        problems: list[str] = []
        for origin in self.cors_origins:
            problem = cors_origin_problem(origin, loopback_http=not self.is_production)
            if problem:
                problems.append(f"AUTHORITY_CORS_ORIGINS: {origin!r} {problem}")
        return problems

    def secret_key_bytes(self) -> bytes:
        """``SECRET_KEY``, or outside production the key kept in ``secret_key_file``
        (created at first use, mode 0600, by whichever process gets there first)."""
        if self.secret_key:
            return self.secret_key.encode()
        if self.is_production:
            raise SettingsError("AUTHORITY_SECRET_KEY is required in production")
        path = self.secret_key_file
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError as exc:
            raise SettingsError(f"cannot create {path}: {exc.strerror}") from None
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48))
                out.flush()
                os.fsync(out.fileno())
        value = path.read_text().strip()
        if len(value) < MIN_SECRET_KEY:
            raise SettingsError(
                f"{path} holds a secret key shorter than {MIN_SECRET_KEY} characters"
            )
        return value.encode()

    def production_problems(self) -> list[str]:
        """Insecure settings, one line each; a production server refuses to start on any."""
        if not self.is_production:
            return []
        problems: list[str] = []
        if not self.key_passphrase:
            problems.append(
                "AUTHORITY_KEY_PASSPHRASE is required in production "
                "(private keys must be encrypted at rest)"
            )
        elif len(self.key_passphrase) < MIN_KEY_PASSPHRASE:
            problems.append(
                f"AUTHORITY_KEY_PASSPHRASE must be at least {MIN_KEY_PASSPHRASE} characters "
                "in production"
            )
        if not self.secret_key:
            problems.append(
                "AUTHORITY_SECRET_KEY is required in production "
                "(the same random value on every replica)"
            )
        if not self.secure_cookies:
            problems.append("AUTHORITY_COOKIE_SECURE must be true in production")
        if not self.issuer.startswith("https://"):
            problems.append(f"AUTHORITY_ISSUER must be https in production, not {self.issuer}")
        if self.database_url.startswith("sqlite") and self.workers > 1:
            problems.append(
                "SQLite cannot be shared by several workers in production; "
                "use AUTHORITY_DATABASE_URL=postgresql+asyncpg://..."
            )
        return problems

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        dotenv: Path | None = Path(".env"),
        **overrides: Any,
    ) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``) over an optional
        ``.env``. Every problem is found before any is reported: a name that is not a
        setting (``unknown_names``), then each value that cannot be read."""
        env = os.environ if environ is None else environ
        from_file: dict[str, str | None] = {}
        if dotenv is not None and dotenv.is_file():
            try:
                from_file = dict(dotenv_values(dotenv))
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"cannot read {dotenv}: {exc}") from None
        problems = unknown_names(env, from_file, dotenv or Path(".env"))
        values = {k: v for k, v in from_file.items() if v is not None} | dict(env)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = values.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            try:
                kwargs[f.name] = _parse(f.name, raw, f.type)
            except SettingsError as exc:
                problems.extend(exc.problems)
        kwargs.update(overrides)
        try:
            settings = cls(**kwargs)
        except SettingsError as exc:
            problems.extend(exc.problems)
        if problems:
            raise SettingsError(*problems)
        return settings

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def setting_names() -> tuple[str, ...]:
    """Every variable the authority reads: ``AUTHORITY_`` and a field's name."""
    return tuple(PREFIX + f.name.upper() for f in dataclasses.fields(Settings))


def unknown_names(
    environ: Mapping[str, str], dotenv: Mapping[str, str | None], dotenv_path: Path
) -> list[str]:
    """One line per name that looks meant for the authority but is none of its
    settings, naming the closest real one: in the environment, any name with the prefix
    in any case; in ``.env``, also a name without the prefix that is close to a
    setting's (the file may hold other programs' variables too, which are left alone)."""
    known = setting_names()
    problems = []
    for where, names in (("", environ), (f"{dotenv_path}: ", dotenv)):
        for name in names:
            if name in known:
                continue
            upper = name.upper()
            if upper.startswith(PREFIX):
                guess = _closest(upper.removeprefix(PREFIX), cutoff=0.6)
            elif where:
                guess = _closest(upper, cutoff=0.85)
                if guess is None:
                    continue
            else:
                continue
            hint = f"; did you mean {guess}?" if guess else " (see README, Configuration)"
            problems.append(f"{where}{name} is not a setting{hint}")
    return problems


def _closest(name: str, cutoff: float) -> str | None:
    """The setting whose name (without the prefix) is most like ``name``, if any is."""
    names = [f.name.upper() for f in dataclasses.fields(Settings)]
    found = difflib.get_close_matches(name, names, n=1, cutoff=cutoff)
    return PREFIX + found[0] if found else None


def database_url_problem(url: str) -> str | None:
    """Why ``DATABASE_URL`` is unusable, in one line with the URL to use instead, or
    None. The authority runs on SQLite through aiosqlite and PostgreSQL through asyncpg
    only; the password of a URL is never repeated."""
    var = PREFIX + "DATABASE_URL"
    example = "sqlite+aiosqlite:///var/authority.db or postgresql+asyncpg://user@host/db"
    if not url.strip():
        return f"{var} is empty (use {example})"
    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"{var} is not a database URL (use {example})"
    backend = parsed.drivername.partition("+")[0]
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            return (
                f"{var} {_shown(parsed)} is an in-memory database, lost with each "
                "connection: name a file, e.g. sqlite+aiosqlite:///var/authority.db"
            )
        if parsed.drivername != "sqlite+aiosqlite":
            return f"{var} {_shown(parsed)} needs the async driver: {_shown(parsed, 'aiosqlite')}"
        return None
    if backend in ("postgres", "postgresql"):
        if parsed.drivername != "postgresql+asyncpg":
            return f"{var} {_shown(parsed)} needs the async driver: {_shown(parsed, 'asyncpg')}"
        return None
    return f"{var}: {backend} is not supported (use {example})"


def _shown(url: URL, driver: str | None = None) -> str:
    if driver is not None:
        backend = "sqlite" if driver == "aiosqlite" else "postgresql"
        url = url.set(drivername=f"{backend}+{driver}")
    return url.render_as_string(hide_password=True)


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def cors_origin_problem(origin: str, *, loopback_http: bool) -> str | None:
    """Why ``origin`` may not be a CORS origin, or None. Each one may send credentialed
    requests, so only exact origins (RFC 6454 section 7: ``scheme://host[:port]``) are
    allowed, ``https`` unless ``loopback_http`` allows ``http://`` on a loopback host
    (development and tests). ``*`` and ``null`` would let any page, or a sandboxed one,
    read the answers."""
    if origin in ("*", "null"):
        return "would let any site send requests with the user's cookies"
    if "*" in origin:
        return "is a pattern; list each origin exactly"
    parts = urlsplit(origin)
    try:
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        return "has an invalid port"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be scheme://host[:port] with https"
    if parts.username is not None or parts.password is not None:
        return "must not hold credentials"
    if origin != f"{parts.scheme}://{parts.netloc}" or origin != origin.lower():
        return "must be scheme://host[:port] in lowercase, without path, query or trailing /"
    if parts.scheme == "http" and not (loopback_http and parts.hostname in LOOPBACK_HOSTS):
        return "must use https (http only for a loopback host outside production)"
    return None


def _parse(name: str, raw: str, annotation: object) -> Any:
    kind = str(annotation)
    var = PREFIX + name.upper()
    if kind in ("int", "float"):
        try:
            return int(raw) if kind == "int" else float(raw)
        except ValueError:
            raise SettingsError(f"{var} must be a number, not {raw!r}") from None
    if kind in ("bool", "bool | None"):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{var} must be true or false, not {raw!r}")
    if kind == "Path":
        return Path(raw)
    if kind == "tuple[str, ...]":
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw.strip()
