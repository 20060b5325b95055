"""Shared test helpers: real servers, Redis, venvs, clocks (imported, never collected)."""
