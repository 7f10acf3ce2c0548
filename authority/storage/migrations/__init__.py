"""Alembic migrations shipped inside the package; ``authority db upgrade`` applies them."""
