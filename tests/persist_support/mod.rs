//! Helpers for the persistence tests: an in-process engine (the engine-test harness) built
//! with the store and restart recovery, and what the store should hold after a run, derived
//! from the events the engine reported.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use scalper::domain::Timestamp;
use scalper::engine::persist::{self, PaperRestart, StoreSetup, mapping};
use scalper::engine::seams::{EngineEvent, Seams};
use scalper::exec::CoreEvent;
use scalper::instance::OrderGate;
use scalper::store::postgres::PgOptions;
use scalper::store::*;

use crate::engine_support::Harness;

/// A SQLite store at `db`, spilling under `spill_dir`.
pub fn sqlite_setup(db: &Path, spill_dir: &Path) -> StoreSetup {
    StoreSetup {
        connector: sqlite::connector(db.to_path_buf()),
        target: format!("sqlite {}", db.display()),
        writer: WriterConfig {
            batch_max: 256,
            linger: Duration::from_millis(1),
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(200),
            ..WriterConfig::new(spill_dir.join("store.spill"))
        },
        queue_capacity: 16_384,
        heartbeat_floor: Duration::from_secs(10),
        startup_wait: Duration::from_secs(20),
    }
}

/// A PostgreSQL store at `url` (a proxy's, in outage tests).
pub fn pg_setup(url: &str, opts: PgOptions, spill_dir: &Path) -> StoreSetup {
    StoreSetup {
        connector: postgres::connector(url.to_string(), opts),
        target: "postgres (test)".to_string(),
        writer: WriterConfig {
            batch_max: 256,
            linger: Duration::from_millis(1),
            retry_initial: Duration::from_millis(20),
            retry_max: Duration::from_millis(200),
            ..WriterConfig::new(spill_dir.join("store.spill"))
        },
        queue_capacity: 16_384,
        heartbeat_floor: Duration::from_secs(20),
        startup_wait: Duration::from_secs(20),
    }
}

/// The harness's engine, built with the store and restart recovery (paper broker, no lease).
pub fn start(extra: &str, setup: StoreSetup) -> Harness {
    Harness::start_engine(extra, move |env, recorder| {
        let base = Seams { sink: recorder, ..Seams::paper() };
        persist::build_with_setup(env, setup, base, &mut PaperRestart, OrderGate::open())
    })
}

/// Orders as the engine reported them: the record and every status, in order.
pub fn expected_orders(
    events: &[EngineEvent],
) -> BTreeMap<String, (OrderRecord, Vec<OrderStatus>)> {
    let mut out: BTreeMap<String, (OrderRecord, Vec<OrderStatus>)> = BTreeMap::new();
    for e in events {
        match e {
            EngineEvent::OrderSent { intent, at } => {
                let r = mapping::order_placed(intent, *at);
                out.insert(intent.correlation_id.to_string(), (r, vec![OrderStatus::Created]));
            }
            EngineEvent::OrderState { correlation_id, state, at, .. } => {
                let o = out.get_mut(correlation_id.as_str()).expect("a state of a sent order");
                let change = mapping::order_status(correlation_id, state, Some(o.0.quantity), *at);
                o.0.status = change.status;
                o.0.updated_at = change.at;
                if change.broker_order_id.is_some() {
                    o.0.broker_order_id = change.broker_order_id.clone();
                }
                o.1.push(change.status);
            }
            _ => {}
        }
    }
    out
}

/// Each position's last reported state, as a record.
pub fn expected_positions(events: &[EngineEvent]) -> BTreeMap<String, PositionRecord> {
    let mut out = BTreeMap::new();
    for e in events {
        if let EngineEvent::Core(CoreEvent::Position(ev)) = e {
            out.insert(ev.position.id.to_string(), mapping::position_record(&ev.position, ev.at));
        }
    }
    out
}

pub fn expected_fills(events: &[EngineEvent]) -> Vec<FillRecord> {
    let mut v: Vec<FillRecord> = events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Fill { fill, .. } => Some(FillRecord::from(fill)),
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| a.trade_id.cmp(&b.trade_id));
    v
}

