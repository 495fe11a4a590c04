//! floe on a cluster: a Ballista (DataFusion's distributed form) scheduler and executors built into
//! the `floe` binary (`floe cluster scheduler`, `floe cluster executor`), so that every process of
//! the cluster knows floe's rule functions and reaches the warehouse with floe's storage settings.
//! The client side is the `ballista` engine (`pipeline::engine::ballista`), which owns the session
//! configuration, the runtime and the functions every process of the cluster shares; this module
//! only hosts them (it depends on the engine, never the other way round). Scheduling is push-based
//! (executors send heartbeats every few seconds, so a busy executor is never taken for dead, and a
//! killed one is noticed within seconds and its tasks run elsewhere).

pub mod loopback;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::config::TaskSchedulingPolicy;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionConfig;

use crate::config::Settings;
use crate::error::{Error, ErrorKind, Result};
use crate::pipeline::engine::ballista::{rule_functions, runtime, session_config};
use crate::pipeline::engine::cluster_write::{query_planner, FloeLogicalCodec, FloePhysicalCodec};
use crate::storage::ObjectStorage;

/// The default scheduler address.
pub const DEFAULT_SCHEDULER: &str = "127.0.0.1:50050";

/// How often executors report, and how long without a report makes one dead.
const HEARTBEAT_SECONDS: u64 = 3;
const EXECUTOR_TIMEOUT_SECONDS: u64 = 15;

/// Run a scheduler on `bind` until the process ends.
pub async fn run_scheduler(settings: &Settings, bind: SocketAddr) -> Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    let runtime = runtime(settings)?;
    let mut config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        external_host: bind.ip().to_string(),
        scheduling_policy: TaskSchedulingPolicy::PushStaged,
        executor_timeout_seconds: EXECUTOR_TIMEOUT_SECONDS,
        expire_dead_executor_interval_seconds: 2,
        task_max_failures: 4,
        override_config_producer: Some(Arc::new(session_config)),
        override_logical_codec: Some(Arc::new(FloeLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(FloePhysicalCodec::default())),
        ..Default::default()
    };
    config.override_session_builder = Some(Arc::new(move |c: SessionConfig| {
        use datafusion::execution::FunctionRegistry;
        let mut state = SessionStateBuilder::new()
            .with_config(c)
            .with_runtime_env(runtime.clone())
            .with_default_features()
            .with_query_planner(query_planner())
            .build();
        for f in rule_functions() {
            state.register_udf(f)?;
        }
        Ok(state)
    }));
    let config = Arc::new(config);
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| Error::new(ErrorKind::Engine, format!("cluster: {e}")))?;
    let server: Scheduler = ballista_scheduler::scheduler_process::create_scheduler(cluster, config)
        .await
        .map_err(|e| Error::new(ErrorKind::Engine, format!("scheduler on {bind}: {e}")))?;
    tokio::spawn(revive_lost_tasks(server.clone()));
    ballista_scheduler::scheduler_process::start_grpc_service(bind, server)
        .await
        .map_err(|e| Error::new(ErrorKind::Engine, format!("scheduler on {bind}: {e}")))
}

type Scheduler = ballista_scheduler::scheduler_server::SchedulerServer<
    datafusion_proto::protobuf::LogicalPlanNode,
    datafusion_proto::protobuf::PhysicalPlanNode,
>;

/// How long running jobs wait with no executor at all before they fail.
const NO_EXECUTORS_GRACE_SECONDS: u64 = 30;

/// Keep running jobs moving when executors die. Ballista 53's push scheduling resets the tasks of
/// a lost executor but offers them to the live executors only on the next scheduling event, which
/// may never come (the job then waits forever); and with every executor gone, its jobs wait
/// forever too. While jobs run, this offers the pending tasks again every two seconds (an empty
/// task-status report on behalf of each registered executor: Ballista's own path to a new offer
/// round), and cancels the jobs after [`NO_EXECUTORS_GRACE_SECONDS`] without any executor.
async fn revive_lost_tasks(server: Scheduler) {
    use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpc;
    use ballista_core::serde::protobuf::UpdateTaskStatusParams;
    let mut without_executors: Option<std::time::Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let running: Vec<String> = server
            .state
            .task_manager
            .get_running_job_cache()
            .keys()
            .cloned()
            .collect();
        if running.is_empty() {
            without_executors = None;
            continue;
        }
        let executors = match server.state.executor_manager.get_executors_state().await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("cluster: cannot list executors: {e}");
                continue;
            }
        };
        if executors.is_empty() {
            let since = *without_executors.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= Duration::from_secs(NO_EXECUTORS_GRACE_SECONDS) {
                for job in running {
                    tracing::warn!(
                        "cluster: no executor for {NO_EXECUTORS_GRACE_SECONDS} s; cancelling job {job}"
                    );
                    if let Err(e) = server.cancel_job(job.clone()).await {
                        tracing::warn!("cluster: cancelling job {job}: {e}");
                    }
                }
                without_executors = None;
            }
            continue;
        }
        without_executors = None;
        for (metadata, _, _) in executors {
            let report = UpdateTaskStatusParams {
                executor_id: metadata.id.clone(),
                task_status: vec![],
            };
            if let Err(e) = SchedulerGrpc::update_task_status(&server, tonic::Request::new(report)).await {
                tracing::debug!("cluster: offer round via {}: {e}", metadata.id);
            }
        }
    }
}

