"""Tests of realtime_flask.core."""
