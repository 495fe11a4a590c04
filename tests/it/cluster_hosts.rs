//! The pipeline on a cluster whose processes are hosts of their own: the scheduler, two executors and
//! the driver each in a network namespace (`ip netns`), reaching each other and the Garage warehouse
//! only by their own addresses, agree with local DataFusion.
//!
//! The network, made and removed by the test (a [`Network`] guard deletes it on every exit, a panic
//! included):
//!
//! ```text
//!   root namespace                       namespaces (each: its own lo, and eth0)
//!   Garage 127.0.0.1:S3  <-- forwarder --  flb<pid> bridge .1  --veth--  scheduler .2
//!                           (this test,                         --veth--  executor-0 .3
//!                            on .1:port)                        --veth--  executor-1 .4
//!                                                               --veth--  driver .5
//! ```
//!
//! - Addresses: a /28 of 198.18.0.0/15 (RFC 2544's range for network tests, used by no real
//!   network) chosen by the test's pid, moved on when an address of it is already in use; names
//!   carry the pid (`floe<pid>-driver`, `flb<pid>`, `flv<pid>-3`), so parallel runs cannot collide.
//!   Leftovers of a run that was killed (its pid gone) are removed first.
//! - The namespaces have no default route: all they reach is the bridge's /28. Their 127.0.0.1 is
//!   their own loopback, so a process that advertised or dialled 127.0.0.1 for another one would
//!   fail the run; the test also checks that no host can reach Garage's 127.0.0.1 port.
//! - Garage listens on 127.0.0.1 of the root namespace, which no namespace can reach. A TCP forwarder
//!   of the test's own listens on the bridge's address and copies bytes to Garage. Chosen over the
//!   alternatives because it changes nothing outside the test: restarting the shared Garage on
//!   another address would disturb the rest of the suite, and `route_localnet` plus a DNAT rule
//!   needs iptables (absent here) and alters the host's firewall. The forwarder copies bytes only, so
//!   the Host header the clients signed (the bridge address, their `AWS_ENDPOINT_URL`) reaches
//!   Garage unchanged and the S3 signatures hold. It records who connected: the test asserts that
//!   both executors and the driver reached Garage from their own addresses.
//!
//! Only Garage, not both backends: a local-disk warehouse would be shared by the processes through
//! the file system, not the network, which is what this test is about. The catalog is an SQLite file
//! on the driver's host (only the driver commits).
//!
//! Skipped, with the reason printed, where `ip netns` cannot be used (not root, no `ip`), except
//! under the test command (`FLOE_TEST_REQUIRE_SERVERS=1`), where that is a failure.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cluster::{log, wait_listening, OwnCluster};
use crate::support::*;

/// The roles, in address order (.2, .3, ...).
const HOSTS: [&str; 4] = ["scheduler", "executor-0", "executor-1", "driver"];
const SCHEDULER_PORT: u16 = 50050;
/// Each executor's Arrow Flight port (task gRPC on the next): every namespace has its own ports.
const EXECUTOR_PORT: u16 = 50051;

/// The bridge, veth pairs and namespaces of one run; dropping it removes them.
struct Network {
    pid: u32,
    /// The bridge's address (the root namespace's on the hosts' network); hosts are .2, .3, ...
    gateway: Ipv4Addr,
    namespaces: Vec<String>,
    /// The root namespace's ends of the veth pairs.
    veths: Vec<String>,
}

/// Run `ip ARGS`; the error says what failed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`ip` cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_output(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn namespace_name(pid: u32, role: &str) -> String {
    format!("floe{pid}-{role}")
}

fn bridge_name(pid: u32) -> String {
    format!("flb{pid}")
}

/// Remove the namespaces and bridges of earlier runs whose process is gone (killed before their
/// guard ran), and end the processes left in those namespaces.
fn remove_leftovers() {
    let dead = |pid: &str| {
        !pid.is_empty()
            && pid.chars().all(|c| c.is_ascii_digit())
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    };
    for line in ip_output(&["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if let Some((pid, _role)) = name.strip_prefix("floe").and_then(|r| r.split_once('-')) {
            if dead(pid) {
                // The dead run's cluster processes, still running in it.
                for process in ip_output(&["netns", "pids", name]).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", process]).status();
                }
                let _ = ip(&["netns", "delete", name]);
            }
        }
    }
    // A veth pair lasts as long as its namespace, which a process of the dead run may still hold
    // while it ends.
    for line in ip_output(&["-o", "link", "show"]).lines() {
        let name = line.split(':').nth(1).unwrap_or_default().trim();
        let name = name.split('@').next().unwrap_or_default();
        let pid = match (name.strip_prefix("flb"), name.strip_prefix("flv")) {
            (Some(pid), _) => pid,
            (_, Some(veth)) => veth.split('-').next().unwrap_or_default(),
            _ => continue,
        };
        if dead(pid) {
            let _ = ip(&["link", "delete", name]);
        }
    }
}

