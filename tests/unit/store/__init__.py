"""Tests of realtime_flask.store."""
