//! Fault points on the commit path, for crash tests. Built with the `failpoints` feature (the test
//! command builds with it; a plain build compiles every point to nothing), a point fires when the
//! environment variable `FLOE_CRASH_AT` names it: the process then kills itself with `SIGKILL`, as
//! a power cut or an OOM kill would, so nothing is flushed, unwound or cleaned up. The points:
//! `commit.after-data-files`, `commit.after-manifests`, `commit.after-manifest-list`,
//! `commit.after-metadata`, `commit.after-swap`, `commit.before-cleanup`.

/// Mark a point on the commit path.
#[inline]
pub(crate) fn point(name: &'static str) {
    #[cfg(feature = "failpoints")]
    crash_if_named(name);
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

#[cfg(feature = "failpoints")]
fn crash_if_named(name: &str) {
    use std::sync::OnceLock;
    static POINTS: OnceLock<Vec<String>> = OnceLock::new();
    let points = POINTS.get_or_init(|| {
        std::env::var("FLOE_CRASH_AT")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    });
    if points.iter().any(|p| p == name) {
        eprintln!("floe: crash point {name} reached; killing the process");
        let pid = std::process::id().to_string();
        let _ = std::process::Command::new("kill").args(["-KILL", &pid]).status();
        // `kill` missing or refused: abort, which is just as abrupt for the files.
        std::process::abort();
    }
}
