//! Startup before any trading: a spill the previous run left is replayed into the database
//! before recovery reads it; a spill another instance has overtaken is set aside instead; and
//! when recovery cannot complete (the store unreachable, a stored position that makes no sense)
//! the engine is not built, with an error that says why.

mod common;
mod engine_support;
mod persist_support;

use std::sync::Arc;
use std::time::Duration;

use common::{T0, exiting_position, position};
use engine_support::*;
use persist_support::*;
use scalper::config::Secrets;
use scalper::domain::{ManualClock, PositionId, Timestamp};
use scalper::engine::EngineEnv;
use scalper::engine::persist::{self, PaperRestart, StoreSetup};
use scalper::engine::seams::Seams;
use scalper::instance::OrderGate;
use scalper::ops::health::HealthBoard;
use scalper::ops::metrics::Metrics;
use scalper::runtime::Supervisor;
use scalper::store::spill::SpillFiles;
use scalper::store::*;

/// The harness clock's day (2025-11-24, 10:00 IST); T0 is 10:30:15 the same day.
fn open_at(id: &str) -> PositionRecord {
    PositionRecord { opened_at: Timestamp(T0 - 3_600_000), ..position(id) }
}

fn event(id: i64, kind: EventKind) -> StoreEvent {
    StoreEvent { id: EventId(id), at: Timestamp(T0), kind }
}

#[test]
fn a_spill_left_by_the_previous_run_is_replayed_before_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let spill = SpillFiles::new(dir.path().join("store.spill"));
    // The previous run wrote one position, then spilled the next during an outage.
    sqlite::SqliteStore::open(&db)
        .unwrap()
        .apply(&[event(10, EventKind::PositionUpsert(open_at("P-written")))])
        .unwrap();
    spill.append(&[event(11, EventKind::PositionUpsert(open_at("P-spilled")))]).unwrap();

    let h = start("", sqlite_setup(&db, dir.path()));
    let core = h.shared.core.lock();
    for id in ["P-written", "P-spilled"] {
        assert!(core.position(&PositionId::new(id)).is_some(), "{id} recovered");
    }
    drop(core);
    assert!(!spill.pending(), "the spill was replayed");
    h.stop();
}

#[test]
fn a_spill_older_than_what_another_instance_wrote_is_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let spill = SpillFiles::new(dir.path().join("store.spill"));
    spill.append(&[event(11, EventKind::PositionUpsert(open_at("P-stale")))]).unwrap();
    // Another instance took over and wrote later events.
    sqlite::SqliteStore::open(&db)
        .unwrap()
        .apply(&[event(50, EventKind::PositionUpsert(open_at("P-current")))])
        .unwrap();

    let h = start("", sqlite_setup(&db, dir.path()));
    {
        let core = h.shared.core.lock();
        assert!(core.position(&PositionId::new("P-current")).is_some());
        assert!(
            core.position(&PositionId::new("P-stale")).is_none(),
            "not replayed over newer state"
        );
    }
    assert!(!spill.pending());
    let kept = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("store.spill.stale-"));
    assert!(kept, "the overtaken spill is kept for an operator");
    h.stop();
    let audit = sqlite::SqliteStore::open(&db).unwrap().audit().unwrap();
    assert!(audit.iter().any(|a| a.record.action == "spill_set_aside"));
}

/// Builds an engine with the store `setup` outside any harness (the build is expected to fail).
fn build(setup: StoreSetup) -> anyhow::Result<scalper::engine::Engine> {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), "ws://127.0.0.1:9/", "");
    let secrets = Secrets::resolve(&config, |_| None).unwrap();
    let metrics = Metrics::new();
    let env = EngineEnv {
        config,
        secrets,
        metrics: metrics.clone(),
        health: HealthBoard::new(),
        workers: Supervisor::new(supervisor_config(), metrics).status_table(),
        clock: Arc::new(ManualClock::new(ist("10:00:00"))),
    };
    persist::build_with_setup(env, setup, Seams::paper(), &mut PaperRestart, OrderGate::open())
}

