# Sourced: makes `floe_cargo_flags` hold the cargo flags that link DuckDB. By default it fetches
# DuckDB 1.5.6's prebuilt libduckdb.so (the npm package @duckdb/node-bindings-linux-x64) and builds
# without the `bundled-duckdb` feature, which saves ~35 minutes of C++ on 2 cores. With
# FLOE_DUCKDB_BUNDLED=1, or without npm, DuckDB is compiled from source as a plain `cargo build` does.
floe_cargo_flags=()
floe_use_prebuilt_duckdb() {
  [ "${FLOE_DUCKDB_BUNDLED:-0}" = "1" ] && return 0
  local tools=${FLOE_TOOLS_DIR:-$HOME/.cache/floe-tools}
  local dir="$tools/duckdb-1.5.6"
  if [ ! -f "$dir/libduckdb.so" ] && command -v npm >/dev/null; then
    echo "fetching libduckdb.so 1.5.6 (npm package @duckdb/node-bindings-linux-x64)" >&2
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent @duckdb/node-bindings-linux-x64@1.5.6-r.1 >/dev/null && tar xzf ./*.tgz) || true
    if [ -f "$tmp/package/libduckdb.so" ]; then
      mkdir -p "$dir" && cp "$tmp/package/libduckdb.so" "$dir/"
    fi
    rm -rf "$tmp"
  fi
  if [ -f "$dir/libduckdb.so" ]; then
    export DUCKDB_LIB_DIR="$dir"
    export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    floe_cargo_flags=(--no-default-features)
  else
    echo "no prebuilt libduckdb.so (npm missing?): compiling DuckDB from source, which is slow" >&2
  fi
}
