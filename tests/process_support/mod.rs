//! The real binary for the restart and instance tests: `scalper run` on a config written by
//! the test, prices from a simulator feed in the test process, the control API with a known
//! token, and conditions awaited with deadlines.
#![allow(dead_code)]

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scalper::domain::{InstrumentKey, Paise, Segment};
use scalper::sim::feed::{SimFeed, SimFeedConfig, SimFeedControl};
use scalper::sim::prices::PriceBoard;
use serde_json::Value;

pub const TOKEN: &str = "persist-tests-control-token";
pub const DEADLINE: Duration = Duration::from_secs(60);

pub const A: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
pub const B: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52176);

/// The simulator's feed, with the credentials a paper config falls back to.
pub fn sim_feed() -> (SimFeed, SimFeedControl) {
    let sim =
        SimFeed::start(SimFeedConfig::new("1000000001", "sim-access-token"), PriceBoard::new())
            .expect("simulator feed starts");
    let control = sim.control();
    (sim, control)
}

pub fn rupees(text: &str) -> Paise {
    Paise::parse_rupees(text).expect("valid test price")
}

/// A paper engine's config against `feed_url`; `extra` adds tables. Every day is a trading day
/// and entries stay open until a second before midnight (a run that crosses midnight IST
/// starts a new session and fails).
pub fn config_text(data_dir: &Path, feed_url: &str, extra: &str) -> String {
    format!(
        r#"mode = "paper"
data_dir = "{}"
[http]
listen = "127.0.0.1:0"
[feed]
source = "sim"
url = "{feed_url}/"
mode = "ticker"
watchlist = ["NSE_FNO:52175", "NSE_FNO:52176"]
reconnect_base_ms = 20
reconnect_cap_ms = 200
[sim]
enabled = false
[pnl]
refresh_ms = 50
[heartbeat]
interval_secs = 1
[risk]
stale_after_ms = 600000
[session]
entry_cutoff_time = "23:59:58"
square_off_time = "23:59:59"
weekends = true
holidays = []
[entries]
demo = false
{extra}
"#,
        data_dir.display()
    )
}

/// One `scalper run` process.
pub struct Process {
    pub child: Child,
    pub dir: PathBuf,
    pub log_path: PathBuf,
    pub name: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `scalper run` on `config` (a file); its data lives under `dir/data`, its log in
/// `dir/<name>.log` (appended, so restarts share it).
pub fn spawn(dir: &Path, config: &Path, name: &str, env: &[(&str, &str)]) -> Process {
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scalper"));
    cmd.arg("run").arg("--config").arg(config).stdout(Stdio::null()).stderr(log);
    cmd.env("SCALPER_CONTROL_TOKEN", TOKEN).env("RUST_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Process {
        child: cmd.spawn().unwrap(),
        dir: dir.to_path_buf(),
        log_path,
        name: name.to_string(),
    }
}

impl Process {
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the HTTP address file and any answer from `/health`.
    pub fn wait_http(&mut self, data_dir: &Path) -> SocketAddr {
        let addr_file = data_dir.join("http.addr");
        let deadline = Instant::now() + DEADLINE;
        loop {
            assert!(
                Instant::now() < deadline,
                "{} has no HTTP in time; log:\n{}",
                self.name,
                self.log()
            );
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited early with {status}; log:\n{}", self.name, self.log());
            }
            if let Ok(text) = std::fs::read_to_string(&addr_file)
                && let Ok(addr) = text.trim().parse::<SocketAddr>()
                && get(addr, "/health").0 != 0
            {
                return addr;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `/health` answers 200 with a status other than `standby`.
    pub fn wait_active(&mut self, data_dir: &Path) -> SocketAddr {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let addr = self.wait_http(data_dir);
            let (code, body) = get(addr, "/health");
            if code == 200
                && body["status"] != "standby"
                && body["workers"].as_array().is_some_and(|w| !w.is_empty())
            {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "{} not active in time; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0);
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    pub fn wait_exit(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit in time; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `cond` holds while the process runs; on a timeout, or when the process
    /// has exited meanwhile, fails with its log (a bare timeout says nothing of why).
    pub fn wait_for(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !cond() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited ({status}) before {what}; log:\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}; log of {}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + DEADLINE;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log of {}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn answer(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    match r {
        Ok(mut r) => {
            let code = r.status().as_u16();
            let text = r.body_mut().read_to_string().unwrap_or_default();
            (code, serde_json::from_str(&text).unwrap_or(Value::String(text)))
        }
        Err(_) => (0, Value::Null),
    }
}

pub fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    answer(
        agent()
            .get(format!("http://{addr}{path}"))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .call(),
    )
}

pub fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    answer(
        agent()
            .post(format!("http://{addr}{path}"))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .header("Content-Type", "application/json")
            .send(body),
    )
}

/// Opens a position through the API; returns its id.
pub fn open(addr: SocketAddr, instrument: InstrumentKey, side: &str) -> String {
    let body =
        serde_json::json!({ "instrument": instrument.to_string(), "side": side, "quantity": 75 });
    // Until the feed's first price of the instrument has arrived the entry is refused.
    let mut last = (0, Value::Null);
    wait_for(&format!("an entry on {instrument} is accepted"), || {
        last = post(addr, "/v1/orders", &body.to_string());
        last.0 != 422 || last.1["code"] != "no_price"
    });
    let (code, answer) = last;
    assert_eq!(code, 202, "entry accepted: {answer}");
    let id = answer["position_id"].as_str().unwrap().to_string();
    wait_for(&format!("position {id} open"), || position(addr, &id).is_some());
    id
}

/// A position as `/v1/positions` shows it.
pub fn position(addr: SocketAddr, id: &str) -> Option<Value> {
    let (_, body) = get(addr, "/v1/positions");
    body["positions"].as_array()?.iter().find(|p| p["id"] == id).cloned()
}

pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The datagrams sent to a `NOTIFY_SOCKET`, read until one holds the line `want`.
pub fn notify_until(
    sock: &UnixDatagram,
    want: &str,
    seen: &mut Vec<String>,
    log: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m| m.lines().any(|l| l == want)) {
        assert!(
            Instant::now() < deadline,
            "no {want} from the engine, got {seen:?}; log:\n{}",
            log()
        );
        match sock.recv(&mut buf) {
            Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("notify socket: {e}"),
        }
    }
}
