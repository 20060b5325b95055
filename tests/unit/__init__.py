"""Tests of one package at a time (real SQLite, real Redis where the package is the Redis edge)."""
