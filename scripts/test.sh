#!/usr/bin/env bash
# Install what the tests need and run the whole suite: lint, types, tests.
# PostgreSQL and Redis are installed with apt when missing, started as throwaway
# instances on free loopback ports under a temp dir, and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '\n== %s\n' "$*"; }

need_apt=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
[ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || need_apt+=(postgresql)
command -v redis-server >/dev/null || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
fi

log "python environment"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"

TMP=$(mktemp -d /tmp/ctxgate-test.XXXXXX)
chmod 755 "$TMP"
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
PG_PORT=$(free_port)
REDIS_PORT=$(free_port)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cleanup() {
  [ -f "$TMP/redis.pid" ] && kill "$(cat "$TMP/redis.pid")" 2>/dev/null || true
  [ -d "$TMP/pg" ] && as_pg "$pg_bin/pg_ctl" -D "$TMP/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

log "start PostgreSQL on 127.0.0.1:$PG_PORT and Redis on 127.0.0.1:$REDIS_PORT"
mkdir -p "$TMP/pg" "$TMP/pgsock"
[ "$(id -u)" = 0 ] && chown postgres "$TMP/pg" "$TMP/pgsock"
as_pg "$pg_bin/initdb" -D "$TMP/pg" -U postgres -A trust >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$TMP/pg" -l "$TMP/pg/log" -w \
  -o "-p $PG_PORT -k $TMP/pgsock -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize yes --pidfile "$TMP/redis.pid" --dir "$TMP" --logfile "$TMP/redis.log"
export CTXGATE_TEST_POSTGRES_DSN="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"
export CTXGATE_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
for _ in $(seq 50); do
  .venv/bin/python -c "import redis,sys; redis.Redis.from_url('$CTXGATE_TEST_REDIS_URL').ping()" 2>/dev/null && break
  sleep 0.1
done

log "ruff"
.venv/bin/ruff check src tests bench
log "mypy"
.venv/bin/mypy
log "tests mirror the source"
.venv/bin/python scripts/check_test_layout.py
log "pytest"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "no test ran: failing" >&2
  exit 1
fi
exit "$rc"
