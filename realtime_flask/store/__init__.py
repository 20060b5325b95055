"""The embedded record store: SQLite collections, the records/auth REST subset's logic.

The only code that imports ``sqlite3``.  It publishes committed changes
through a callable it is given; it never calls up into the web layer.
"""

from __future__ import annotations
