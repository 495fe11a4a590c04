# shellcheck shell=bash
# A throwaway floe cluster (one scheduler, two executors: `floe cluster ...`) on 127.0.0.1 for the
# tests, started like Postgres and Garage.
#
#   source tests/services/cluster.sh
#   floe_start_cluster FLOE_BIN DIR    # exports FLOE_TEST_CLUSTER=df://127.0.0.1:PORT
#   floe_stop_cluster
#
# The executors reach the test S3 server (FLOE_TEST_S3_*) and local files. Functions never call
# `exit`; on failure they print to stderr and return non-zero.

_floe_cluster_err() { echo "floe cluster: $*" >&2; }

floe_start_cluster() {
  local bin=${1:?usage: floe_start_cluster FLOE_BIN DIR} dir=${2:?usage: floe_start_cluster FLOE_BIN DIR}
  local ports i
  mkdir -p "$dir" && dir=$(cd "$dir" && pwd) || return 1
  read -r -a ports < <(python3 -c '
import socket
socks = []
while len(socks) < 3:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    # each executor needs its port and the next one
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p + 1))
    except OSError:
        s.close(); continue
    socks.append((s, t))
print(*[s.getsockname()[1] for s, _ in socks])') || { _floe_cluster_err "cannot pick free ports"; return 1; }
  local -a env=(FLOE_LOG=warn)
  if [[ -n ${FLOE_TEST_S3_ENDPOINT:-} ]]; then
    env+=(AWS_ENDPOINT_URL="$FLOE_TEST_S3_ENDPOINT" AWS_REGION="${FLOE_TEST_S3_REGION:-garage}"
          AWS_ACCESS_KEY_ID="$FLOE_TEST_S3_ACCESS_KEY_ID" AWS_SECRET_ACCESS_KEY="$FLOE_TEST_S3_SECRET_ACCESS_KEY"
          FLOE_S3_PATH_STYLE=true FLOE_WAREHOUSE="s3://${FLOE_TEST_S3_BUCKET:-floe-test}")
  fi
  _FLOE_CLUSTER_PIDS=()
  floe_stop_cluster() {
    local p
    for p in "${_FLOE_CLUSTER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${_FLOE_CLUSTER_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    _FLOE_CLUSTER_PIDS=()
    return 0
  }
  # Wait until PORT accepts connections (a first start on a fresh machine reads a large binary from
  # a cold disk: allow two minutes); a process that exits, or a timeout, is an error with its log.
  _floe_cluster_wait() {
    local port=$1 pid=$2 name=$3 j
    for ((j = 0; j < 240; j++)); do
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    _floe_cluster_err "$name not listening on 127.0.0.1:$port ($( kill -0 "$pid" 2>/dev/null && echo 'still starting after 120 s' || echo 'exited')); its log:"
    tail -n 20 "$dir/$name.log" >&2
    return 1
  }
  env "${env[@]}" "$bin" cluster scheduler --bind "127.0.0.1:${ports[0]}" >"$dir/scheduler.log" 2>&1 </dev/null &
  _FLOE_CLUSTER_PIDS+=($!)
  _floe_cluster_wait "${ports[0]}" "${_FLOE_CLUSTER_PIDS[0]}" scheduler || { floe_stop_cluster; return 1; }
  for i in 1 2; do
    env "${env[@]}" "$bin" cluster executor --scheduler "127.0.0.1:${ports[0]}" --bind "127.0.0.1:${ports[$i]}" \
        --concurrent-tasks 2 --work-dir "$dir/executor-$i" >"$dir/executor-$i.log" 2>&1 </dev/null &
    _FLOE_CLUSTER_PIDS+=($!)
  done
  for i in 1 2; do
    _floe_cluster_wait "${ports[$i]}" "${_FLOE_CLUSTER_PIDS[$i]}" "executor-$i" || { floe_stop_cluster; return 1; }
  done
  export FLOE_TEST_CLUSTER="df://127.0.0.1:${ports[0]}"
}
