//! The process: `scalper run --config FILE`. Loads and validates the configuration and the
//! secrets, locks the data directory (one engine per directory; a second process exits 1),
//! claims the account's instance lease when one is configured (waiting as a standby while
//! another process holds it), builds the engine (which runs startup recovery), starts the
//! supervisor with the engine's workers and the HTTP worker, tells systemd when it is ready,
//! pings the watchdog while the process is alive (the supervisor loop going round, no worker
//! stuck; a health component down is an alert, never a reason to be killed), reloads the
//! live-safe parts of the configuration on SIGHUP, and shuts down in reverse start order on
//! SIGINT/SIGTERM or when a worker exhausts its restart budget or loses the instance lease
//! (then it halts trading first and exits non-zero so that systemd restarts it).
//!
//! Exit codes: 0 after a requested shutdown, 1 after an escalation, a startup failure or a
//! data directory in use by another process, 2 for a bad configuration or missing secrets
//! (nothing is started then).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::select;

use crate::cli::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::config::{Config, Secrets, reload_from_file};
use crate::domain::{Clock, SystemClock};
use crate::engine::seams::EngineEvent;
use crate::engine::{self, Engine, EngineEnv};
use crate::exec::{Alert, AlertLevel, CoreEvent};
use crate::instance::{self, Instance, StandbyHttp};
use crate::ops::health::{HealthBoard, HealthWatch, Transition};
use crate::ops::http::{self, HttpWorker};
use crate::ops::logging;
use crate::ops::metrics::Metrics;
use crate::risk::trading_state::{HaltCause, TradingCommand};
use crate::runtime::dir_lock::DataDirLock;
use crate::runtime::signals::{SignalEvent, SignalListener};
use crate::runtime::{
    Supervisor, SupervisorConfig, SupervisorEvent, SupervisorHandle, SupervisorOutcome, WorkerSpec,
    failpoint, host, panic_hook, systemd,
};

pub use crate::ops::remote::HTTP_ADDR_FILE;

/// How long the HTTP worker may go without a heartbeat.
const HTTP_HEARTBEAT_LIMIT: Duration = Duration::from_secs(5);

/// How often the main loop reads the health board (at least as often as it pings systemd).
const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The alert code of a health component that went down.
const COMPONENT_DOWN: &str = "component_down";

/// The alert code of a worker that exhausted its restart budget.
const WORKER_ESCALATION: &str = "worker_escalation";

/// The alert code of a lost instance lease.
const LEASE_LOST: &str = "lease_lost";

/// A critical alert from the process itself: `alerts_total`, the event sinks (store, Redis,
/// the alert notifier). Never blocks.
fn raise_critical(
    shared: &crate::engine::shared::Shared,
    code: &str,
    message: String,
    at: crate::domain::Timestamp,
) {
    shared.m.alert(code, AlertLevel::Critical);
    let alert = Alert { level: AlertLevel::Critical, code: code.to_string(), message, at };
    shared.sink.record(&EngineEvent::Core(CoreEvent::Alert(alert)));
}

/// Runs the engine until it is asked to stop; returns the process exit code.
pub fn run(config_path: &Path) -> u8 {
    logging::init();
    panic_hook::install();
    let armed = failpoint::init_from_env();
    if !armed.is_empty() {
        log::warn!(target: "app", "FAILPOINTS ARMED (testing only): {}", armed.join(", "));
    }
    crate::feed::reader::install_crypto_provider();

    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(errors) => {
            for line in errors.lines() {
                eprintln!("{line}");
            }
            return EXIT_USAGE;
        }
    };
    let secrets = match Secrets::from_process_env(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: {e}", config_path.display());
            return EXIT_USAGE;
        }
    };
    // One engine per data directory: the lock comes before anything touches the directory,
    // and a refused process leaves everything of the holder's as it is.
    let lock = match lock_data_dir(&config.data_dir) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("scalper: not starting: {e:#}");
            return EXIT_FAILURE;
        }
    };
    let addr_file = config.data_dir.join(HTTP_ADDR_FILE);
    let code = match start(config_path, config, secrets) {
        Ok(Some(running)) => running.wait(),
        Ok(None) => EXIT_OK,
        Err(e) => {
            log::error!(target: "app", "Startup failed: {e:#}");
            let _ = std::fs::remove_file(&addr_file);
            EXIT_FAILURE
        }
    };
    // Released only now: everything this process wrote into the directory is cleaned up.
    drop(lock);
    code
}

