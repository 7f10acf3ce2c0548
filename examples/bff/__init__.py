"""A back-end-for-frontend: the browser holds only a session cookie, the tokens stay in
Redis on the server (see README.md)."""
