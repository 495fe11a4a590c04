# shellcheck shell=bash
# Throwaway PostgreSQL server on 127.0.0.1 for floe's tests.
#
#   source tests/services/postgres.sh
#   floe_start_postgres DIR   # exports FLOE_TEST_POSTGRES_URL
#   floe_stop_postgres
#
# Functions never call `exit` or change the caller's shell options; on
# failure they print to stderr and return non-zero. Runs as root: the server
# runs as the `postgres` user (or `floe-pg`, created on demand).

_floe_pg_err() { echo "floe postgres: $*" >&2; }

# Print a free TCP port on 127.0.0.1.
_floe_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Print the directory holding initdb/pg_ctl/postgres, installing them if needed.
_floe_pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]] && { echo "$d"; return 0; }
  done
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null && command -v postgres >/dev/null; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"; return 0
  fi
  _floe_pg_err "PostgreSQL server not found; installing Debian package 'postgresql'"
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; } >&2 \
    || { _floe_pg_err "apt-get install postgresql failed"; return 1; }
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r | head -n1)
  [[ -n $d && -x $d/initdb ]] || { _floe_pg_err "initdb still not found after install"; return 1; }
  echo "$d"
}

floe_start_postgres() {
  local dir=${1:?usage: floe_start_postgres DIR} bin user port i
  [[ $(id -u) == 0 ]] || { _floe_pg_err "must run as root (uses runuser)"; return 1; }
  bin=$(_floe_pg_bindir) || return 1
  if id -u postgres >/dev/null 2>&1; then user=postgres; else
    user=floe-pg
    id -u "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user" \
      || { _floe_pg_err "cannot create user $user"; return 1; }
  fi
  declare -F floe_stop_postgres >/dev/null && floe_stop_postgres 2>/dev/null
  mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
  chown "$user:" "$dir" && chmod 700 "$dir" || return 1
  runuser -u "$user" -- test -w "$dir" \
    || { _floe_pg_err "user $user cannot write $dir (is a parent directory private?)"; return 1; }
  if [[ -f $dir/data/postmaster.pid ]]; then
    runuser -u "$user" -- "$bin/pg_ctl" -D "$dir/data" stop -m immediate >/dev/null 2>&1 || true
  fi
  rm -rf "$dir/data"

  runuser -u "$user" -- "$bin/initdb" -D "$dir/data" -U floe --auth=trust -E UTF8 --no-sync \
      >"$dir/initdb.log" 2>&1 || { _floe_pg_err "initdb failed, see $dir/initdb.log"; return 1; }
  printf '%s\n' 'local all all trust' 'host all all 127.0.0.1/32 trust' >"$dir/data/pg_hba.conf"
  chown "$user:" "$dir/data/pg_hba.conf"

  port=$(_floe_free_port) || { _floe_pg_err "cannot pick a free port"; return 1; }
  runuser -u "$user" -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=off" \
      start >/dev/null || { _floe_pg_err "pg_ctl start failed, see $dir/postgres.log"; return 1; }
  _FLOE_PG_USER=$user _FLOE_PG_BIN=$bin _FLOE_PG_DATA=$dir/data
  floe_stop_postgres() {
    [[ -n ${_FLOE_PG_DATA:-} && -f $_FLOE_PG_DATA/postmaster.pid ]] || return 0
    runuser -u "$_FLOE_PG_USER" -- "$_FLOE_PG_BIN/pg_ctl" -D "$_FLOE_PG_DATA" stop -m immediate -w -t 60 >/dev/null
  }

  for ((i = 0; i < 60; i++)); do
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
    sleep 1
  done
  ((i < 60)) || { _floe_pg_err "server not ready after 60s, see $dir/postgres.log"; floe_stop_postgres; return 1; }
  "$bin/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U floe -d postgres \
      -c 'CREATE DATABASE floe_test' >/dev/null \
    || { _floe_pg_err "CREATE DATABASE floe_test failed"; floe_stop_postgres; return 1; }
  export FLOE_TEST_POSTGRES_URL="postgres://floe@127.0.0.1:$port/floe_test"
}
