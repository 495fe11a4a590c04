#!/usr/bin/env bash
# floe's whole test suite, on a fresh machine: installs what it needs (PostgreSQL, PyIceberg, a Garage
# S3 server, DuckDB's prebuilt library), starts a throwaway Postgres and Garage on 127.0.0.1, and runs
# every test against both backends (SQLite + local disk, Postgres + S3). Extra arguments go to
# `cargo test` (for example a test name filter).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export FLOE_TOOLS_DIR=${FLOE_TOOLS_DIR:-$HOME/.cache/floe-tools}
mkdir -p "$FLOE_TOOLS_DIR"
say() { printf '\n== %s\n' "$*" >&2; }

# --- system packages -------------------------------------------------------------------------------
missing=()
command -v python3 >/dev/null || missing+=(python3 python3-pip)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
command -v pg_isready >/dev/null || missing+=(postgresql-client)
command -v ip >/dev/null || missing+=(iproute2)  # network namespaces (tests/it/cluster_hosts.rs)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- PyIceberg, the independent Iceberg implementation the interop tests use ------------------------
if ! python3 -c 'import pyiceberg, pyiceberg.catalog.sql, pyarrow, psycopg2, sys; sys.exit(not pyiceberg.__version__.startswith("0.12."))' 2>/dev/null; then
  say "installing PyIceberg 0.12"
  python3 -m pip install -q "pyiceberg[sql-postgres,sql-sqlite,pyarrow]==0.12.*"
fi

# --- DuckDB 1.4.4 with its own iceberg extension: a second independent Iceberg reader ---------------
# (the extension packages carry the .duckdb_extension files, loaded from disk: no network at test time)
if ! python3 -c 'import duckdb, sys; sys.exit(duckdb.__version__ != "1.4.4")' 2>/dev/null \
   || ! python3 -m pip show -q duckdb-ext-iceberg >/dev/null 2>&1; then
  say "installing DuckDB 1.4.4 and its iceberg, avro and httpfs extensions"
  python3 -m pip install -q duckdb==1.4.4 duckdb-ext-iceberg==1.4.4.20260205 \
    duckdb-ext-avro==1.4.4.20260205 duckdb-ext-httpfs==1.4.4.20260205
fi

# --- DuckDB: link the prebuilt libduckdb.so instead of compiling DuckDB's C++ (35 min on 2 cores) ---
# shellcheck source=tests/services/duckdb.sh
source "$ROOT/tests/services/duckdb.sh"
floe_use_prebuilt_duckdb
CARGO_FLAGS=("${floe_cargo_flags[@]}")
# Extra cargo flags for quick local iterations, for example
# FLOE_CARGO_EXTRA="--config profile.dev.package.floe.opt-level=0" (CI leaves it empty).
read -r -a extra_flags <<< "${FLOE_CARGO_EXTRA:-}"
CARGO_FLAGS+=("${extra_flags[@]}")

# The crash tests need the commit path's crash points (compiled in only with this feature).
CARGO_FLAGS+=(--features failpoints)

# floe's own crates compile without incremental caches unless the caller asks for them: at
# opt-level 1 a first incremental build of the integration tests took 962 s of CPU, the same source
# built plainly 290 s (measured 2026-12-07), and a fresh machine or a CI run has no cache to reuse.
# Set CARGO_INCREMENTAL=1 for quick edit-and-rerun loops.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

# --- build (tests and binary, the `cargo test` profile) ----------------------------------------------
# Garage (the S3 server) builds at the same time on a fresh machine: two builds fill both cores
# where one alone leaves a core idle (long single crates, linking).
# `cargo test --no-run` builds exactly what `cargo test` runs below (the test targets and the binary
# under Cargo.toml's test profile, the library and dependencies under dev), so nothing rebuilds.
# shellcheck source=tests/services/garage.sh
source "$ROOT/tests/services/garage.sh"
_floe_garage_bin >/dev/null 2>"$FLOE_TOOLS_DIR/garage-build.log" &
GARAGE_BUILD=$!
say "building"
cargo test --no-run "${CARGO_FLAGS[@]}"
wait "$GARAGE_BUILD" || { cat "$FLOE_TOOLS_DIR/garage-build.log" >&2; exit 1; }

# --- servers ---------------------------------------------------------------------------------------
# shellcheck source=tests/services/postgres.sh
source "$ROOT/tests/services/postgres.sh"
# shellcheck source=tests/services/cluster.sh
source "$ROOT/tests/services/cluster.sh"
WORK=$(mktemp -d /tmp/floe-test.XXXXXX)
chmod 755 "$WORK"  # the Postgres server runs as an unprivileged user inside it
cleanup() {
  floe_stop_cluster 2>/dev/null || true
  floe_stop_garage 2>/dev/null || true
  floe_stop_postgres 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
say "starting PostgreSQL"
floe_start_postgres "$WORK/pg"
say "starting Garage (S3)"
floe_start_garage "$WORK/garage"
say "starting a floe cluster (a scheduler and two executors)"
floe_start_cluster "${CARGO_TARGET_DIR:-$ROOT/target}/debug/floe" "$WORK/cluster"
export FLOE_TEST_REQUIRE_SERVERS=1
# A cluster stage that makes no progress fails the test within minutes instead of hanging the suite.
export FLOE_CLUSTER_STAGE_TIMEOUT=${FLOE_CLUSTER_STAGE_TIMEOUT:-5m}

# --- tests -----------------------------------------------------------------------------------------
say "running the test suite against SQLite + local disk and Postgres + Garage S3"
# Most tests wait on Postgres, Garage, PyIceberg or a child floe rather than compute: four at a time
# on two cores took the integration tests from 335 s to 211 s (measured 2026-12-06).
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-4}
cargo test "${CARGO_FLAGS[@]}" "$@"