#[test]
fn an_unreachable_store_stops_the_startup_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut setup = sqlite_setup(&dir.path().join("s.db"), dir.path());
    setup.connector = Arc::new(|| {
        Err(StoreError::Unavailable {
            backend: "postgres",
            doing: "connecting to 127.0.0.1:1/db".into(),
            detail: "connection refused".into(),
        })
    });
    setup.startup_wait = Duration::from_millis(300);
    let err = build(setup).err().expect("no engine without its state").to_string();
    assert!(
        err.starts_with("recovery:")
            && err.contains("not reachable")
            && err.contains("connection refused"),
        "{err}"
    );
}

#[test]
fn a_stored_position_that_cannot_be_restored_stops_the_startup() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let broken = PositionRecord {
        exit_reason: None,
        opened_at: Timestamp(T0 - 3_600_000),
        ..exiting_position("P-broken")
    };
    sqlite::SqliteStore::open(&db)
        .unwrap()
        .apply(&[event(1, EventKind::PositionUpsert(broken))])
        .unwrap();
    let err = build(sqlite_setup(&db, dir.path())).err().expect("no engine").to_string();
    assert!(err.contains("P-broken") && err.contains("exit reason"), "{err}");
}

fn in_flight(id: &str) -> PositionRecord {
    PositionRecord {
        state: PositionState::Exiting,
        exit_attempts: 1,
        exit_reason: Some(scalper::domain::ExitReason::RatchetStop),
        exit_trigger_price: Some(scalper::domain::Paise(10_150)),
        exit_trigger_at: Some(Timestamp(T0 - 60_000)),
        exit_correlation_id: Some(common::cid(&format!("X1-{id}"))),
        ..open_at(id)
    }
}

#[test]
fn an_exit_in_flight_at_a_crash_completes_once_under_its_own_correlation_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let exit = scalper::domain::OrderPurpose::Exit(scalper::domain::ExitReason::RatchetStop);
    let mut filled = common::fill("PAPER-T7", "X1-PY", 10_140);
    filled.at = Timestamp(T0 - 59_000);
    // PX: the exit was decided and its order recorded, nothing more. PY: its fill was
    // recorded, the position's close was not.
    sqlite::SqliteStore::open(&db)
        .unwrap()
        .apply(&[
            event(1, EventKind::PositionUpsert(in_flight("PX"))),
            event(
                2,
                EventKind::OrderPlaced(common::order("X1-PX", "PX", exit, OrderStatus::Created)),
            ),
            event(3, EventKind::PositionUpsert(in_flight("PY"))),
            event(
                4,
                EventKind::OrderPlaced(common::order("X1-PY", "PY", exit, OrderStatus::Created)),
            ),
            event(5, EventKind::Fill(filled)),
        ])
        .unwrap();

    let h = start("", sqlite_setup(&db, dir.path()));
    let (px, py) = (PositionId::new("PX"), PositionId::new("PY"));
    let tx = h.closed(&px);
    assert_eq!((tx.reason.code(), tx.exit_price.0, tx.attempt), ("ratchet_stop", 10_150, 1));
    let ty = h.closed(&py);
    assert_eq!((ty.exit_price.0, ty.attempt), (10_140, 1));
    let placed = |c: &str| h.shared.gateway.placements(&common::cid(c));
    assert_eq!(placed("X1-PX"), Some(1), "sent again once, under its own id, at its trigger price");
    assert_eq!(placed("X1-PY"), Some(0), "its recorded fill closed it: not sent again");
    h.pnl_after(2);
    h.stop();

    let mut store = sqlite::SqliteStore::open(&db).unwrap();
    assert_eq!(store.closed_trades().unwrap().len(), 2);
    assert!(store.positions().unwrap().iter().all(|p| p.state == PositionState::Exited));
    let audit = audit_actions(&mut store);
    assert!(
        audit.iter().any(|(a, what)| *a == Actor::Reconciliation && what == "exit_resent"),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|(a, what)| *a == Actor::Reconciliation && what == "exit_fills_replayed"),
        "{audit:?}"
    );
}
