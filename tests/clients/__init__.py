"""Helpers that drive real mail and chat clients from tests."""
