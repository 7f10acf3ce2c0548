"""The BFF's settings: one frozen object read from ``BFF_*`` variables by ``from_env``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class SettingsError(ValueError):
    """A variable is missing or has a value the BFF cannot use; the message is one line."""


def _flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, not {value!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    authority_url: str
    api_url: str
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Secure by default: only a local http:// setup should turn it off.
    cookie_secure: bool = True
    cookie_name: str = "bff_session"
    # Refresh this long before the access token expires (at most a quarter of its life).
    refresh_skew: float = 30.0
    http_timeout: float = 5.0
    host: str = "127.0.0.1"
    port: int = 8002
    # Proxies (IPs or CIDRs) whose X-Forwarded-For names the browser; none by default,
    # so that a browser on this host cannot name an address of its choice.
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("authority_url", "api_url"):
            value = getattr(self, name)
            if not value.startswith(("http://", "https://")):
                raise SettingsError(f"BFF_{name.upper()} must be an http(s) URL, not {value!r}")
            object.__setattr__(self, name, value.rstrip("/"))
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(f"BFF_REDIS_URL must be a redis:// URL, not {self.redis_url!r}")
        if self.refresh_skew < 0 or self.http_timeout <= 0:
            raise SettingsError("BFF_REFRESH_SKEW must be >= 0 and BFF_HTTP_TIMEOUT > 0")

    @property
    def session_cookie(self) -> str:
        """The session cookie's name: ``__Host-`` prefixed when Secure, so that no
        subdomain or http:// page can set or shadow it (RFC 6265bis section 4.1.3.2)."""
        return f"__Host-{self.cookie_name}" if self.cookie_secure else self.cookie_name

    @property
    def lock_timeout(self) -> float:
        """How long a refresh lock lives if its holder dies: longer than any refresh."""
        return 2 * self.http_timeout + 5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        missing = [name for name in ("BFF_AUTHORITY_URL", "BFF_API_URL") if not env.get(name)]
        if missing:
            raise SettingsError(f"set {' and '.join(missing)}")
        values: dict[str, object] = {
            "authority_url": env["BFF_AUTHORITY_URL"],
            "api_url": env["BFF_API_URL"],
        }
        if "BFF_REDIS_URL" in env:
            values["redis_url"] = env["BFF_REDIS_URL"]
        if "BFF_COOKIE_SECURE" in env:
            values["cookie_secure"] = _flag("BFF_COOKIE_SECURE", env["BFF_COOKIE_SECURE"])
        try:
            for key, name, kind in (
                ("refresh_skew", "BFF_REFRESH_SKEW", float),
                ("http_timeout", "BFF_HTTP_TIMEOUT", float),
                ("port", "PORT", int),
            ):
                if name in env:
                    values[key] = kind(env[name])
        except ValueError as exc:
            raise SettingsError(f"not a number: {exc}") from None
        if env.get("BFF_TRUSTED_PROXIES", "").strip():
            values["trusted_proxies"] = tuple(
                p.strip() for p in env["BFF_TRUSTED_PROXIES"].split(",") if p.strip())
        if "HOST" in env:
            values["host"] = env["HOST"]
        return cls(**values)  # type: ignore[arg-type]
