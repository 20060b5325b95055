"""Entry-point glue for servers: gevent's ``WSGIServer`` (``serve``) and gunicorn's hooks."""

from __future__ import annotations
