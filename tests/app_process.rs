//! The real binary as systemd runs it: startup, readiness and watchdog notifications, signals,
//! config reload and escalation.

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod process_support;
use process_support::notify_until;

struct Engine {
    child: Child,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(dir: &Path, extra: &str) -> String {
    format!(
        "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n{extra}",
        dir.join("data").display().to_string()
    )
}

fn start(extra: &str, env: &[(&str, &str)]) -> Engine {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scalper.toml");
    std::fs::write(&config, config_text(dir.path(), extra)).unwrap();
    let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scalper"));
    cmd.arg("run").arg("--config").arg(&config).stdout(Stdio::null()).stderr(log);
    cmd.env_remove("SCALPER_CONTROL_TOKEN").env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Engine { child: cmd.spawn().unwrap(), dir, config }
}

impl Engine {
    fn log(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(self.dir.path().join("stderr.log"))
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }

    /// Waits for the HTTP address file and a 200 from /health.
    fn wait_healthy(&mut self) -> SocketAddr {
        let addr_file = self.dir.path().join("data").join("http.addr");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "engine not healthy in time; log:\n{}", self.log());
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("engine exited early with {status}; log:\n{}", self.log());
            }
            if let Ok(text) = std::fs::read_to_string(&addr_file)
                && let Ok(addr) = text.trim().parse::<SocketAddr>()
                && get(addr, "/health").0 == 200
            {
                return addr;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0);
    }

    fn wait_exit(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "engine did not exit in time; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log().contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?} in the log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    match agent.get(format!("http://{addr}{path}")).call() {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

#[test]
fn sigterm_shuts_down_gracefully_with_exit_code_0() {
    let mut e = start("", &[]);
    let addr = e.wait_healthy();
    let (status, metrics) = get(addr, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("scalper_worker_up"), "{metrics}");
    e.signal(libc::SIGTERM);
    assert_eq!(e.wait_exit(Duration::from_secs(20)), 0, "log:\n{}", e.log());
    let log = e.log();
    assert!(log.contains("Shutting down"), "{log}");
    assert!(log.contains("Stopped"), "{log}");
    assert!(!e.dir.path().join("data/http.addr").exists(), "the address file is removed");
}

#[test]
fn sighup_applies_a_good_risk_change_and_refuses_a_broken_file() {
    let mut e = start("", &[]);
    let addr = e.wait_healthy();
    std::fs::write(&e.config, config_text(e.dir.path(), "[risk]\nstop_loss_pct = 7.5\n")).unwrap();
    e.signal(libc::SIGHUP);
    e.wait_log("Config reload: risk.stop_loss_pct");

    std::fs::write(&e.config, config_text(e.dir.path(), "[risk]\nstop_loss_pct = 7.555\n"))
        .unwrap();
    e.signal(libc::SIGHUP);
    e.wait_log("Config reload refused");
    assert!(
        e.log().contains("risk.stop_loss_pct: 7.555 has more than two decimals"),
        "{}",
        e.log()
    );
    assert_eq!(get(addr, "/health").0, 200, "still running after a refused reload");

    // A change that needs a restart is refused too.
    std::fs::write(&e.config, config_text(e.dir.path(), "[store]\nqueue_capacity = 128\n"))
        .unwrap();
    e.signal(libc::SIGHUP);
    e.wait_log("store.queue_capacity");
    assert_eq!(get(addr, "/health").0, 200);
    e.signal(libc::SIGTERM);
    assert_eq!(e.wait_exit(Duration::from_secs(20)), 0);
}

#[test]
fn a_worker_that_exhausts_its_restart_budget_halts_trading_and_exits_non_zero() {
    let extra = "[runtime]\nbackoff_base_ms = 10\nbackoff_cap_ms = 20\nrestart_budget = 2\n";
    let mut e = start(extra, &[("SCALPER_FAILPOINTS", "http.loop=always")]);
    let code = e.wait_exit(Duration::from_secs(60));
    let log = e.log();
    assert_eq!(code, 1, "log:\n{log}");
    assert!(log.contains("FAILPOINTS ARMED"), "{log}");
    assert!(log.contains("exhausted its restart budget"), "{log}");
    assert!(log.contains("ALERT halting trading"), "{log}");
    assert!(log.contains("Shutting down") || log.contains("Stopped after worker"), "{log}");
}

#[test]
fn a_bad_config_starts_nothing_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[risk]\nstop_loss_pct = 1.234\n[limits]\nmax_trades_per_day = -1\n")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_scalper"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("risk.stop_loss_pct"), "{err}");
    assert!(err.contains("limits.max_trades_per_day"), "{err}");
}