/// What an executor needs.
#[derive(Clone, Debug)]
pub struct ExecutorOptions {
    /// The scheduler, `HOST:PORT`.
    pub scheduler: String,
    /// Where the executor listens (Arrow Flight on this port, task gRPC on the next).
    pub bind: SocketAddr,
    /// Tasks at a time (default: the number of cores).
    pub concurrent_tasks: usize,
    /// Shuffle files (default: a directory under the system's temporary directory).
    pub work_dir: Option<std::path::PathBuf>,
    /// The host name the scheduler and other executors reach this executor by (default: the bind
    /// address; needed when binding 0.0.0.0 on a multi-machine cluster).
    pub external_host: Option<String>,
}

/// Run an executor until the process ends.
pub async fn run_executor(settings: &Settings, options: &ExecutorOptions) -> Result<()> {
    use ballista_core::registry::BallistaFunctionRegistry;
    use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
    let (host, port) = options
        .scheduler
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("scheduler {:?}: expected HOST:PORT", options.scheduler),
            )
        })?;
    let runtime = runtime(settings)?;
    // Ballista's default registry lacks DataFusion's nested functions (`range`, `unnest`'s helpers),
    // which the sessionize stage's SQL uses.
    let mut registry = BallistaFunctionRegistry::default();
    for f in datafusion::functions_nested::all_default_nested_functions() {
        registry.scalar_functions.insert(f.name().to_string(), f);
    }
    for f in rule_functions() {
        registry.scalar_functions.insert(f.name().to_string(), f);
    }
    let work_dir = match &options.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("floe-executor-{}", options.bind.port())),
    };
    std::fs::create_dir_all(&work_dir)?;
    let config = ExecutorProcessConfig {
        bind_host: options.bind.ip().to_string(),
        external_host: Some(
            options
                .external_host
                .clone()
                .unwrap_or_else(|| options.bind.ip().to_string()),
        ),
        port: options.bind.port(),
        grpc_port: options.bind.port().wrapping_add(1),
        scheduler_host: host,
        scheduler_port: port,
        concurrent_tasks: options.concurrent_tasks.max(1),
        task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
        work_dir: Some(work_dir.display().to_string()),
        executor_heartbeat_interval_seconds: HEARTBEAT_SECONDS,
        print_thread_info: false,
        override_function_registry: Some(Arc::new(registry)),
        override_runtime_producer: Some(Arc::new(move |_c: &SessionConfig| Ok(runtime.clone()))),
        override_config_producer: Some(Arc::new(session_config)),
        override_logical_codec: Some(Arc::new(FloeLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(FloePhysicalCodec::writing_with(ObjectStorage::new(
            settings.s3.clone(),
        )))),
        ..Default::default()
    };
    let config = Arc::new(config);
    // Ballista 53 spawns the executor's task gRPC server and registers at once; the scheduler
    // then connects back to that port and refuses the registration when the server has not bound
    // yet (its own TODO in `executor_server::startup`; seen on a loaded 2-core machine). A start
    // that fails within its first seconds is tried again, with backoff, a bounded number of times.
    let mut attempt = 1;
    loop {
        let started = std::time::Instant::now();
        let result = start_executor_process(config.clone()).await;
        match result {
            Ok(()) => return Ok(()),
            Err(e)
                if attempt < EXECUTOR_START_ATTEMPTS
                    && started.elapsed() < Duration::from_secs(EXECUTOR_STARTUP_SECONDS) =>
            {
                let pause = Duration::from_millis(250 << attempt);
                tracing::warn!(
                    "executor on {}: start attempt {attempt} failed ({e}); trying again in {pause:?}",
                    options.bind
                );
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Engine,
                    format!("executor on {}: {e}", options.bind),
                ))
            }
        }
    }
}

/// Starts of an executor process that fail within [`EXECUTOR_STARTUP_SECONDS`] (registration at
/// the scheduler) are tried this many times in all.
const EXECUTOR_START_ATTEMPTS: u32 = 6;
const EXECUTOR_STARTUP_SECONDS: u64 = 30;
