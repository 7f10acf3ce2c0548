"""Token status list (draft-ietf-oauth-status-list): revocation that reaches verifiers
that check tokens offline. ``store`` holds the truth in the database, ``indexes``
hands out each replica's indexes, ``publisher`` serves the signed list from memory."""
