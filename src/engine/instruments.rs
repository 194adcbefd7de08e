//! The engine's instrument master: loaded before anything trades, and swapped in once per
//! trading day by the `instruments` worker. Where the table comes from is
//! [`crate::instruments::source`]; this file decides what the engine does without one.

use std::time::Duration;

use chrono::NaiveDate;

use crate::config::{Config, Mode};
use crate::domain::{Clock, TimeOfDay};
use crate::instruments::source::{MasterSource, Origin, http_fetch};
use crate::instruments::{Instruments, SharedInstruments};
use crate::runtime::{Worker, WorkerCtx};

/// How often the reload worker looks at the clock.
const CHECK_EVERY: Duration = Duration::from_secs(30);

/// The `[instruments]` source of a configuration.
pub fn source(config: &Config) -> MasterSource {
    let i = &config.instruments;
    MasterSource {
        file: i.master_file.clone(),
        url: i.master_url.clone(),
        download: i.download,
        timeout: i.download_timeout,
        cache_dir: config.data_dir.join("instruments"),
    }
}

/// The table the engine starts with, and a line for the banner: the configured file, today's
/// download (or the last good copy), else the simulator's master when the simulator is on, else
/// none (no exchange limits are applied). Fails only when live mode needs a download and has no
/// copy at all, or when a configured file is unusable.
pub fn load_at_start(config: &Config, today: NaiveDate) -> anyhow::Result<(Instruments, String)> {
    let loaded = source(config).load(today, &http_fetch).map_err(|e| {
        anyhow::anyhow!("instruments: {e} (live trading needs the instrument master)")
    })?;
    if let Some((table, origin)) = loaded {
        let from = match origin {
            Origin::File(p) => p.display().to_string(),
            Origin::Downloaded => format!("{} (downloaded)", config.instruments.master_url),
            Origin::CachedToday => "today's copy".to_string(),
            Origin::LastGood { fetched, .. } => format!(
                "the last good copy from {}",
                fetched.map_or_else(|| "an unknown day".into(), |d| d.to_string())
            ),
        };
        let line = format!("instrument master from {from}: {}", table.counts());
        return Ok((table, line));
    }
    if config.sim.enabled || config.sim.master_file.is_some() {
        let table = crate::sim::setup::master(config)?;
        let line = format!("instrument master: the simulator's ({} instruments)", table.len());
        return Ok((table, line));
    }
    let why = if config.mode == Mode::Live {
        "no master_file and no master_url"
    } else {
        "paper mode without instruments.master_file"
    };
    Ok((Instruments::empty(), format!("instrument master: none ({why}); no exchange limits")))
}

/// `scalper instruments find`: the table of matches, from the master as the engine would start
/// with it but without downloading (the configured file, else the last good copy, else the
/// simulator's). An error says why nothing can be printed (no master, no match).
pub fn find_command(
    config: &Config,
    query: &str,
    limit: usize,
    date: Option<NaiveDate>,
) -> Result<String, String> {
    let today = date.unwrap_or_else(|| crate::domain::SystemClock.now().ist_date());
    let mut src = source(config);
    src.download = false;
    let table = match src.load(today, &http_fetch)? {
        Some((table, _)) => table,
        None if config.sim.enabled || config.sim.master_file.is_some() => {
            crate::sim::setup::master(config).map_err(|e| e.to_string())?
        }
        None => {
            return Err("no instrument master: set [instruments] master_file, or run the engine in live mode once to download one".into());
        }
    };
    let hits = crate::instruments::find::find(&table, query, today, limit);
    if hits.is_empty() {
        return Err(format!("no instrument matches {query:?} ({} searched)", table.len()));
    }
    Ok(crate::instruments::find::render(&hits))
}

/// Reloads the master once per trading day at `instruments.reload_time` (IST) and swaps it in;
/// a failed reload keeps the current table (and warns).
pub struct MasterReloader {
    source: MasterSource,
    shared: SharedInstruments,
    clock: std::sync::Arc<dyn Clock>,
    reload_time: TimeOfDay,
    loaded_on: Option<NaiveDate>,
}

impl MasterReloader {
    pub fn new(
        config: &Config,
        shared: SharedInstruments,
        clock: std::sync::Arc<dyn Clock>,
        loaded_on: NaiveDate,
    ) -> MasterReloader {
        MasterReloader {
            source: source(config),
            shared,
            clock,
            reload_time: config.instruments.reload_time,
            loaded_on: Some(loaded_on),
        }
    }

    /// Whether a reload is due: a new day, past the reload time.
    pub fn due(
        loaded_on: Option<NaiveDate>,
        today: NaiveDate,
        now: TimeOfDay,
        at: TimeOfDay,
    ) -> bool {
        loaded_on != Some(today) && now >= at
    }

    fn round(&mut self) {
        let now = self.clock.now();
        let today = now.ist_date();
        if !Self::due(self.loaded_on, today, now.ist_time_of_day(), self.reload_time) {
            return;
        }
        self.loaded_on = Some(today);
        if self.source.file.is_none() && !self.source.download {
            return;
        }
        match self.source.load(today, &http_fetch) {
            Ok(Some((table, origin))) => {
                log::info!(target: "instruments", "daily reload ({origin:?}): {}", table.counts());
                self.shared.store(table);
            }
            Ok(None) => {}
            Err(e) => {
                log::warn!(target: "instruments", "daily reload failed, keeping the current master: {e}")
            }
        }
    }
}

impl Worker for MasterReloader {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        while ctx.sleep(CHECK_EVERY) {
            self.round();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_is_due_once_per_day_after_the_reload_time() {
        let d = |day| NaiveDate::from_ymd_opt(2026, 12, day).unwrap();
        let at = TimeOfDay::hms(8, 30, 0);
        assert!(!MasterReloader::due(Some(d(7)), d(7), TimeOfDay::hms(9, 0, 0), at));
        assert!(!MasterReloader::due(Some(d(7)), d(8), TimeOfDay::hms(8, 0, 0), at));
        assert!(MasterReloader::due(Some(d(7)), d(8), TimeOfDay::hms(8, 30, 0), at));
        assert!(MasterReloader::due(None, d(8), TimeOfDay::hms(23, 0, 0), at));
    }
}
