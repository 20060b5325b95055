"""The slow-query and leak scenarios of ``tests/support/off_hub.py`` under gevent.

Run by ``tests/unit/web/test_off_hub.py`` in a fresh interpreter: patching comes
first, as in every entry point; the app is served by gevent's WSGIServer in
this process.  Prints one JSON line with both scenarios' results.
"""

from gevent import monkey

monkey.patch_all()

import gc  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import typing as t  # noqa: E402
from collections.abc import Callable  # noqa: E402

import gevent  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402
from greenlet import greenlet  # noqa: E402

from realtime_flask.web.app import create_app  # noqa: E402
from tests.support import off_hub  # noqa: E402


class Job:
    def __init__(self, fn: Callable[[], object]) -> None:
        self.greenlet = gevent.spawn(fn)

    def done(self) -> bool:
        return bool(self.greenlet.ready())

    def result(self) -> t.Any:
        return self.greenlet.get(timeout=off_hub.WAIT)


def greenlets_alive() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, greenlet) and not o.dead)


def main(data_dir: str) -> None:
    off_hub.seed(data_dir, 3000)
    slow = off_hub.SlowStatement(
        monkey.get_original("time", "sleep"), monkey.get_original("threading", "get_ident")
    )
    slow.install()
    app = create_app(off_hub.config(data_dir))
    server = WSGIServer(("127.0.0.1", 0), app, log=None)
    server.start()
    port = server.server_port
    result: dict[str, object] = {"slow": off_hub.slow_query_scenario(port, slow, Job)}
    result["greenlets"] = off_hub.leak_scenario(port, greenlets_alive)
    result["threads"] = off_hub.leak_scenario(port, off_hub.threads_alive)
    server.stop(timeout=5)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
