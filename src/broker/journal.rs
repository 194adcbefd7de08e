//! The order journal: the write-ahead record of every order handed to Dhan, the one action the
//! engine cannot take back.
//!
//! Dhan has no idempotency key (spec dhan-v2 §6) and our correlation ids are deterministic
//! (`X<attempt>-<position>`), so a process that crashes between sending an order and persisting
//! that it did would, after a restart, recompute the same id for the same trigger and send a
//! second real order. The store cannot close that gap: it is write-behind, so the position's
//! `Exiting` state may not have reached the disk when the order left. The journal does:
//!
//! - before a placement's first byte goes out, its correlation id and intent are appended to
//!   today's file (`orders-YYYY-MM-DD.jsonl`, IST day, under `<data_dir>/journal/`) and the file
//!   is fsynced; a torn last line (a crash during the write) is ignored on reading, which is
//!   right: the write did not complete, so the order was not sent;
//! - at startup today's file is read: every id in it is known to have possibly reached Dhan.
//!   The live gateway never sends such an id again; it settles it by correlation id instead
//!   (lookup, order book, order-update stream; an order still in flight at the crash is found
//!   once its TRANSIT ends, or proved absent after the resolve window counted from the
//!   journal's time), and only a proven absence lets a new attempt (a new id) go out;
//! - reconciliation reads the same file to know which of the book's orders are ours.
//!
//! The alternative, deterministic ids plus a scan of the order book at startup, misses an order
//! still in the network at the crash: the scan can run before the order arrives. The journal
//! costs one fsync per placement (see the broker benchmark), small next to Dhan's round trip.
//! Files of earlier days are left in place for audits (a few hundred bytes per order).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::domain::{CorrelationId, OrderIntent, Timestamp};

/// One placement, as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalLine {
    /// When it was written (just before the send).
    pub at: Timestamp,
    pub intent: OrderIntent,
    /// Not sent by this process: an id another process may have sent (a standby's takeover,
    /// `presume`). Its intent names the position and the id; the reason and price are the
    /// taking-over process's best knowledge, not the sender's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub presumed: bool,
}

/// What the journal knows about a correlation id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub at: Timestamp,
    pub intent: OrderIntent,
    /// Written by an earlier run of the process (read back at startup).
    pub previous_run: bool,
    /// Recorded as possibly sent by another process ([`JournalLine::presumed`]).
    pub presumed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("order journal: {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

struct State {
    day: NaiveDate,
    file: Option<File>,
    sent: HashMap<CorrelationId, Sent>,
    skipped_lines: usize,
}

/// The journal; shared by the gateway and the order desk (both place orders).
pub struct OrderJournal {
    dir: PathBuf,
    state: Mutex<State>,
}

impl std::fmt::Debug for OrderJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderJournal").field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> JournalError + 'a {
    move |source| JournalError::Io { what, path: path.to_path_buf(), source }
}

