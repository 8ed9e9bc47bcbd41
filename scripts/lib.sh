# Shared by quickstart.sh and test.sh: make sure a PostgreSQL server with pg_trgm
# is reachable, installing and starting it on Debian/Ubuntu when it is missing.
# Safe to run repeatedly. Exports DATABASE_URL (and QUARRY_READER_PASSWORD when
# the server needs passwords); settings generated here live in .quarry/env, which
# is git-ignored: no secret is ever committed.

QUARRY_STATE_DIR="${QUARRY_STATE_DIR:-$PWD/.quarry}"

log() { printf '==> [%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The CLI links PostgreSQL's own SQL parser (libpg_query, through the pg_query
# crate) for `quarry check`; its build generates bindings with libclang.
ensure_build_deps() {
    if ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1; then
        log "installing libclang-dev (Debian) for the SQL parser's build"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null 2>&1 || {
            as_root apt-get update -qq
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null
        }
    fi
}

pg_up() {
  psql "$1" -Atqc 'select 1' >/dev/null 2>&1
}

ensure_postgres() {
  mkdir -p "$QUARRY_STATE_DIR"
  # shellcheck disable=SC1091
  [ -f "$QUARRY_STATE_DIR/env" ] && . "$QUARRY_STATE_DIR/env"
  local admin="${QUARRY_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
  if ! command -v psql >/dev/null 2>&1 || ! ls /usr/share/postgresql/*/extension/pg_trgm.control >/dev/null 2>&1; then
    log "installing PostgreSQL and its contrib extensions (pg_trgm)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >/dev/null
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    log "starting PostgreSQL"
    local ver
    ver=$(ls /etc/postgresql | sort -V | tail -n 1)
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null \
      || as_root pg_ctlcluster "$ver" main start
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  if ! pg_up "$admin"; then
    # A default Debian install wants passwords over TCP: give the postgres role a
    # generated one, kept only in .quarry/env.
    log "configuring password access for the postgres role (stored in .quarry/env)"
    local pw
    pw=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
    as_root su postgres -c "psql -qc \"ALTER ROLE postgres PASSWORD '$pw'\"" >/dev/null
    admin="postgres://postgres:$pw@127.0.0.1:5432/postgres"
    {
      echo "export QUARRY_ADMIN_URL='$admin'"
      echo "export QUARRY_TEST_ADMIN_URL='$admin'"
      echo "export DATABASE_URL='postgres://postgres:$pw@127.0.0.1:5432/quarry'"
      echo "export QUARRY_READER_PASSWORD='$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')'"
      echo "export QUARRY_WRITER_PASSWORD='$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')'"
    } > "$QUARRY_STATE_DIR/env"
    chmod 600 "$QUARRY_STATE_DIR/env"
    # shellcheck disable=SC1091
    . "$QUARRY_STATE_DIR/env"
    pg_up "$admin" || { echo "error: cannot connect to PostgreSQL at 127.0.0.1:5432; set QUARRY_ADMIN_URL to a superuser URL" >&2; return 1; }
  fi
  export QUARRY_ADMIN_URL="$admin"
  export QUARRY_TEST_ADMIN_URL="${QUARRY_TEST_ADMIN_URL:-$admin}"
  export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/quarry}"
}

# ensure_database NAME: create the database when missing.
ensure_database() {
  local name="$1"
  if ! psql "$QUARRY_ADMIN_URL" -Atqc "select 1 from pg_database where datname = '$name'" | grep -q 1; then
    log "creating database $name"
    psql "$QUARRY_ADMIN_URL" -qc "CREATE DATABASE \"$name\""
  fi
}

# fixture_server TAG SCOPE [SERVE ARGS...]: a fresh database holding
# tests/fixtures/small.sql, a key with SCOPE (a comma-separated list) and a
# `quarry serve` on a free loopback port with a generous rate limit. Sets
# $addr, $key and $work; everything is removed when the calling script exits.
fixture_server() {
    local tag="$1" scopes="$2"; shift 2
    local bin=./target/debug/quarry
    [ -x "$bin" ] || cargo build -q -p quarry-cli
    _fx_db="quarry_${tag}_$$"
    work="$(mktemp -d)"
    _fx_pid=""
    trap '[ -n "$_fx_pid" ] && kill "$_fx_pid" 2>/dev/null && wait "$_fx_pid" 2>/dev/null; psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $_fx_db WITH (FORCE)" >/dev/null 2>&1; rm -rf "$work"' EXIT
    psql "$QUARRY_ADMIN_URL" -qc "CREATE DATABASE $_fx_db"
    local url="${QUARRY_ADMIN_URL%/*}/$_fx_db"
    "$bin" --database-url "$url" migrate >/dev/null
    psql "$url" -q -v ON_ERROR_STOP=1 -f tests/fixtures/small.sql >/dev/null
    local scope_args=()
    for s in ${scopes//,/ }; do scope_args+=(--scope "$s"); done
    key="$("$bin" --database-url "$url" keys create --name "$tag" "${scope_args[@]}" 2>/dev/null)"
    QUARRY_DATA_DIR="$work/data" QUARRY_API__RATE_LIMIT_PER_SECOND=100000 QUARRY_API__RATE_LIMIT_BURST=100000 \
    QUARRY_LOG="${QUARRY_LOG:-error}" \
        "$bin" --database-url "$url" serve --listen 127.0.0.1:0 "$@" >"$work/out" 2>"$work/err" &
    _fx_pid=$!
    for _ in $(seq 100); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
    addr="$(sed -n 's/.*listening on \(http:\/\/[^ ]*\).*/\1/p' "$work/out")"
    [ -n "$addr" ] || { cat "$work/err"; echo "quarry serve did not start" >&2; return 1; }
}
