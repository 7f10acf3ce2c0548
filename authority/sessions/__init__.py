"""Sessions: refresh token families and the session service (log in, refresh, issue)."""