impl OrderJournal {
    /// Opens the journal in `dir` (created if missing) and reads today's file (IST day of
    /// `now`): every id in it counts as sent by a previous run.
    pub fn open(dir: &Path, now: Timestamp) -> Result<OrderJournal, JournalError> {
        std::fs::create_dir_all(dir).map_err(io_err("creating the directory", dir))?;
        let day = now.ist_date();
        let mut state = State { day, file: None, sent: HashMap::new(), skipped_lines: 0 };
        let path = day_file(dir, day);
        match File::open(&path) {
            Ok(f) => {
                for line in BufReader::new(f).lines() {
                    let line = line.map_err(io_err("reading", &path))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<JournalLine>(&line) {
                        Ok(l) => {
                            let sent = Sent {
                                at: l.at,
                                intent: l.intent,
                                previous_run: true,
                                presumed: l.presumed,
                            };
                            state.sent.insert(sent.intent.correlation_id.clone(), sent);
                        }
                        // A torn last line: the crash came before the fsync returned, so the
                        // order it describes was never sent.
                        Err(_) => state.skipped_lines += 1,
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("opening", &path)(e)),
        }
        if state.skipped_lines > 0 {
            log::warn!(target: "journal", "{}: skipped {} unreadable lines (an interrupted write)", path.display(), state.skipped_lines);
        }
        if !state.sent.is_empty() {
            log::info!(target: "journal", "{}: {} orders were sent earlier today; none of them will be sent again", path.display(), state.sent.len());
        }
        Ok(OrderJournal { dir: dir.to_path_buf(), state: Mutex::new(state) })
    }

    /// The file of the IST day of `at`.
    pub fn path_for(&self, at: Timestamp) -> PathBuf {
        day_file(&self.dir, at.ist_date())
    }

    /// Records `intent` as about to be sent and makes it durable (fsync) before returning.
    /// An id already recorded is not written again (a retry of an order that provably did not
    /// reach Dhan).
    pub fn record(&self, intent: &OrderIntent, now: Timestamp) -> Result<(), JournalError> {
        self.write(intent, now, false)
    }

    /// Records `intent` as possibly sent by another process (a standby taking over from a
    /// holder that died): from now on it counts as sent by an earlier run, so it is never sent,
    /// only looked up, and only its proven absence (the resolve window counted from `now`)
    /// lets the next attempt go.
    pub fn presume(&self, intent: &OrderIntent, now: Timestamp) -> Result<(), JournalError> {
        if self.lookup(&intent.correlation_id).is_some() {
            return Ok(()); // known already: sent (or presumed) before
        }
        self.write(intent, now, true)?;
        if let Some(s) = self.state.lock().sent.get_mut(&intent.correlation_id) {
            s.previous_run = true;
        }
        Ok(())
    }

    fn write(
        &self,
        intent: &OrderIntent,
        now: Timestamp,
        presumed: bool,
    ) -> Result<(), JournalError> {
        let mut st = self.state.lock();
        if now.ist_date() != st.day {
            // A new day: Dhan's order book starts empty, so do yesterday's ids.
            st.day = now.ist_date();
            st.file = None;
            st.sent.clear();
        }
        if st.sent.contains_key(&intent.correlation_id) {
            return Ok(());
        }
        let path = day_file(&self.dir, st.day);
        if st.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err("opening", &path))?;
            // The file's directory entry must survive a crash too.
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
            st.file = Some(f);
        }
        let line = JournalLine { at: now, intent: intent.clone(), presumed };
        let mut text = serde_json::to_string(&line).expect("an order intent always encodes");
        text.push('\n');
        let file = st.file.as_mut().expect("opened above");
        file.write_all(text.as_bytes()).map_err(io_err("writing", &path))?;
        file.sync_data().map_err(io_err("syncing", &path))?;
        st.sent.insert(
            intent.correlation_id.clone(),
            Sent { at: now, intent: intent.clone(), previous_run: false, presumed },
        );
        Ok(())
    }

    /// What the journal knows about `cid` (today).
    pub fn lookup(&self, cid: &CorrelationId) -> Option<Sent> {
        self.state.lock().sent.get(cid).cloned()
    }

    /// Today's placements, oldest first.
    pub fn today(&self) -> Vec<Sent> {
        let mut v: Vec<Sent> = self.state.lock().sent.values().cloned().collect();
        v.sort_by(|a, b| (a.at, &a.intent.correlation_id).cmp(&(b.at, &b.intent.correlation_id)));
        v
    }
}

