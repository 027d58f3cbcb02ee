"""Helpers for seglab's own tests (test data builders); not needed to use the package."""
