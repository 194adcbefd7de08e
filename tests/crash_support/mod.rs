//! The real binary in live mode against the simulator in this process, for the tests that
//! SIGKILL it (`live_crash_windows`, `live_random`): starting it with failpoints armed, waiting
//! until it trades or killed itself, and the final audit that flattens and compares the
//! engine's account with the simulator's books to the paisa.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::live_support::{CLIENT_ID, LiveSim, TOKEN, process_config_text, rupees, sim_config};
use crate::process_support::{self, Process, get, post, spawn, wait_for};
use scalper::domain::{Paise, Txn};
use scalper::pnl::ChargeSchedule;
use scalper::risk::correlation::{self, OrderRole};
use scalper::sim::broker::FaultConfig;

/// A store that lags this far behind: a kill a few milliseconds after an event finds it
/// unwritten.
pub const STORE_LAG: &str = "store_writer.batch=sleep:3000";

pub struct Rig {
    pub sim: LiveSim,
    pub data: PathBuf,
    pub config: PathBuf,
}

impl Rig {
    pub fn new() -> Rig {
        Rig::on(LiveSim::start(sim_config(FaultConfig::default())), |text| text)
    }

    /// The engine against `sim`, its process config edited by `edit`.
    pub fn on(sim: LiveSim, edit: impl FnOnce(String) -> String) -> Rig {
        let data = sim.dir.path().to_path_buf();
        let config = data.join("engine.toml");
        std::fs::write(&config, edit(process_config_text(&sim))).unwrap();
        Rig { sim, data, config }
    }

    /// Starts the engine with these failpoints armed (`""`: none).
    pub fn start(&self, failpoints: &str) -> Process {
        std::fs::remove_file(self.data.join(scalper::app::HTTP_ADDR_FILE)).ok();
        spawn(
            &self.data,
            &self.config,
            "engine",
            &[
                ("DHAN_CLIENT_ID", CLIENT_ID),
                ("DHAN_ACCESS_TOKEN", TOKEN),
                ("SCALPER_FAILPOINTS", failpoints),
            ],
        )
    }

    pub fn price(&self, k: scalper::domain::InstrumentKey, text: &str) {
        self.sim.prices.set_price(k, rupees(text));
    }
}

/// Waits until the engine answers and its startup reconciliation with Dhan is done.
pub fn wait_trading(engine: &mut Process, data: &Path) -> std::net::SocketAddr {
    let addr = engine.wait_active(data);
    wait_for("trading starts", || {
        get(addr, "/health").1.to_string().contains("\"reconciliation\":{\"status\":\"ok\"")
    });
    addr
}

/// Waits until the process killed itself at its failpoint.
pub fn wait_killed(engine: &mut Process, point: &str) {
    let code = engine.wait_exit(Duration::from_secs(60));
    assert_eq!(code, -1, "{point}: killed by a signal; log:\n{}", engine.log());
    assert!(engine.log().contains(&format!("failpoint {point}: SIGKILL")), "{}", engine.log());
}

pub fn pnl(addr: std::net::SocketAddr) -> serde_json::Value {
    get(addr, "/v1/pnl").1
}

pub fn stop(mut engine: Process) {
    engine.signal(libc::SIGTERM);
    assert_eq!(engine.wait_exit(Duration::from_secs(30)), 0, "{}", engine.log());
}