fn day_file(dir: &Path, day: NaiveDate) -> PathBuf {
    dir.join(format!("orders-{}.jsonl", day.format("%Y-%m-%d")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        ExitReason, InstrumentKey, OrderPurpose, Paise, PositionId, Qty, Segment, Txn,
    };

    fn intent(cid: &str) -> OrderIntent {
        OrderIntent {
            correlation_id: CorrelationId::new(cid).unwrap(),
            position_id: PositionId::new("p1"),
            instrument: InstrumentKey::new(Segment::NseFno, 52175),
            txn: Txn::Sell,
            quantity: Qty(75),
            purpose: OrderPurpose::Exit(ExitReason::StopLoss),
            reference_price: Paise(9_000),
            price_is_stale: false,
            created_at: Timestamp(1),
            limit_price: None,
        }
    }

    // 2025-11-24 10:00 IST and the next day.
    const MON: Timestamp = Timestamp(1_763_958_600_000);
    const TUE: Timestamp = Timestamp(1_763_958_600_000 + 86_400_000);

    #[test]
    fn ids_written_by_a_previous_run_are_known_as_such_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let j = OrderJournal::open(dir.path(), MON).unwrap();
        j.record(&intent("X1-p1"), MON).unwrap();
        assert!(!j.lookup(&intent("X1-p1").correlation_id).unwrap().previous_run);
        drop(j);
        let j = OrderJournal::open(dir.path(), MON.plus_millis(5_000)).unwrap();
        let sent = j.lookup(&intent("X1-p1").correlation_id).unwrap();
        assert!(sent.previous_run);
        assert_eq!((sent.at, sent.intent), (MON, intent("X1-p1")));
        assert!(j.lookup(&intent("X2-p1").correlation_id).is_none());
    }

    #[test]
    fn a_torn_last_line_is_not_an_order_sent() {
        let dir = tempfile::tempdir().unwrap();
        let j = OrderJournal::open(dir.path(), MON).unwrap();
        j.record(&intent("X1-p1"), MON).unwrap();
        let path = j.path_for(MON);
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"at":1763958600000,"intent":{"correlation_id":"X2-p"#).unwrap();
        drop(f);
        let j = OrderJournal::open(dir.path(), MON).unwrap();
        assert_eq!(j.today().len(), 1);
        assert!(j.lookup(&intent("X2-p1").correlation_id).is_none());
    }

    #[test]
    fn a_new_ist_day_starts_a_new_file_and_forgets_yesterdays_ids() {
        let dir = tempfile::tempdir().unwrap();
        let j = OrderJournal::open(dir.path(), MON).unwrap();
        j.record(&intent("X1-p1"), MON).unwrap();
        j.record(&intent("X1-p2"), TUE).unwrap();
        assert!(j.lookup(&intent("X1-p1").correlation_id).is_none());
        assert_ne!(j.path_for(MON), j.path_for(TUE));
        assert!(j.path_for(MON).exists() && j.path_for(TUE).exists());
        let again = OrderJournal::open(dir.path(), TUE).unwrap();
        assert_eq!(again.today().len(), 1);
    }

    #[test]
    fn recording_an_id_twice_writes_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let j = OrderJournal::open(dir.path(), MON).unwrap();
        j.record(&intent("X1-p1"), MON).unwrap();
        j.record(&intent("X1-p1"), MON.plus_millis(1)).unwrap();
        let text = std::fs::read_to_string(j.path_for(MON)).unwrap();
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn a_presumed_id_counts_as_sent_by_an_earlier_run_now_and_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let j = OrderJournal::open(dir.path(), MON).unwrap();
        j.record(&intent("X1-p1"), MON).unwrap();
        j.presume(&intent("X1-p1"), MON).unwrap();
        j.presume(&intent("X2-p2"), MON.plus_millis(5)).unwrap();
        let flags = |s: Sent| (s.previous_run, s.presumed, s.at);
        let x1 = CorrelationId::new("X1-p1").unwrap();
        let x2 = CorrelationId::new("X2-p2").unwrap();
        assert_eq!(flags(j.lookup(&x1).unwrap()), (false, false, MON), "sent by this run");
        assert_eq!(flags(j.lookup(&x2).unwrap()), (true, true, MON.plus_millis(5)));
        let again = OrderJournal::open(dir.path(), MON).unwrap();
        assert_eq!(flags(again.lookup(&x2).unwrap()), (true, true, MON.plus_millis(5)));
        assert_eq!(flags(again.lookup(&x1).unwrap()), (true, false, MON));
    }
}
