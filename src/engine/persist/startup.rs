//! The store side of startup, before any trading: connect (retrying until a deadline), set
//! aside a spill another instance has overtaken, replay a leftover spill into the database,
//! and read back what recovery needs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;

use super::recover::Stored;
use crate::ops::health::HealthBoard;
use crate::runtime::{Worker, WorkerCtx};
use crate::store::spill::SpillFiles;
use crate::store::writer::HEALTH_COMPONENT;
use crate::store::{Connector, EventId, Store, StoreWriter, WriterShared};

/// Why the store could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("the store {target} was not reachable within {waited:?}: {last}")]
    Unreachable { target: String, waited: Duration, last: String },
    #[error("the store {target} did not replay its spill within {waited:?}: {health}")]
    NotCaughtUp { target: String, waited: Duration, health: String },
    #[error("reading the store {target} for recovery: {detail}")]
    Read { target: String, detail: String },
    #[error("{0}")]
    Spill(String),
}

/// Opens a connection, retrying until `deadline`.
pub fn connect(
    connector: &Connector,
    target: &str,
    deadline: Instant,
) -> Result<Box<dyn Store>, StartupError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut logged = false;
    loop {
        match connector() {
            Ok(store) => return Ok(store),
            Err(e) => {
                if Instant::now() + delay >= deadline {
                    return Err(StartupError::Unreachable {
                        target: target.to_string(),
                        waited: started.elapsed(),
                        last: e.to_string(),
                    });
                }
                if !logged {
                    log::warn!(target: "store", "startup: {e}; retrying until {:?} have passed", deadline - started);
                    logged = true;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Moves a spill aside when the database already holds events newer than everything in it:
/// another instance took over meanwhile, and replaying older events over its writes would
/// roll its state back. The files are kept (renamed `.stale-<epoch ms>`) for an operator.
/// Returns how many events were set aside.
pub fn set_aside_overtaken_spill(
    spill: &SpillFiles,
    db_last: Option<EventId>,
) -> Result<u64, StartupError> {
    let stats = spill.stats().map_err(|e| StartupError::Spill(e.to_string()))?;
    let (Some(spill_max), Some(db_last)) = (stats.max_id, db_last) else { return Ok(0) };
    if stats.events == 0 || spill_max >= db_last {
        return Ok(0);
    }
    let stamp = EventId::wall_clock_micros() / 1_000;
    for path in [&spill.replay, &spill.active] {
        if path.exists() {
            let mut to = path.as_os_str().to_os_string();
            to.push(format!(".stale-{stamp}"));
            std::fs::rename(path, &to).map_err(|e| {
                StartupError::Spill(format!("setting aside spill {}: {e}", path.display()))
            })?;
        }
    }
    log::error!(target: "store", "spill {} holds {} events older than the database's newest (event {} < {}): another instance wrote since; set aside as {}.stale-{stamp}, not replayed", spill.active.display(), stats.events, spill_max, db_last, spill.active.display());
    Ok(stats.events)
}

/// Runs a writer until everything spilled by an earlier run is in the database (or `deadline`
/// passes), then stops it. The supervisor's writer continues from the same shared state.
pub fn catch_up(
    shared: &Arc<WriterShared>,
    health: &HealthBoard,
    target: &str,
    deadline: Instant,
) -> Result<(), StartupError> {
    let started = Instant::now();
    let (stop, ctx) = WorkerCtx::standalone("store_writer");
    let mut writer = StoreWriter::new(shared.clone());
    let join = std::thread::Builder::new()
        .name("store_writer".into())
        .spawn(move || writer.run(&ctx))
        .map_err(|e| StartupError::Spill(format!("starting the store writer: {e}")))?;
    while !shared.is_caught_up() && Instant::now() < deadline && !join.is_finished() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let caught_up = shared.is_caught_up();
    stop.stop();
    let ended = join.join();
    if caught_up {
        return Ok(());
    }
    let health = match ended {
        Ok(Err(e)) => e.to_string(),
        Err(_) => "the writer panicked".to_string(),
        Ok(Ok(())) => health
            .get(HEALTH_COMPONENT)
            .map_or_else(|| "no health reported".to_string(), |h| h.reason),
    };
    Err(StartupError::NotCaughtUp { target: target.to_string(), waited: started.elapsed(), health })
}

/// Reads what recovery needs for `trading_day`.
pub fn read(
    store: &mut dyn Store,
    target: &str,
    trading_day: NaiveDate,
) -> Result<Stored, StartupError> {
    let err = |e: crate::store::StoreError| StartupError::Read {
        target: target.to_string(),
        detail: e.to_string(),
    };
    Ok(Stored {
        recovery: store.load_recovery(trading_day).map_err(err)?,
        positions: store.positions().map_err(err)?,
        closed_trades: store.closed_trades().map_err(err)?,
        fills: store.fills().map_err(err)?,
    })
}
