//! A standby on another host takes over a Dhan account while the dead holder's exit is still on
//! the wire: two live engines as real processes sharing a PostgreSQL store and a Redis lease,
//! each with its own data directory (so the standby has no copy of the holder's order journal).
//! The holder is killed right after Dhan accepted its exit, its store lagging (the store still
//! holds the position active), and the simulator keeps that exit in TRANSIT long enough for the
//! standby to take over and decide the same exit under the same deterministic id. The standby
//! presumes that id sent (`instance.lease = "redis"`): it looks it up instead of sending it, and
//! the position closes on the holder's exit, with exactly one exit order at the broker.

mod common;
mod live_support;
mod process_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use live_support::{A, CLIENT_ID, LiveSim, TOKEN, process_config_text, rupees, sim_config};
use process_support::{Process, get, open, spawn, wait_for};
use scalper::domain::PositionId;
use scalper::sim::broker::{FaultConfig, SimBrokerConfig};
use scalper::store::Store;
use scalper::store::postgres::{PgOptions, PgStore};

/// A database of its own on the test server, dropped afterwards.
struct TestDb {
    admin: String,
    name: String,
    url: String,
    password: Option<String>,
}

impl TestDb {
    fn new() -> TestDb {
        let admin = common::database_url();
        let cfg = scalper::store::postgres::config(&admin, &PgOptions::default()).unwrap();
        let name = format!("scalper_standby_{}_{}", std::process::id(), fastrand::u32(..));
        let mut c = cfg.connect(::postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let addr = common::pg_addr(&admin);
        let url = format!(
            "host={} port={} user={} dbname={name}",
            addr.ip(),
            addr.port(),
            cfg.get_user().unwrap_or("postgres")
        );
        let password = cfg.get_password().map(|p| String::from_utf8_lossy(p).to_string());
        TestDb { admin, name, url, password }
    }

    fn store(&self) -> PgStore {
        let opts = PgOptions {
            password: self.password.clone().map(scalper::config::Secret::new),
            ..PgOptions::default()
        };
        PgStore::connect(&self.url, &opts).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(cfg) = scalper::store::postgres::config(&self.admin, &PgOptions::default())
            && let Ok(mut c) = cfg.connect(::postgres::NoTls)
        {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

struct Host {
    dir: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
}

fn host(sim: &LiveSim, db: &TestDb, prefix: &str) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let text = process_config_text(sim).replace(
        &format!("data_dir = \"{}\"", sim.dir.path().display()),
        &format!("data_dir = \"{}\"", data.display()),
    );
    let text = format!(
        "{text}\n[redis]\nenabled = true\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\n\
         [instance]\nlease = \"redis\"\nlease_ttl_ms = 1500\nrenew_every_ms = 300\n\
         [store]\nbackend = \"postgres\"\npostgres_url = \"{}\"\n",
        common::redis_url(),
        db.url
    );
    let config = dir.path().join("engine.toml");
    std::fs::write(&config, text).unwrap();
    Host { dir, data, config }
}

fn start(h: &Host, name: &str, db: &TestDb, failpoints: &str) -> Process {
    let mut env = vec![
        ("DHAN_CLIENT_ID", CLIENT_ID),
        ("DHAN_ACCESS_TOKEN", TOKEN),
        ("SCALPER_FAILPOINTS", failpoints),
    ];
    if let Some(p) = db.password.as_deref() {
        env.push(("PGPASSWORD", p));
    }
    spawn(h.dir.path(), &h.config, name, &env)
}

fn trading(engine: &mut Process, data: &Path) -> std::net::SocketAddr {
    let addr = engine.wait_active(data);
    wait_for("trading starts", || {
        get(addr, "/health").1.to_string().contains("\"reconciliation\":{\"status\":\"ok\"")
    });
    addr
}

#[test]
fn a_standby_taking_over_while_the_holders_exit_is_on_the_wire_sends_no_second_exit() {
    // Long enough in TRANSIT for the standby to take the lease and decide the same exit.
    let sim = LiveSim::start(SimBrokerConfig {
        transit: Duration::from_millis(6_000),
        ..sim_config(FaultConfig::default())
    });
    let db = TestDb::new();
    let prefix = format!("t{}s{}:", std::process::id(), fastrand::u32(..));
    let (h1, h2) = (host(&sim, &db, &prefix), host(&sim, &db, &prefix));

    let point = "broker.exit_accepted";
    let mut holder =
        start(&h1, "holder", &db, &format!("{point}=kill,store_writer.batch=sleep:3000"));
    let addr = trading(&mut holder, &h1.data);
    let mut standby = start(&h2, "standby", &db, "");
    standby.wait_http(&h2.data);
    standby.wait_log("standby: lease");

    let id = open(addr, A, "LONG");
    let mut store = db.store();
    wait_for("the store holds the position", || {
        store.positions().unwrap_or_default().iter().any(|p| p.id.as_str() == id)
    });
    sim.prices.set_price(A, rupees("89.00"));
    let code = holder.wait_exit(Duration::from_secs(60));
    assert_eq!(code, -1, "killed at {point}: {}", holder.log());
    let pid = PositionId::new(id.clone());
    assert_eq!(sim.exits_of(&pid).len(), 1, "the holder's exit reached Dhan");

    let addr = trading(&mut standby, &h2.data);
    wait_for("the position closes", || get(addr, "/v1/pnl").1["closed_today"].as_u64() == Some(1));
    sim.assert_one_filled_exit(&pid);
    assert_eq!(sim.posts_of(&format!("X1-{id}")), 1, "the standby did not send X1 again");
    let log = standby.log();
    assert!(!log.contains("closed_at_broker"), "{log}");
    standby.signal(libc::SIGTERM);
    assert_eq!(standby.wait_exit(Duration::from_secs(30)), 0, "{}", standby.log());
    drop(standby);
    sim.shutdown();
}