/// A started engine: the supervisor and what the main loop needs.
struct Running {
    config_path: PathBuf,
    config: Config,
    supervisor: SupervisorHandle,
    signals: SignalListener,
    engine: Engine,
    health: HealthBoard,
    addr_file: PathBuf,
    instance: Instance,
    clock: Arc<dyn Clock>,
    /// Why the instance lease was lost, if it was.
    lease_lost: Option<String>,
}

/// Creates the data directory if needed and takes its lock.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<DataDirLock> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data_dir {}: {e}", data_dir.display()))?;
    Ok(DataDirLock::acquire(data_dir)?)
}

/// Starts the engine; `None` when asked to stop while waiting as a standby.
fn start(config_path: &Path, config: Config, secrets: Secrets) -> anyhow::Result<Option<Running>> {
    let control_token = secrets
        .control_token_or_generate(&config)
        .map_err(|e| anyhow::anyhow!("control token: {e}"))?;
    if config.host.mlockall {
        host::lock_memory();
    }

    let metrics = Metrics::new();
    let health = HealthBoard::new();
    // Listening (and taking signals) before the lease: a standby answers /health and stops on
    // SIGTERM while it waits.
    let (server, addr) = http::bind(&config.http.listen.to_string())?;
    let addr_file = config.data_dir.join(HTTP_ADDR_FILE);
    std::fs::write(&addr_file, format!("{addr}\n"))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", addr_file.display()))?;
    let signals = SignalListener::install()?;
    let max_body = config.http.max_body_bytes;
    let standby_http = StandbyHttp {
        server: server.clone(),
        control_token: control_token.clone(),
        max_body_bytes: max_body,
    };
    let Some(mut instance) =
        instance::claim(&config, &secrets, &metrics, &health, &standby_http, signals.events())?
    else {
        signals.close();
        let _ = std::fs::remove_file(&addr_file);
        return Ok(None);
    };

    let mut supervisor = Supervisor::new(supervisor_config(&config), metrics.clone());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let env = EngineEnv {
        config: config.clone(),
        secrets,
        metrics: metrics.clone(),
        health: health.clone(),
        workers: supervisor.status_table(),
        clock: clock.clone(),
    };
    let mut engine = engine::build_active(env, instance.gate().clone())?;

    add_engine_workers(&mut supervisor, &config, std::mem::take(&mut engine.workers));
    let api = engine.api.clone();
    supervisor.add(
        WorkerSpec::new("http", limit_for(&config, "http", HTTP_HEARTBEAT_LIMIT), move || {
            Box::new(HttpWorker::new(server.clone(), api.clone(), control_token.clone(), max_body))
        })
        .pinned_to(config.host.pin.get("http").copied()),
    );
    let trading = engine.trading.clone();
    let hook_clock = clock.clone();
    let hook_shared = engine.shared.clone();
    supervisor.on_escalation(move |worker, reason| {
        log::error!(
            target: "app",
            "ALERT halting trading: worker {worker} exhausted its restart budget ({reason})"
        );
        raise_critical(
            &hook_shared,
            WORKER_ESCALATION,
            format!("worker {worker} exhausted its restart budget ({reason}): trading halted, the engine stops"),
            hook_clock.now(),
        );
        if let Err(e) =
            trading.apply(TradingCommand::Halt { cause: HaltCause::Escalation }, hook_clock.now())
        {
            log::error!(target: "app", "Could not halt trading: {e}");
        }
    });

    let supervisor = supervisor.start()?;
    instance.engine_started();
    banner(&config, addr, &engine);
    Ok(Some(Running {
        config_path: config_path.to_path_buf(),
        config,
        supervisor,
        signals,
        engine,
        health,
        addr_file,
        instance,
        clock,
        lease_lost: None,
    }))
}

