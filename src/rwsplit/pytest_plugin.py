"""pytest fixtures for users (work in progress)."""
