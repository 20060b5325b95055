"""The embedded record store: SQLite collections, the records/auth REST subset's logic.

The only code that imports ``sqlite3``.  It publishes committed changes
through a callable it is given; it never calls up into the web layer (no
Flask, werkzeug, gevent, redis or ``cluster`` import here).

``records.RecordStore`` orchestrates; each concern has its module:

- ``sql``: the database file, tables, columns, values in and out (the storage
  contract of ``core.rules.values``);
- ``policy``: the API rule of each action (list, view, create, update,
  delete), as SQL;
- ``validate``: a write's body checked and coerced into column values;
- ``present``: records as the API shows them (hidden fields, ``expand``,
  ``fields``);
- ``auth``: tokens (auth and file tokens) and password hashes;
- ``files``: record files on disk (PocketBase's names and layout), every disk
  operation off the gevent hub;
- ``visibility``: the realtime ``Visibility`` applying the same rules and
  presentation to each subscriber;
- ``connections``: statements off the gevent hub, readers and one writer
  (not used by ``RecordStore`` yet: it still runs its statements on one
  connection under one lock).
"""

from __future__ import annotations