impl Running {
    /// The main loop: signals, supervisor events and the systemd watchdog, until shutdown.
    fn wait(mut self) -> u8 {
        let ping_every = systemd::watchdog_ping_interval();
        let ticker = crossbeam_channel::tick(
            ping_every.map_or(HEALTH_CHECK_EVERY, |p| p.min(HEALTH_CHECK_EVERY)),
        );
        let mut watch = HealthWatch::new(&self.engine.shared.metrics);
        let signals = self.signals.events().clone();
        let events = self.supervisor.events().clone();
        let lost = self.instance.lost().clone();
        let mut ready = false;
        loop {
            select! {
                recv(lost) -> why => {
                    let why = why.unwrap_or_else(|_| "the lease keeper ended".to_string());
                    log::error!(target: "app", "ALERT halting trading: the instance lease is lost ({why})");
                    raise_critical(
                        &self.engine.shared,
                        LEASE_LOST,
                        format!("the instance lease is lost ({why}): trading halted, the engine stops"),
                        self.clock.now(),
                    );
                    let halt = TradingCommand::Halt { cause: HaltCause::Escalation };
                    if let Err(e) = self.engine.trading.apply(halt, self.clock.now()) {
                        log::error!(target: "app", "Could not halt trading: {e}");
                    }
                    self.lease_lost = Some(why);
                    break;
                }
                recv(signals) -> sig => match sig {
                    Ok(SignalEvent::Shutdown) | Err(_) => break,
                    Ok(SignalEvent::Reload) => self.reload(),
                },
                recv(events) -> ev => {
                    match ev {
                        Ok(SupervisorEvent::AllUp) if !ready => {
                            ready = true;
                            systemd::notify_ready();
                            log::info!(target: "app", "All workers are up");
                        }
                        Ok(SupervisorEvent::Escalating { .. }) => break,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                recv(ticker) -> _ => {
                    if self.supervisor.is_finished() {
                        break;
                    }
                    for change in watch.check(&self.health) {
                        self.report(change);
                    }
                    // Alive, not healthy: a component down is reported above, never by
                    // letting systemd kill the process.
                    if ping_every.is_some() && self.supervisor.alive() {
                        systemd::notify_watchdog();
                    }
                }
            }
        }
        self.shutdown()
    }

    /// A component went down or came back: a critical alert (log, `alerts_total`, the event
    /// stream), or a log line.
    fn report(&self, change: Transition) {
        match change {
            Transition::Down { component, reason } => {
                let message = format!("health component {component} is down: {reason}");
                log::error!(target: "app", "ALERT {message} (the engine keeps running)");
                let shared = &self.engine.shared;
                shared.m.alert(COMPONENT_DOWN, AlertLevel::Critical);
                let alert = Alert {
                    level: AlertLevel::Critical,
                    code: COMPONENT_DOWN.to_string(),
                    message,
                    at: self.clock.now(),
                };
                shared.sink.record(&EngineEvent::Core(CoreEvent::Alert(alert)));
            }
            Transition::Recovered { component } => {
                log::info!(target: "app", "health component {component} is no longer down");
            }
        }
    }

    /// SIGHUP: applies the live-safe part of the file, or refuses it and keeps running as is.
    fn reload(&mut self) {
        match reload_from_file(&self.config, &self.config_path) {
            Ok(reload) => {
                if reload.changes.is_empty() {
                    log::info!(target: "app", "Config reload: no live-applicable change");
                }
                for change in &reload.changes {
                    log::info!(
                        target: "app",
                        "Config reload: {} {} -> {}",
                        change.key,
                        change.old,
                        change.new
                    );
                }
                (self.engine.reload)(&reload.config);
                self.config = reload.config;
            }
            Err(e) => {
                log::error!(target: "app", "Config reload refused, running config unchanged: {e}");
            }
        }
    }

    fn shutdown(self) -> u8 {
        systemd::notify_stopping();
        log::info!(target: "app", "Shutting down");
        self.supervisor.shutdown();
        let outcome = self.supervisor.join();
        self.signals.close();
        let _ = std::fs::remove_file(&self.addr_file);
        drop(self.engine);
        self.instance.release();
        if let Some(why) = self.lease_lost {
            log::error!(target: "app", "Stopped after losing the instance lease: {why}");
            return EXIT_FAILURE;
        }
        match outcome {
            SupervisorOutcome::Stopped { left_behind } => {
                if !left_behind.is_empty() {
                    log::warn!(
                        target: "app",
                        "Stopped; left behind (missed their stop deadline): {}",
                        left_behind.join(", ")
                    );
                } else {
                    log::info!(target: "app", "Stopped");
                }
                EXIT_OK
            }
            SupervisorOutcome::Escalated { worker, reason, .. } => {
                log::error!(
                    target: "app",
                    "Stopped after worker {worker} exhausted its restart budget: {reason}"
                );
                EXIT_FAILURE
            }
        }
    }
}

fn supervisor_config(config: &Config) -> SupervisorConfig {
    let r = &config.runtime;
    SupervisorConfig {
        backoff_base: r.backoff_base,
        backoff_cap: r.backoff_cap,
        restart_budget: r.restart_budget,
        restart_window: r.restart_window,
        stop_deadline: r.stop_deadline,
        check_every: Duration::from_millis(100),
    }
}

/// Adds the engine's workers with the operator's overrides applied: a configured heartbeat
/// limit replaces the worker's own, and `[host] pin` pins it. Names in those tables that match
/// no worker are reported, since a typo there would silently do nothing.
fn add_engine_workers(supervisor: &mut Supervisor, config: &Config, workers: Vec<WorkerSpec>) {
    let mut names: Vec<String> = vec!["http".into()];
    for mut spec in workers {
        if let Some(limit) = config.runtime.heartbeat_limits.get(&spec.name) {
            spec.heartbeat_limit = *limit;
        }
        if let Some(core) = config.host.pin.get(&spec.name) {
            spec.core = Some(*core);
        }
        names.push(spec.name.clone());
        supervisor.add(spec);
    }
    let unknown = |table: &str, name: &String| {
        if !names.contains(name) {
            log::warn!(
                target: "app",
                "{table}.{name} names no worker (workers: {})",
                names.join(", ")
            );
        }
    };
    config.runtime.heartbeat_limits.keys().for_each(|n| unknown("runtime.heartbeat_limits", n));
    config.host.pin.keys().for_each(|n| unknown("host.pin", n));
}

fn limit_for(config: &Config, worker: &str, default: Duration) -> Duration {
    config.runtime.heartbeat_limits.get(worker).copied().unwrap_or(default)
}

fn banner(config: &Config, addr: std::net::SocketAddr, engine: &Engine) {
    let lines = [
        format!(
            "scalper {} running in {} mode ({})",
            env!("CARGO_PKG_VERSION"),
            mode(config),
            config.summary()
        ),
        format!("health:  http://{addr}/health"),
        format!("metrics: http://{addr}/metrics"),
        format!(
            "control: http://{addr}/v1/ (bearer token from SCALPER_CONTROL_TOKEN or {})",
            crate::config::control_token_path(&config.data_dir).display()
        ),
    ];
    for line in lines.iter().chain(engine.banner.iter()) {
        log::info!(target: "app", "{line}");
    }
}

fn mode(config: &Config) -> &'static str {
    match config.mode {
        crate::config::Mode::Paper => "paper",
        crate::config::Mode::Live => "live",
    }
}
