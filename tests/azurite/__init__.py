"""Tests that need Azurite (started once per session by conftest.py)."""
