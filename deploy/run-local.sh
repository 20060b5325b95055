#!/bin/sh
# The documented deployment (docs/deployment.md) on this machine, on loopback, the way
# tests/e2e/test_nginx.py runs it: one Redis, two `gunicorn -k gevent -w 2 wsgi:app` masters
# (the repository's gunicorn.conf.py) sharing it and one data folder, and nginx running
# deploy/nginx.conf in front of them. Ctrl-C (or SIGTERM) stops all of it.
#
#   deploy/run-local.sh [FOLDER]      FOLDER holds data/, logs/ and nginx.conf
#                                     (default: a new folder under /tmp)
#
# Needs: redis-server and nginx (Debian: apt-get install redis-server nginx), and the
# repository's venv with the Redis extra: python3 -m venv .venv && .venv/bin/pip install -e '.[redis]'
# Environment (all optional): PYTHON (default .venv/bin/python), NGINX_PORT (8080),
# MASTER_1_PORT (8001), MASTER_2_PORT (8002), REDIS_PORT (6390), REALTIME_SCHEMA,
# SU_EMAIL and SU_PASSWORD (create or update that superuser first).
set -eu

cd "$(dirname "$0")/.."
RUN=${1:-$(mktemp -d /tmp/realtime-local.XXXXXX)}
mkdir -p "$RUN/data" "$RUN/logs"
RUN=$(cd "$RUN" && pwd)
PYTHON=${PYTHON:-.venv/bin/python}
NGINX_PORT=${NGINX_PORT:-8080}
MASTER_1_PORT=${MASTER_1_PORT:-8001}
MASTER_2_PORT=${MASTER_2_PORT:-8002}
REDIS_PORT=${REDIS_PORT:-6390}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

PIDS=""
stop() {
  trap - EXIT INT TERM
  for pid in $PIDS; do kill -TERM "$pid" 2>/dev/null || :; done
  wait
}
trap stop EXIT
trap 'exit 130' INT TERM

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$RUN" --logfile "$RUN/logs/redis.log" &
PIDS="$PIDS $!"

# What every master gets: the shared Redis and data folder, and one trusted proxy (nginx).
export REALTIME_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export REALTIME_DATA_DIR="$RUN/data"
export REALTIME_TRUSTED_PROXIES=1

if [ -n "${SU_EMAIL:-}" ] && [ -n "${SU_PASSWORD:-}" ]; then
  "$PYTHON" -m realtime_flask superuser upsert "$SU_EMAIL" "$SU_PASSWORD"
fi

for port in "$MASTER_1_PORT" "$MASTER_2_PORT"; do
  "$PYTHON" -m gunicorn -k gevent -w 2 -b "127.0.0.1:$port" wsgi:app \
    >"$RUN/logs/gunicorn-$port.log" 2>&1 &
  PIDS="$PIDS $!"
done

sed -e "s|{{LISTEN}}|127.0.0.1:$NGINX_PORT|" \
    -e "s|{{UPSTREAM_1}}|127.0.0.1:$MASTER_1_PORT|" \
    -e "s|{{UPSTREAM_2}}|127.0.0.1:$MASTER_2_PORT|" \
    -e "s|{{LOG_DIR}}|$RUN/logs|" \
    deploy/nginx.conf >"$RUN/nginx.conf"
"$NGINX" -p "$RUN" -c "$RUN/nginx.conf" -e "$RUN/logs/error.log" \
  -g "daemon off; pid $RUN/nginx.pid;" &
PIDS="$PIDS $!"

# Wait (at most 30 s) until /api/health answers 200 through nginx.
URL="http://127.0.0.1:$NGINX_PORT"
if ! "$PYTHON" - "$URL/api/health" <<'EOF'
import sys, time, urllib.request
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit(1)
EOF
then
  echo "not serving after 30 s; logs in $RUN/logs:" >&2
  tail -n 5 "$RUN"/logs/*.log >&2
  exit 1
fi

echo "serving on $URL (nginx -> 127.0.0.1:$MASTER_1_PORT, 127.0.0.1:$MASTER_2_PORT; Redis on" \
  "127.0.0.1:$REDIS_PORT); data and logs in $RUN; Ctrl-C stops"
wait
