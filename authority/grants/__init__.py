"""Grant types of the token endpoint."""