pub fn expected_closed(events: &[EngineEvent]) -> Vec<ClosedTradeRecord> {
    let mut v: Vec<ClosedTradeRecord> = events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::Core(CoreEvent::TradeClosed(t)) => Some(mapping::closed_trade_record(t)),
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| a.position_id.cmp(&b.position_id));
    v
}

/// Checks that the store holds exactly what the engine reported: every position's last state,
/// every order with its statuses in order, every fill and closed trade once.
pub fn assert_store_has(store: &mut dyn Store, events: &[EngineEvent]) {
    let positions: BTreeMap<String, PositionRecord> =
        store.positions().unwrap().into_iter().map(|p| (p.id.to_string(), p)).collect();
    let want = expected_positions(events);
    assert_eq!(positions.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "positions");
    for (id, w) in &want {
        let got = &positions[id];
        if got.state == PositionState::Exited {
            assert_eq!(got, w, "position {id}");
        } else {
            // Marks after the last change move the per-tick part on.
            let same = PositionRecord {
                best_price: w.best_price,
                hwm_pnl: w.hwm_pnl,
                ratchet_stop: w.ratchet_stop,
                last_price: w.last_price,
                last_price_at: w.last_price_at,
                updated_at: w.updated_at,
                ..got.clone()
            };
            assert_eq!(&same, w, "position {id}");
        }
    }

    let orders: BTreeMap<String, OrderWithHistory> = store
        .orders()
        .unwrap()
        .into_iter()
        .map(|o| (o.order.correlation_id.to_string(), o))
        .collect();
    let want = expected_orders(events);
    assert_eq!(orders.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "orders");
    for (cid, (record, statuses)) in &want {
        let got = &orders[cid];
        assert_eq!(&got.order, record, "order {cid}");
        let history: Vec<OrderStatus> = got.history.iter().map(|h| h.status).collect();
        assert_eq!(&history, statuses, "history of order {cid}, in order");
        assert!(got.history.windows(2).all(|w| w[0].event_id < w[1].event_id));
    }

    let mut fills = store.fills().unwrap();
    fills.sort_by(|a, b| a.trade_id.cmp(&b.trade_id));
    assert_eq!(fills, expected_fills(events), "fills");
    let mut closed = store.closed_trades().unwrap();
    closed.sort_by(|a, b| a.position_id.cmp(&b.position_id));
    assert_eq!(closed, expected_closed(events), "closed trades");
}

/// The audit lines as (actor, action), in order.
pub fn audit_actions(store: &mut dyn Store) -> Vec<(Actor, String)> {
    store.audit().unwrap().into_iter().map(|a| (a.record.actor, a.record.action)).collect()
}

pub fn paise(json: &serde_json::Value) -> i64 {
    scalper::domain::Paise::parse_rupees(json.as_str().expect("a rupee string")).expect("rupees").0
}

pub fn at(t: Timestamp) -> i64 {
    t.0
}

/// [`start`], also handing back the store queue's producer handle (for its counters).
pub fn start_capturing(extra: &str, setup: StoreSetup) -> (Harness, StoreHandle) {
    let captured = std::sync::Arc::new(parking_lot::Mutex::new(None));
    let slot = captured.clone();
    let h = Harness::start_engine(extra, move |env, recorder| {
        let config = env.config.clone();
        let gate = OrderGate::open();
        let penv = persist::PersistEnv {
            config: &config,
            metrics: &env.metrics,
            health: &env.health,
            clock: env.clock.clone(),
            gate: &gate,
        };
        let mut p = persist::Persist::open(setup, &penv)?;
        use scalper::engine::persist::Reconcile;
        PaperRestart.reconcile(&mut p.state)?;
        *slot.lock() = Some(p.handle().clone());
        let seams = p.seams(&config, Seams { sink: recorder, ..Seams::paper() }, Vec::new());
        let mut engine = scalper::engine::build_with(env, seams)?;
        p.finish(&mut engine, &config)?;
        Ok(engine)
    });
    let handle = captured.lock().take().expect("the engine was built");
    (h, handle)
}

/// The status of a health component in `/health`.
pub fn component(h: &Harness, name: &str) -> String {
    let (_, body) = h.get("/health");
    body["components"][name]["status"].as_str().unwrap_or("absent").to_string()
}
