# shellcheck shell=bash
# Throwaway Garage (S3-compatible object store) on 127.0.0.1 for floe's tests.
#
#   source tests/services/garage.sh
#   floe_start_garage DIR   # exports FLOE_TEST_S3_{ENDPOINT,BUCKET,ACCESS_KEY_ID,SECRET_ACCESS_KEY,REGION}
#   floe_stop_garage
#
# Written for Garage v2.x (config keys are the same in v1.x). Clients must use
# path-style addressing. Functions never call `exit` or change the caller's
# shell options; on failure they print to stderr and return non-zero.

_floe_garage_err() { echo "floe garage: $*" >&2; }

# Print the garage binary path, building it with cargo if needed.
_floe_garage_bin() {
  local tools=${FLOE_TOOLS_DIR:-$HOME/.cache/floe-tools}
  local bin=$tools/garage/bin/garage
  [[ -x $bin ]] && { echo "$bin"; return 0; }
  command -v garage 2>/dev/null && return 0
  _floe_garage_err "garage not found; running 'cargo install garage' into $tools/garage (takes ~5-10 min)"
  mkdir -p "$tools" || return 1
  # Only what the tests use (the SQLite metadata engine, bundled C libraries), at opt-level 1: a
  # test server needs no k2v, metrics or LMDB, and the build is the slowest step of a fresh machine.
  # flock: concurrent callers wait for one build instead of starting another.
  flock "$tools/garage.lock" sh -c '[ -x "$1" ] || CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
      cargo install garage --locked --no-default-features --features bundled-libs,sqlite --root "$2"' \
      sh "$bin" "$tools/garage" >&2 \
    || { _floe_garage_err "cargo install garage failed"; return 1; }
  [[ -x $bin ]] || { _floe_garage_err "$bin missing after install"; return 1; }
  echo "$bin"
}

floe_start_garage() {
  local dir=${1:?usage: floe_start_garage DIR} bin ports s3 rpc admin secret pid node out i
  bin=$(_floe_garage_bin) || return 1
  declare -F floe_stop_garage >/dev/null && floe_stop_garage
  mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
  rm -rf "$dir/meta" "$dir/data"
  read -r s3 rpc admin secret < <(python3 -c '
import secrets, socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks], secrets.token_hex(32))') \
    || { _floe_garage_err "cannot pick free ports"; return 1; }

  (umask 077 && cat >"$dir/garage.toml") <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
EOF

  local -a g=("$bin" -c "$dir/garage.toml")
  pid=$(RUST_LOG=${RUST_LOG:-garage=info} "${g[@]}" server >"$dir/garage.log" 2>&1 </dev/null & echo $!)
  _FLOE_GARAGE_PID=$pid
  floe_stop_garage() {
    local p=${_FLOE_GARAGE_PID:-} i
    [[ -n $p ]] || return 0
    kill "$p" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$p" 2>/dev/null || true
    _FLOE_GARAGE_PID=
    return 0
  }

  for ((i = 0; i < 60; i++)); do
    kill -0 "$pid" 2>/dev/null || { _floe_garage_err "server died, see $dir/garage.log"; floe_stop_garage; return 1; }
    "${g[@]}" status >/dev/null 2>&1 && break
    sleep 1
  done
  ((i < 60)) || { _floe_garage_err "server not ready after 60s, see $dir/garage.log"; floe_stop_garage; return 1; }

  # Setup output (minus the key's secret) goes to garage-cli.log for debugging.
  {
    node=$("${g[@]}" node id -q 2>/dev/null | cut -d@ -f1) && [[ -n $node ]] &&
    "${g[@]}" layout assign -z dc1 -c 1G "$node" &&
    "${g[@]}" layout apply --version 1 &&
    out=$("${g[@]}" key create floe-test) &&
    "${g[@]}" key allow --create-bucket floe-test &&
    "${g[@]}" bucket create floe-test &&
    "${g[@]}" bucket allow --read --write --owner floe-test --key floe-test
  } >"$dir/garage-cli.log" 2>&1 \
    || { _floe_garage_err "cluster setup failed, see $dir/garage-cli.log"; floe_stop_garage; return 1; }

  export FLOE_TEST_S3_ACCESS_KEY_ID FLOE_TEST_S3_SECRET_ACCESS_KEY
  FLOE_TEST_S3_ACCESS_KEY_ID=$(awk '/^Key ID:/ {print $3}' <<<"$out")
  FLOE_TEST_S3_SECRET_ACCESS_KEY=$(awk '/^Secret key:/ {print $3}' <<<"$out")
  [[ $FLOE_TEST_S3_ACCESS_KEY_ID == GK* && -n $FLOE_TEST_S3_SECRET_ACCESS_KEY ]] \
    || { _floe_garage_err "cannot parse 'garage key create' output"; floe_stop_garage; return 1; }
  export FLOE_TEST_S3_ENDPOINT="http://127.0.0.1:$s3" FLOE_TEST_S3_BUCKET=floe-test FLOE_TEST_S3_REGION=garage
}
