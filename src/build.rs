//! Build script: when floe links a prebuilt `libduckdb.so` (`DUCKDB_LIB_DIR`, the default of the
//! README's commands), record that directory as the run path of every binary and test, so `floe`
//! runs by hand without `LD_LIBRARY_PATH`.

fn main() {
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_BUNDLED_DUCKDB").is_some() {
        return;
    }
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        if !dir.is_empty() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
}
