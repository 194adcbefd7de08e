//! The spill: where the writer keeps events while the database is unreachable.
//!
//! Three files side by side, all JSON lines (one [`StoreEvent`] per line):
//! - `PATH` — the active spill, append-only, synced after every batch;
//! - `PATH.replay` — a spill being replayed into the database. Replay starts by renaming the
//!   active file to this name (atomic), so new spills go to a fresh file while it is read.
//!   It is removed only after every event in it is committed; a crash in between replays it
//!   again from the start, which changes nothing for events already applied (idempotent by
//!   event id). While it exists it is older than the active file and is replayed first.
//! - `PATH.rejected` — events the database refused (and unreadable lines), with the reason:
//!   kept for an operator, never silently dropped.
//!
//! A crash while appending can leave a torn last line; [`SpillFiles::repair`] cuts it before
//! the file is used again (the events in it were never acknowledged as spilled, and the
//! writer still holds them as in flight).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::records::{EventId, StoreEvent};

/// The spill's file names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpillFiles {
    pub active: PathBuf,
    pub replay: PathBuf,
    pub rejected: PathBuf,
}

/// Why a spill operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("spill file {path}: {doing}: {source}")]
    Io { path: PathBuf, doing: &'static str, source: io::Error },
}

fn io_err(path: &Path, doing: &'static str) -> impl FnOnce(io::Error) -> SpillError {
    let path = path.to_path_buf();
    move |source| SpillError::Io { path, doing, source }
}

/// What a spill file holds.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SpillStats {
    pub events: u64,
    pub bytes: u64,
    pub max_id: Option<EventId>,
}

/// A line that could not be read back as an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub offset: u64,
    pub text: String,
    pub error: String,
}

#[derive(Serialize)]
struct RejectedLine<'a> {
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a StoreEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<&'a str>,
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

impl SpillFiles {
    /// The spill at `active` (e.g. `data/store.spill`) and its companions.
    pub fn new(active: impl Into<PathBuf>) -> SpillFiles {
        let active = active.into();
        SpillFiles {
            replay: with_suffix(&active, ".replay"),
            rejected: with_suffix(&active, ".rejected"),
            active,
        }
    }

    /// Appends `events` to the active file and syncs it. Returns the bytes written.
    pub fn append(&self, events: &[StoreEvent]) -> Result<u64, SpillError> {
        let path = &self.active;
        let mut buf = Vec::with_capacity(events.len() * 256);
        for ev in events {
            serde_json::to_writer(&mut buf, ev)
                .map_err(|e| io_err(path, "encoding an event")(io::Error::other(e)))?;
            buf.push(b'\n');
        }
        create_parent(path)?;
        let created = !path.exists();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err(path, "opening for append"))?;
        let start = f.metadata().map_err(io_err(path, "reading its size"))?.len();
        if let Err(e) = f.write_all(&buf).and_then(|()| f.sync_data()) {
            // A partial append (disk full) must not leave half a line for the retry to land
            // behind: cut back to where this append started.
            let _ = f.set_len(start).and_then(|()| f.sync_data());
            return Err(io_err(path, "appending")(e));
        }
        if created {
            sync_dir(path).map_err(io_err(path, "syncing its directory"))?;
        }
        Ok(buf.len() as u64)
    }

    /// Records refused events (or an unreadable line) in the rejected file, with the reason.
    pub fn reject(
        &self,
        events: &[StoreEvent],
        line: Option<&str>,
        reason: &str,
    ) -> Result<(), SpillError> {
        let path = &self.rejected;
        let mut buf = Vec::new();
        let mut push = |r: &RejectedLine<'_>| {
            let _ = serde_json::to_writer(&mut buf, r);
            buf.push(b'\n');
        };
        for ev in events {
            push(&RejectedLine { reason, event: Some(ev), line: None });
        }
        if let Some(text) = line {
            push(&RejectedLine { reason, event: None, line: Some(text) });
        }
        create_parent(path)?;
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err(path, "opening for append"))?;
        f.write_all(&buf).map_err(io_err(path, "appending"))?;
        f.sync_data().map_err(io_err(path, "syncing"))
    }

    /// Cuts a torn last line (no trailing newline) off both spill files.
    pub fn repair(&self) -> Result<(), SpillError> {
        for path in [&self.replay, &self.active] {
            repair_tail(path)?;
        }
        Ok(())
    }

    /// Whether anything waits to be replayed.
    pub fn pending(&self) -> bool {
        nonempty(&self.replay) || nonempty(&self.active)
    }

    /// Moves the active file to the replay name, unless a replay file already exists (it must
    /// be finished first). Returns whether a replay file now exists.
    pub fn rotate(&self) -> Result<bool, SpillError> {
        if self.replay.exists() {
            return Ok(true);
        }
        if !nonempty(&self.active) {
            return Ok(false);
        }
        std::fs::rename(&self.active, &self.replay)
            .map_err(io_err(&self.active, "renaming for replay"))?;
        sync_dir(&self.replay).map_err(io_err(&self.replay, "syncing its directory"))?;
        Ok(true)
    }

    /// Removes the replay file once every event in it is committed.
    pub fn finish_replay(&self) -> Result<(), SpillError> {
        match std::fs::remove_file(&self.replay) {
            Ok(()) => {}
            Err(e) if absent(&e) => return Ok(()),
            Err(e) => return Err(io_err(&self.replay, "removing after replay")(e)),
        }
        sync_dir(&self.replay).map_err(io_err(&self.replay, "syncing its directory"))
    }

    /// Events and bytes waiting in both spill files.
    pub fn stats(&self) -> Result<SpillStats, SpillError> {
        let mut total = SpillStats::default();
        for path in [&self.replay, &self.active] {
            let s = file_stats(path)?;
            total.events += s.events;
            total.bytes += s.bytes;
            total.max_id = total.max_id.max(s.max_id);
        }
        Ok(total)
    }
}

