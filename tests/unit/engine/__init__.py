"""Tests of realtime_flask.engine."""
