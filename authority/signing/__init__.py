"""Signing: the algorithms in use, keys and their lifecycle, key stores, token signing."""