/// The error of a file that is not there (or whose directory is not a directory).
fn absent(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

fn create_parent(path: &Path) -> Result<(), SpillError> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(io_err(path, "creating its directory")),
        None => Ok(()),
    }
}

fn nonempty(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.len() > 0).unwrap_or(false)
}

fn repair_tail(path: &Path) -> Result<(), SpillError> {
    let mut f = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if absent(&e) => return Ok(()),
        Err(e) => return Err(io_err(path, "opening to check its end")(e)),
    };
    let len = f.metadata().map_err(io_err(path, "reading its size"))?.len();
    if len == 0 {
        return Ok(());
    }
    // Scan back from the end for the last newline.
    let mut end = len;
    let mut buf = [0u8; 4096];
    loop {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start)).map_err(io_err(path, "seeking"))?;
        f.read_exact(&mut buf[..n]).map_err(io_err(path, "reading its end"))?;
        if let Some(pos) = buf[..n].iter().rposition(|&b| b == b'\n') {
            let keep = start + pos as u64 + 1;
            if keep < len {
                log::warn!(target: "store", "spill {}: cutting a torn last line ({} bytes)", path.display(), len - keep);
                f.set_len(keep).map_err(io_err(path, "cutting a torn line"))?;
                f.sync_data().map_err(io_err(path, "syncing"))?;
            }
            return Ok(());
        }
        if start == 0 {
            log::warn!(target: "store", "spill {}: cutting a torn only line ({len} bytes)", path.display());
            f.set_len(0).map_err(io_err(path, "cutting a torn line"))?;
            return f.sync_data().map_err(io_err(path, "syncing"));
        }
        end = start;
    }
}

fn file_stats(path: &Path) -> Result<SpillStats, SpillError> {
    let mut stats = SpillStats::default();
    let mut reader = match SpillReader::open(path, 0)? {
        Some(r) => r,
        None => return Ok(stats),
    };
    loop {
        let (events, bad) = reader.next_batch(4096)?;
        if events.is_empty() && bad.is_empty() {
            break;
        }
        stats.events += (events.len() + bad.len()) as u64;
        stats.max_id = stats.max_id.max(events.iter().map(|e| e.id).max());
    }
    stats.bytes = reader.offset();
    Ok(stats)
}

/// Reads a spill file in batches, remembering how far it got.
pub struct SpillReader {
    path: PathBuf,
    reader: BufReader<File>,
    offset: u64,
}

