"""Redirect URIs of clients (RFC 6749 section 3.1.2, RFC 9700 section 4.1.3, RFC 8252).

Registered URIs are exact strings without a fragment: ``https://``, ``http://`` only on
a loopback host (RFC 8252 section 7.3), or a private-use scheme of a native app (RFC
8252 section 7.1: a reverse domain name, so it holds a dot). A presented URI matches a
registered one when the strings are equal, except that a loopback IP literal
(``http://127.0.0.1`` or ``http://[::1]``) matches on any port: a native app listens
on whatever port the system gives it (RFC 8252 section 7.3)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MAX_URI = 2000
_PRINTABLE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space (RFC 3986 section 2)
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_LOOPBACK_HTTP_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# The loopback IP literals of RFC 8252 section 7.3, split into host, port and the rest.
_LOOPBACK_IP = re.compile(r"http://(127\.0\.0\.1|\[::1\])(?::([0-9]{1,5}))?(/[^#]*)?")


def redirect_uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be registered as a redirect URI, or None."""
    if not uri or len(uri) > MAX_URI or not _PRINTABLE.fullmatch(uri):
        return f"a redirect URI is 1 to {MAX_URI} printable characters without spaces"
    if "#" in uri:
        return f"redirect URI {uri!r} has a fragment (RFC 6749 section 3.1.2)"
    scheme, colon, _ = uri.partition(":")
    if not colon or not _SCHEME.fullmatch(scheme):
        return f"redirect URI {uri!r} is not an absolute URI with a lower-case scheme"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return f"redirect URI {uri!r} is malformed"
    if scheme in ("https", "http"):
        if not parts.hostname or parts.username is not None or parts.password is not None:
            return f"redirect URI {uri!r} needs a host and no user information"
        if scheme == "http" and parts.hostname not in _LOOPBACK_HTTP_HOSTS:
            return f"redirect URI {uri!r}: http:// only on a loopback host (RFC 8252)"
        return None
    if "." not in scheme:
        return (
            f"redirect URI {uri!r}: a native app's scheme is a reverse domain name "
            "such as com.example.app (RFC 8252 section 7.1)"
        )
    return None


def redirect_matches(registered: str, presented: str) -> bool:
    """Whether ``presented`` is the registered URI, or differs from a loopback IP
    literal one only by its port."""
    if presented == registered:
        return True
    mine, theirs = _LOOPBACK_IP.fullmatch(registered), _LOOPBACK_IP.fullmatch(presented)
    if mine is None or theirs is None:
        return False
    port = theirs.group(2)
    if port is not None and not 0 < int(port) < 65536:
        return False
    return (mine.group(1), mine.group(3) or "") == (theirs.group(1), theirs.group(3) or "")


def find_redirect(registered: tuple[str, ...], presented: str | None) -> str | None:
    """The redirect URI to use: ``presented`` when it matches a registered one, the
    only registered one when none was presented, else None (never redirect there)."""
    if presented is None:
        return registered[0] if len(registered) == 1 else None
    if len(presented) > MAX_URI:
        return None
    return presented if any(redirect_matches(r, presented) for r in registered) else None
