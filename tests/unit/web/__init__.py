"""Tests of realtime_flask.web through Flask's test client."""
