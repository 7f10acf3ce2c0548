"""A standalone OAuth2-style token authority."""

__version__ = "0.1.0"