/// A /28 of 198.18.0.0/15 that no interface of this machine has an address in, starting from the
/// pid's.
fn free_subnet(pid: u32) -> Ipv4Addr {
    let used: Vec<u32> = ip_output(&["-4", "-o", "addr", "show"])
        .split_whitespace()
        .filter_map(|w| w.split_once('/')?.0.parse::<Ipv4Addr>().ok())
        .map(u32::from)
        .collect();
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 0));
    (0..8192)
        .map(|i| base + ((pid + i) % 8192) * 16)
        .find(|net| !used.iter().any(|a| a & !15 == *net))
        .map(Ipv4Addr::from)
        .expect("a free /28 in 198.18.0.0/15")
}

impl Network {
    /// The bridge and one namespace per role, or why this machine does not allow them.
    fn create() -> Result<Network, String> {
        let pid = std::process::id();
        remove_leftovers();
        let subnet = u32::from(free_subnet(pid));
        let mut network = Network {
            pid,
            gateway: Ipv4Addr::from(subnet + 1),
            namespaces: Vec::new(),
            veths: Vec::new(),
        };
        // The first namespace is the permission check: failing here is "not permitted", not a bug.
        let first = namespace_name(pid, HOSTS[0]);
        ip(&["netns", "add", &first])?;
        network.namespaces.push(first);
        let bridge = bridge_name(pid);
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}/28", network.gateway), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for (i, role) in HOSTS.iter().enumerate() {
            let ns = namespace_name(pid, role);
            if i > 0 {
                ip(&["netns", "add", &ns])?;
                network.namespaces.push(ns.clone());
            }
            let veth = format!("flv{pid}-{i}");
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            network.veths.push(veth.clone());
            ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            let address = format!("{}/28", network.host(role));
            ip(&["-n", &ns, "addr", "add", &address, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(network)
    }

    /// The address of `role`'s host.
    fn host(&self, role: &str) -> Ipv4Addr {
        let i = HOSTS.iter().position(|r| *r == role).expect("a role of HOSTS") as u32;
        Ipv4Addr::from(u32::from(self.gateway) + 1 + i)
    }

    /// `floe ARGS` on `role`'s host, with a clean environment and `env`.
    fn floe(&self, role: &str, dir: &std::path::Path, env: &[(&str, String)]) -> Command {
        let mut c = clean_cmd("ip", dir);
        c.args([
            "netns",
            "exec",
            &namespace_name(self.pid, role),
            env!("CARGO_BIN_EXE_floe"),
        ])
        .stdin(Stdio::null())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        c
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // A veth pair would go with its namespace too, but only once the kernel has torn the
        // namespace down, after this returns; deleting one end deletes the pair now.
        for veth in &self.veths {
            if let Err(e) = ip(&["link", "delete", veth]) {
                eprintln!("cleanup: {e}");
            }
        }
        for ns in &self.namespaces {
            if let Err(e) = ip(&["netns", "delete", ns]) {
                eprintln!("cleanup: {e}");
            }
        }
        let bridge = bridge_name(self.pid);
        if ip_output(&["link", "show", &bridge]).contains(&bridge) {
            if let Err(e) = ip(&["link", "delete", &bridge]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// Garage on the hosts' network: a TCP forwarder from `address` (on the bridge) to Garage's own
/// address, recording the address of every host that connected. Stops when dropped.
struct Forwarder {
    address: SocketAddr,
    clients: Arc<Mutex<BTreeSet<IpAddr>>>,
    stop: Arc<AtomicBool>,
}

impl Forwarder {
    fn start(on: Ipv4Addr, upstream: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind((on, 0)).unwrap();
        // Non-blocking, so the accept loop sees `stop` without a connection to wake it.
        listener.set_nonblocking(true).unwrap();
        let forwarder = Forwarder {
            address: listener.local_addr().unwrap(),
            clients: Arc::default(),
            stop: Arc::default(),
        };
        let (clients, stop) = (forwarder.clients.clone(), forwarder.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, from)) => {
                        clients.lock().unwrap().insert(from.ip());
                        client.set_nonblocking(false).unwrap();
                        if let Ok(garage) = TcpStream::connect(upstream) {
                            pipe(client.try_clone().unwrap(), garage.try_clone().unwrap());
                            pipe(garage, client);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        forwarder
    }

    fn clients(&self) -> BTreeSet<IpAddr> {
        self.clients.lock().unwrap().clone()
    }
}

/// Copy `from` to `to` until `from` ends, then end `to`'s writing half (HTTP keep-alive connections
/// end from either side).
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Start `floe ARGS` on `role`'s host, logging to `role.log` in the cluster's directory, and wait
/// until it listens on `port` of that host.
fn spawn_listening(
    network: &Network,
    cluster: &mut OwnCluster,
    env: &[(&str, String)],
    role: &str,
    port: u16,
    args: &[&str],
) {
    let dir = cluster.dir.path().to_path_buf();
    let mut child: Child = network
        .floe(role, &dir, env)
        .args(args)
        .env("FLOE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log(&dir, role))
        .spawn()
        .unwrap();
    let listening = wait_listening((network.host(role), port).into(), &mut child);
    cluster.children.push(child);
    assert!(listening, "{role} did not start: see its log");
}

/// Run `command` to its end within `limit` (killed after it).
fn run_within(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

/// The output of `floe` run on the driver's host, which must succeed.
fn driver_ok(network: &Network, dir: &std::path::Path, env: &[(&str, String)], args: &[&str]) -> String {
    let mut command = network.floe("driver", dir, env);
    command.args(args);
    let out = run_within(command, Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "floe {} on the driver's host: {}\n{stdout}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_pipeline_on_hosts_in_network_namespaces_agrees_with_local_datafusion() {
    let started = Instant::now();
    let Some((s3, bucket)) = s3_settings() else {
        assert!(
            may_skip_servers(),
            "Garage is not configured (FLOE_TEST_S3_*): run `bash tests/run.sh` or set FLOE_TEST_SKIP_SERVERS=1"
        );
        eprintln!("SKIPPED: Garage not configured and FLOE_TEST_SKIP_SERVERS=1");
        return;
    };
    let network = match Network::create() {
        Ok(n) => n,
        Err(reason) if std::env::var("FLOE_TEST_REQUIRE_SERVERS").as_deref() != Ok("1") => {
            eprintln!("SKIPPED: network namespaces are not permitted here: {reason}");
            return;
        }
        Err(reason) => panic!("network namespaces are required (FLOE_TEST_REQUIRE_SERVERS=1): {reason}"),
    };
    let endpoint = s3.endpoint.clone().unwrap();
    let garage: SocketAddr = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("FLOE_TEST_S3_ENDPOINT {endpoint:?}: expected http://IP:PORT"));
    let forwarder = Forwarder::start(network.gateway, garage);

    // Every process reaches Garage at the forwarder's address, the only one its host can reach.
    let dir = tempfile::tempdir().unwrap();
    let settings = floe::Settings {
        catalog_url: format!("sqlite:{}", dir.path().join("catalog.db").display()),
        warehouse: format!("s3://{bucket}/it-{}", uuid::Uuid::new_v4().simple()),
        s3: floe::config::S3Settings {
            endpoint: Some(format!("http://{}", forwarder.address)),
            ..s3
        },
        ..floe::PartialSettings::default().finish()
    };
    // (`Backend::PostgresS3` only asks for the S3 variables; the catalog stays the SQLite file.)
    let env = settings_env(&settings, Backend::PostgresS3);

    // No host reaches Garage where it listens: each one's 127.0.0.1 is its own.
    for role in HOSTS {
        let mut probe = clean_cmd("ip", dir.path());
        probe
            .args(["netns", "exec", &namespace_name(network.pid, role), "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/{}/{}", garage.ip(), garage.port()));
        let probe = run_within(probe, Duration::from_secs(10));
        let error = String::from_utf8_lossy(&probe.stderr);
        assert!(
            !probe.status.success() && error.contains("connect:"),
            "{role}'s host and Garage at {garage}: the namespaces are not isolated ({}, {error})",
            probe.status
        );
    }

    let mut cluster = OwnCluster {
        children: Vec::new(),
        url: format!("df://{}:{SCHEDULER_PORT}", network.host("scheduler")),
        dir: tempfile::tempdir().unwrap(),
    };
    let scheduler_bind = format!("{}:{SCHEDULER_PORT}", network.host("scheduler"));
    spawn_listening(
        &network,
        &mut cluster,
        &env,
        "scheduler",
        SCHEDULER_PORT,
        &["cluster", "scheduler", "--bind", &scheduler_bind],
    );
    for role in ["executor-0", "executor-1"] {
        let bind = format!("{}:{EXECUTOR_PORT}", network.host(role));
        let work = cluster.dir.path().join(role).display().to_string();
        spawn_listening(
            &network,
            &mut cluster,
            &env,
            role,
            EXECUTOR_PORT,
            &[
                "cluster",
                "executor",
                "--scheduler",
                &scheduler_bind,
                "--bind",
                &bind,
                "--concurrent-tasks",
                "1",
                "--work-dir",
                &work,
            ],
        );
    }

    let input = format!("{}/input", settings.warehouse);
    let mut driver_env = env.clone();
    driver_env.push(("FLOE_CLUSTER", cluster.url.clone()));
    // A stage that makes no progress fails within the test's budget instead of hanging it.
    driver_env.push(("FLOE_CLUSTER_STAGE_TIMEOUT", "3m".to_string()));
    driver_ok(
        &network,
        dir.path(),
        &driver_env,
        &[
            "generate",
            "--events",
            "6000",
            "--seed",
            "5",
            "--files",
            "2",
            "--dirty-rate",
            "0.02",
            "--out",
            &input,
        ],
    );
    // Two engines: local DataFusion on the driver's host, then the cluster, each into its own
    // branch; the run diffs every output table of the two and exits 1 when one differs.
    let report = driver_ok(
        &network,
        dir.path(),
        &driver_env,
        &[
            "run",
            "--input",
            &input,
            "--namespace",
            "hosts",
            "--engine",
            "datafusion,ballista",
            "--format",
            "json",
        ],
    );
    let report: Value = serde_json::from_str(&report).unwrap();
    let on_cluster: Vec<&Value> = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["engine"] == "ballista" && s["stage"] != "ingest")
        .collect();
    assert!(!on_cluster.is_empty(), "{report}");
    for s in &on_cluster {
        assert_eq!(s["status"], "succeeded", "{s}");
        // The executors wrote the files from their own hosts: the driver received their entries.
        let received = s["driver_bytes_received"].as_u64();
        assert!(
            received.is_some_and(|r| r > 0 && r < s["bytes_written"].as_u64().unwrap_or(0).max(1 << 16)),
            "{s}"
        );
    }
    assert!(
        on_cluster.iter().any(|s| s["rows_in"].as_u64() > Some(0)),
        "the cluster ran on rows: {report}"
    );
    let equivalence = &report["equivalence"];
    assert_eq!(
        equivalence["engines"],
        serde_json::json!(["datafusion", "ballista"])
    );
    let tables = equivalence["tables"].as_array().unwrap();
    assert!(tables.len() >= 5, "{equivalence}");
    for t in tables {
        assert_eq!(t["equal"], true, "{t}");
    }
    assert!(
        tables.iter().any(|t| t["left_rows"].as_u64() > Some(0)),
        "{equivalence}"
    );
    assert_eq!(equivalence["equal"], true);

    // Both executors read the input from Garage, each from its own address, as did the driver.
    let clients = forwarder.clients();
    for role in ["executor-0", "executor-1", "driver"] {
        assert!(
            clients.contains(&IpAddr::V4(network.host(role))),
            "{role} ({}) never reached Garage; Garage's clients: {clients:?}",
            network.host(role)
        );
    }
    let stages: Vec<String> = on_cluster
        .iter()
        .map(|s| format!("{} {} rows", s["stage"], s["rows_in"]))
        .collect();
    eprintln!(
        "on the cluster: {}; Garage's clients: {clients:?}; {:.1} s",
        stages.join(", "),
        started.elapsed().as_secs_f64()
    );
    // Drop order: the processes, then the forwarder, then the network (reverse of creation).
}
