"""The web layer: the app factory, /oauth, /auth, discovery, pages and HTTP helpers."""
