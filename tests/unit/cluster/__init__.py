"""Tests of realtime_flask.cluster against a real redis-server."""