impl SpillReader {
    /// Opens `path` at byte `offset`; `None` if the file does not exist.
    pub fn open(path: &Path, offset: u64) -> Result<Option<SpillReader>, SpillError> {
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if absent(&e) => return Ok(None),
            Err(e) => return Err(io_err(path, "opening to replay")(e)),
        };
        f.seek(SeekFrom::Start(offset)).map_err(io_err(path, "seeking"))?;
        Ok(Some(SpillReader { path: path.to_path_buf(), reader: BufReader::new(f), offset }))
    }

    /// The byte offset after the last line returned.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Up to `max` events, plus the lines among them that are not events. Empty at the end.
    /// A last line without its newline (torn by a crash) is left unread.
    pub fn next_batch(
        &mut self,
        max: usize,
    ) -> Result<(Vec<StoreEvent>, Vec<BadLine>), SpillError> {
        let mut events = Vec::new();
        let mut bad = Vec::new();
        let mut line = String::new();
        while events.len() + bad.len() < max {
            line.clear();
            let n = self.reader.read_line(&mut line).map_err(io_err(&self.path, "reading"))?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            let at = self.offset;
            self.offset += n as u64;
            let text = line.trim_end();
            if text.is_empty() {
                continue;
            }
            match serde_json::from_str::<StoreEvent>(text) {
                Ok(ev) => events.push(ev),
                Err(e) => {
                    bad.push(BadLine { offset: at, text: text.to_string(), error: e.to_string() })
                }
            }
        }
        Ok((events, bad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Timestamp;
    use crate::store::records::{Actor, AuditRecord, EventKind};

    fn ev(id: i64) -> StoreEvent {
        StoreEvent {
            id: EventId(id),
            at: Timestamp(id),
            kind: EventKind::Audit(AuditRecord {
                at: Timestamp(id),
                actor: Actor::Operator,
                action: "resume".into(),
                detail: format!("n={id}"),
            }),
        }
    }

    fn read_all(path: &Path) -> (Vec<StoreEvent>, Vec<BadLine>) {
        let mut r = SpillReader::open(path, 0).unwrap().unwrap();
        let mut all = (Vec::new(), Vec::new());
        loop {
            let (e, b) = r.next_batch(2).unwrap();
            if e.is_empty() && b.is_empty() {
                return all;
            }
            all.0.extend(e);
            all.1.extend(b);
        }
    }

    #[test]
    fn appended_batches_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let spill = SpillFiles::new(dir.path().join("s/store.spill"));
        assert!(!spill.pending());
        spill.append(&[ev(1), ev(2)]).unwrap();
        spill.append(&[ev(3)]).unwrap();
        assert!(spill.pending());
        let (events, bad) = read_all(&spill.active);
        assert_eq!(events, vec![ev(1), ev(2), ev(3)]);
        assert!(bad.is_empty());
        let st = spill.stats().unwrap();
        assert_eq!((st.events, st.max_id), (3, Some(EventId(3))));
        assert_eq!(st.bytes, std::fs::metadata(&spill.active).unwrap().len());
    }

    #[test]
    fn a_torn_last_line_is_cut_and_a_bad_middle_line_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let spill = SpillFiles::new(dir.path().join("store.spill"));
        spill.append(&[ev(1)]).unwrap();
        let mut f = OpenOptions::new().append(true).open(&spill.active).unwrap();
        f.write_all(b"not json\n").unwrap();
        drop(f);
        spill.append(&[ev(2)]).unwrap();
        let mut f = OpenOptions::new().append(true).open(&spill.active).unwrap();
        f.write_all(b"{\"id\":3,\"at\":").unwrap();
        drop(f);
        // The torn line is not read even before the repair.
        let (events, bad) = read_all(&spill.active);
        assert_eq!(events, vec![ev(1), ev(2)]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].text, "not json");
        spill.repair().unwrap();
        let text = std::fs::read_to_string(&spill.active).unwrap();
        assert!(text.ends_with('\n') && !text.contains("\"id\":3"), "{text}");
        spill.append(&[ev(4)]).unwrap();
        assert_eq!(read_all(&spill.active).0, vec![ev(1), ev(2), ev(4)]);
    }

    #[test]
    fn rotation_moves_the_active_file_aside_until_the_replay_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let spill = SpillFiles::new(dir.path().join("store.spill"));
        assert!(!spill.rotate().unwrap(), "nothing to rotate");
        spill.append(&[ev(1)]).unwrap();
        assert!(spill.rotate().unwrap());
        assert!(!spill.active.exists());
        spill.append(&[ev(2)]).unwrap();
        // A replay in progress is never overwritten.
        assert!(spill.rotate().unwrap());
        assert_eq!(read_all(&spill.replay).0, vec![ev(1)]);
        assert_eq!(spill.stats().unwrap().events, 2);
        spill.finish_replay().unwrap();
        assert!(spill.rotate().unwrap());
        assert_eq!(read_all(&spill.replay).0, vec![ev(2)]);
        spill.finish_replay().unwrap();
        assert!(!spill.pending());
    }

    #[test]
    fn rejected_events_are_kept_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let spill = SpillFiles::new(dir.path().join("store.spill"));
        spill.reject(&[ev(7)], None, "refused: check constraint").unwrap();
        spill.reject(&[], Some("garbage"), "unreadable").unwrap();
        let text = std::fs::read_to_string(&spill.rejected).unwrap();
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["reason"], "refused: check constraint");
        assert_eq!(lines[0]["event"]["id"], 7);
        assert_eq!(lines[1]["line"], "garbage");
    }
}