#[test]
fn under_systemd_it_notifies_ready_then_pings_the_watchdog_and_says_stopping() {
    let sock_dir = tempfile::tempdir().unwrap();
    let path = sock_dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let path = path.to_str().unwrap().to_string();
    // WatchdogSec=2s: pings every second while every worker is healthy.
    let mut e = start("", &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "2000000")]);
    let mut seen = Vec::new();
    notify_until(&sock, "READY=1", &mut seen, || e.log());
    let ready = seen.len();
    assert!(
        seen[..ready - 1].iter().all(|m| !m.contains("WATCHDOG=1")),
        "no watchdog ping before readiness: {seen:?}"
    );
    let addr = e.wait_healthy();
    assert_eq!(get(addr, "/health").0, 200, "every worker is up when READY=1 has been sent");
    notify_until(&sock, "WATCHDOG=1", &mut seen, || e.log());
    e.signal(libc::SIGTERM);
    notify_until(&sock, "STOPPING=1", &mut seen, || e.log());
    assert_eq!(e.wait_exit(Duration::from_secs(30)), 0, "{}", e.log());
    let ready_at = seen.iter().position(|m| m.contains("READY=1")).unwrap();
    let stopping_at = seen.iter().position(|m| m.contains("STOPPING=1")).unwrap();
    assert!(ready_at < stopping_at, "{seen:?}");
}

/// Runs `scalper ARGS` to completion within `within`; its exit code and stderr.
fn run_cli(args: &[&str], config: &Path, within: Duration) -> (i32, String, Duration) {
    let err_path = config.with_extension(format!("{}.err", args[0]));
    let err = std::fs::File::create(&err_path).unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_scalper"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("SCALPER_CONTROL_TOKEN")
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "scalper {args:?} still running after {within:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (code, std::fs::read_to_string(&err_path).unwrap_or_default(), started.elapsed())
}

#[test]
fn a_second_engine_on_the_same_data_dir_exits_1_at_once_and_leaves_the_first_untouched() {
    let mut a = start("", &[]);
    let addr = a.wait_healthy();
    let data = a.dir.path().join("data");
    let token = std::fs::read_to_string(data.join("control-token")).unwrap();
    let addr_text = std::fs::read_to_string(data.join("http.addr")).unwrap();

    // B: the same config, the same data directory.
    let (code, stderr, took) = run_cli(&["run"], &a.config, Duration::from_secs(20));
    assert_eq!(code, 1, "the second engine refuses to start; stderr:\n{stderr}");
    assert!(took < Duration::from_secs(1), "refused within a second, took {took:?}");
    assert!(
        stderr.contains(&format!("pid {}", a.child.id())) && stderr.contains("in use"),
        "the message names the holder's pid: {stderr}"
    );

    // Nothing of A's was touched, and A is still reachable through them.
    assert_eq!(std::fs::read_to_string(data.join("control-token")).unwrap(), token);
    assert_eq!(std::fs::read_to_string(data.join("http.addr")).unwrap(), addr_text);
    let lock = std::fs::read_to_string(data.join("lock")).unwrap();
    assert_eq!(lock.trim(), a.child.id().to_string(), "the holder's pid is in the lock file");
    assert_eq!(get(addr, "/health").0, 200);
    let (code, out, _) = run_cli(&["status"], &a.config, Duration::from_secs(30));
    assert_eq!(code, 0, "status reaches A: {out}");
    let (code, out, _) = run_cli(&["flatten"], &a.config, Duration::from_secs(30));
    assert_eq!(code, 0, "flatten reaches A: {out}");
    e_stop(&mut a);
}

fn e_stop(e: &mut Engine) {
    e.signal(libc::SIGTERM);
    assert_eq!(e.wait_exit(Duration::from_secs(20)), 0, "log:\n{}", e.log());
}
