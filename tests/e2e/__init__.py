"""End to end: real gunicorn gevent workers, real Redis, the real SDK, runtime-only venvs."""