pub fn db(data: &Path) -> rusqlite::Connection {
    let db = rusqlite::Connection::open_with_flags(
        data.join("scalper.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.busy_timeout(Duration::from_secs(2)).unwrap();
    db
}

pub fn stored_state(data: &Path, id: &str) -> Option<String> {
    db(data).query_row("SELECT state FROM positions WHERE id = ?1", [id], |r| r.get(0)).ok()
}

/// What the simulator's books imply, per position: trades of its entry and exit orders. The
/// children of a sliced order (`N1s2-…`, `X1s3-…`) make one leg of their parent.
#[derive(Default, Debug)]
pub struct Leg {
    pub txn: Option<Txn>,
    pub quantity: i64,
    pub turnover: i128,
    /// Orders of the leg that executed (brokerage is charged per executed order).
    pub orders: i64,
}

/// The simulator's trade book by order, grouped per position and role.
pub fn sim_legs(sim: &LiveSim) -> BTreeMap<String, (Leg, Vec<Leg>)> {
    let trades = sim.broker.trades();
    let mut by_parent: BTreeMap<(String, bool, u32), Leg> = BTreeMap::new();
    for o in sim.broker.orders() {
        let Some(c) = correlation::parse(&o.correlation_id) else { continue };
        let pid = o.correlation_id.split_once('-').unwrap().1.to_string();
        assert!(c.attempt >= 1);
        let key = (pid, c.role == OrderRole::Exit, c.attempt);
        let leg =
            by_parent.entry(key).or_insert_with(|| Leg { txn: Some(o.txn), ..Leg::default() });
        let mut executed = false;
        for t in trades.iter().filter(|t| t.order_id == o.order_id) {
            leg.quantity += t.quantity;
            leg.turnover += i128::from(t.price.0) * i128::from(t.quantity);
            executed = true;
        }
        leg.orders += i64::from(executed);
    }
    let mut out: BTreeMap<String, (Leg, Vec<Leg>)> = BTreeMap::new();
    for ((pid, exit, _), leg) in by_parent {
        let e = out.entry(pid).or_default();
        if exit {
            e.1.push(leg);
        } else if leg.quantity > 0 {
            assert_eq!(e.0.quantity, 0, "two entry orders of one position executed");
            e.0 = leg;
        }
    }
    out
}

/// The charges of a leg: brokerage per executed order, the rest on the leg's turnover.
pub fn leg_charges(charges: &ChargeSchedule, leg: &Leg) -> Paise {
    let turnover = Paise(leg.turnover as i64);
    charges.leg_on_turnover_orders(leg.txn.unwrap(), turnover, leg.orders.max(1) as u32).total()
}

pub fn vwap(leg: &Leg) -> Paise {
    let (t, q) = (leg.turnover, i128::from(leg.quantity));
    // Half away from zero, as the engine rounds.
    Paise(((2 * t + q) / (2 * q)) as i64)
}

/// What the final checks found (see the module doc).
#[derive(Debug, Default)]
pub struct Findings {
    /// Exit orders that executed.
    pub exits: usize,
    /// A correlation id POSTed twice, or a position with two exit orders that executed.
    pub duplicates: Vec<String>,
    /// A quantity left at the broker after the final flatten, or a position not closed by
    /// its own exit.
    pub orphans: Vec<String>,
    /// `/v1/pnl` or a stored entry price that differs from the simulator's trade book.
    pub mismatches: Vec<String>,
}

/// Flattens, then compares the engine's account with the simulator's books.
pub fn audit(rig: &Rig, engine: &mut Process) -> Findings {
    audit_books(rig, engine, true)
}

/// [`audit`]; `one_post_each`: every order's correlation id was POSTed once (false where the
/// simulator was told to refuse some POSTs unprocessed, a 429 or a 5xx before the order exists,
/// which are resent under the same id: then one order per id is what counts).
pub fn audit_books(rig: &Rig, engine: &mut Process, one_post_each: bool) -> Findings {
    let mut f = Findings::default();
    let addr = wait_trading(engine, &rig.data);
    let (code, body) = post(addr, "/v1/flatten", "{}");
    assert!(code == 200 || code == 202, "flatten: {code} {body}");
    // On a timeout, the engine's log tail says what it still holds.
    let died = until_or_dead(engine, "the engine holds nothing after the flatten", || {
        let p = pnl(addr);
        p["open_positions"].as_u64() == Some(0) && p["pending_entries"].as_u64().unwrap_or(0) == 0
    });
    assert!(!died, "the engine died during the final flatten; log:\n{}", engine.log());
    wait_for("the simulator's orders are done", || {
        rig.sim.broker.orders().iter().all(|o| o.status.is_terminal())
    });
    for p in rig.sim.broker.positions().iter().filter(|p| p.net() != 0) {
        f.orphans.push(format!(
            "{} holds {} at the broker after the flatten",
            p.instrument,
            p.net()
        ));
    }
    for o in rig.sim.broker.orders() {
        let n = rig.sim.posts_of(&o.correlation_id);
        if one_post_each && n != 1 {
            f.duplicates.push(format!("{} was POSTed {n} times", o.correlation_id));
        }
    }
    let legs = sim_legs(&rig.sim);
    let charges = ChargeSchedule::default();
    let (mut gross, mut fees, mut trades, mut closed) = (0i128, 0i64, 0u64, 0u64);
    let db = db(&rig.data);
    for (pid, (entry, exits)) in &legs {
        let executed: Vec<&Leg> = exits.iter().filter(|l| l.quantity > 0).collect();
        f.exits += executed.len();
        if executed.len() > 1 {
            f.duplicates.push(format!("{pid}: {} exit orders executed: {exits:?}", executed.len()));
        }
        if entry.quantity == 0 {
            continue;
        }
        trades += 1;
        closed += 1;
        let exit_qty: i64 = executed.iter().map(|l| l.quantity).sum();
        if exit_qty != entry.quantity {
            f.orphans
                .push(format!("{pid}: entered {}, its exits executed {exit_qty}", entry.quantity));
        }
        let exit_turnover: i128 = executed.iter().map(|l| l.turnover).sum();
        let sign = if entry.txn == Some(Txn::Buy) { 1 } else { -1 };
        gross += sign * (exit_turnover - entry.turnover);
        fees += leg_charges(&charges, entry).0;
        for l in &executed {
            fees += leg_charges(&charges, l).0;
        }
        let read = || {
            db.query_row(
                "SELECT entry_price, source FROM positions WHERE id = ?1 AND state = 'exited'",
                [pid],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
        };
        wait_for(&format!("the store closed {pid}"), || read().is_ok());
        let stored = read().unwrap();
        if stored != (vwap(entry).0, "entry".to_string()) {
            f.mismatches.push(format!(
                "{pid}: stored entry {stored:?}, its entry order's fills {}",
                vwap(entry)
            ));
        }
    }
    let gross = Paise(gross as i64);
    let want = [
        ("trades_today", serde_json::json!(trades)),
        ("closed_today", serde_json::json!(closed)),
        ("realised_gross", serde_json::json!(gross.to_string())),
        ("charges", serde_json::json!(Paise(fees).to_string())),
        ("realised_net", serde_json::json!((gross - Paise(fees)).to_string())),
    ];
    let p = pnl(addr);
    for (k, v) in want {
        if p[k] != v {
            f.mismatches.push(format!("/v1/pnl {k} is {}, the simulator's books imply {v}", p[k]));
        }
    }
    f
}

/// The checks every window ends with (see the module doc). Flattens first.
pub fn assert_books_agree(rig: &Rig, engine: &mut Process) {
    let f = audit(rig, engine);
    assert!(
        f.duplicates.is_empty() && f.orphans.is_empty() && f.mismatches.is_empty(),
        "{f:#?}\nlog:\n{}",
        engine.log()
    );
}

/// The closed trade of `id` as the store holds it: reason, exit price.
/// Waits until the store holds position `id` as exited; its closed trade's reason and exit
/// price.
pub fn wait_stored_close(data: &Path, id: &str) -> (String, i64) {
    wait_for("the store closed it", || stored_state(data, id).as_deref() == Some("exited"));
    closed_trade(data, id)
}

pub fn closed_trade(data: &Path, id: &str) -> (String, i64) {
    db(data)
        .query_row(
            "SELECT reason, exit_price FROM closed_trades WHERE position_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or_else(|e| panic!("closed trade {id}: {e}"))
}
/// Waits until `cond` holds or the process has exited; whether it exited.
pub fn until_or_dead(engine: &mut Process, what: &str, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + process_support::DEADLINE;
    loop {
        if engine.child.try_wait().unwrap().is_some() {
            return true;
        }
        if cond() {
            return false;
        }
        if std::time::Instant::now() > deadline {
            let log = engine.log();
            let tail: Vec<&str> =
                log.lines().rev().filter(|l| !l.contains(" heartbeat: ")).take(60).collect();
            panic!(
                "timed out waiting until {what}; log tail without heartbeats (newest first):\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
