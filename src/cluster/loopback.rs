//! A throwaway cluster on 127.0.0.1: one `floe cluster scheduler` and N `floe cluster executor`
//! processes of a floe executable, on free ports, with the warehouse settings of the process that
//! starts them; stopped (killed) when dropped. The benchmark runs the `ballista` engine on it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::error::{Error, ErrorKind, Result};

/// How long a process of the cluster may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running loopback cluster.
#[derive(Debug)]
pub struct LoopbackCluster {
    url: String,
    executors: usize,
    children: Vec<std::process::Child>,
    dir: tempfile::TempDir,
}

/// A free port on 127.0.0.1 (bound and released; a race with another process is possible but
/// then the child fails to listen and the start reports it).
fn free_port(with_next: bool) -> Result<u16> {
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        // An executor listens on its port and the next one (Flight, then task gRPC).
        if !with_next || port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::internal("no free pair of ports on 127.0.0.1"))
}

impl LoopbackCluster {
    /// Start a scheduler and `executors` executors (two tasks at a time each) from the floe
    /// executable `exe`, reaching the warehouse with `settings`; returns once all listen.
    pub fn start(exe: &Path, settings: &Settings, executors: usize) -> Result<LoopbackCluster> {
        if executors == 0 {
            return Err(Error::invalid("a cluster needs at least one executor"));
        }
        let dir = tempfile::Builder::new()
            .prefix("floe-loopback-cluster-")
            .tempdir()?;
        let mut cluster = LoopbackCluster {
            url: String::new(),
            executors,
            children: Vec::new(),
            dir,
        };
        let scheduler = free_port(false)?;
        cluster.spawn(
            exe,
            settings,
            "scheduler",
            &[
                "cluster",
                "scheduler",
                "--bind",
                &format!("127.0.0.1:{scheduler}"),
            ],
        )?;
        cluster.wait_listening(scheduler, "scheduler", 0)?;
        let mut ports = Vec::new();
        for i in 1..=executors {
            let port = free_port(true)?;
            let work = cluster.dir.path().join(format!("executor-{i}"));
            cluster.spawn(
                exe,
                settings,
                &format!("executor-{i}"),
                &[
                    "cluster",
                    "executor",
                    "--scheduler",
                    &format!("127.0.0.1:{scheduler}"),
                    "--bind",
                    &format!("127.0.0.1:{port}"),
                    "--concurrent-tasks",
                    "2",
                    "--work-dir",
                    &work.display().to_string(),
                ],
            )?;
            ports.push((port, format!("executor-{i}"), i));
        }
        for (port, name, child) in &ports {
            cluster.wait_listening(*port, name, *child)?;
        }
        // The executors register with the scheduler right after they listen.
        std::thread::sleep(Duration::from_millis(500));
        cluster.url = format!("df://127.0.0.1:{scheduler}");
        Ok(cluster)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    fn spawn(&mut self, exe: &Path, settings: &Settings, name: &str, args: &[&str]) -> Result<()> {
        let log = std::fs::File::create(self.log(name))?;
        let child = std::process::Command::new(exe)
            .envs(settings.to_vars())
            .env("FLOE_LOG", "warn")
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("cannot start {} {name}: {e}", exe.display()),
                )
            })?;
        self.children.push(child);
        Ok(())
    }

    /// Wait until `port` accepts connections; the `child`th process exiting first is an error.
    fn wait_listening(&mut self, port: u16, name: &str, child: usize) -> Result<()> {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            let exited = self
                .children
                .get_mut(child)
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || started.elapsed() > START_TIMEOUT {
                let log = std::fs::read_to_string(self.log(name)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(Error::new(
                    ErrorKind::Engine,
                    format!(
                        "loopback cluster: the {name} did not listen on {address}{}: {}",
                        exited.map(|s| format!(" ({s})")).unwrap_or_default(),
                        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `df://127.0.0.1:PORT`, the scheduler.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Executors started.
    pub fn executors(&self) -> usize {
        self.executors
    }
}

impl Drop for LoopbackCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
    }
}
