"""The authorization request carried through the login and consent pages: its
parameters, MACed with a key derived from the server's secret key and valid for a few
minutes, so that neither the login page's address nor the consent form can be edited
to send the user to another client or another redirect URI (the whole request is
checked again when it comes back, and an edited one is an error page, never a
redirect). ``login_after`` asks for a login newer than that time (``prompt=login``
and ``max_age``); ``user`` binds a consent form to the user it was shown to."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import msgspec

LIFETIME = 600  # s a user has to log in and consent
MAX_LENGTH = 8192
_encode = msgspec.json.Encoder().encode


class Carried(msgspec.Struct, frozen=True):
    params: dict[str, str]
    expires: float
    login_after: float | None = None
    user: int | None = None


@dataclass(frozen=True, slots=True)
class Continuations:
    key: bytes

    @classmethod
    def for_secret(cls, secret_key: bytes) -> Continuations:
        return cls(hmac.new(secret_key, b"authority authorization request v1", "sha256").digest())

    def _mac(self, payload: bytes) -> str:
        digest = hmac.new(self.key, payload, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def seal(self, carried: Carried) -> str:
        payload = base64.urlsafe_b64encode(_encode(carried)).rstrip(b"=")
        return f"{payload.decode()}.{self._mac(payload)}"

    def open(self, token: str, now: float) -> Carried | None:
        """The request sealed in ``token``, if we sealed it and it has not expired."""
        if len(token) > MAX_LENGTH or token.count(".") != 1:
            return None
        payload, mac = token.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload.encode()).encode()):
            return None
        try:
            raw: Any = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            carried = msgspec.json.decode(raw, type=Carried)
        except (ValueError, msgspec.DecodeError):
            return None
        return carried if carried.expires > now else None


def carry(params: dict[str, str], now: float, **extra: Any) -> Carried:
    return Carried(params, now + LIFETIME, **extra)
