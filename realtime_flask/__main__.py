from __future__ import annotations

import sys

from realtime_flask.cli import main

sys.exit(main())
