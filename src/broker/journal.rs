//! The order journal: the write-ahead record of every order handed to Dhan, the one action the
//! engine cannot take back.
//!
//! Dhan has no idempotency key (spec dhan-v2 §6) and our correlation ids are deterministic
//! (`X<attempt>-<position>`), so a process that crashes between sending an order and persisting
//! that it did would, after a restart, recompute the same id for the same trigger and send a
//! second real order. The store cannot close that gap: it is write-behind, so the position's
//! `Exiting` state may not have reached the disk when the order left. The journal does:
//!
//! - before a placement's first byte goes out, its correlation id and intent are written to
//!   today's file (`orders-YYYY-MM-DD.journal`, IST day, under `<data_dir>/journal/`) and are
//!   durable when the write returns (see "The file" below);
//! - at startup today's file is read: every id in it is known to have possibly reached Dhan.
//!   The live gateway never sends such an id again; it settles it by correlation id instead
//!   (lookup, order book, order-update stream; an order still in flight at the crash is found
//!   once its TRANSIT ends, or proved absent after the resolve window counted from the
//!   journal's time), and only a proven absence lets a new attempt (a new id) go out;
//! - reconciliation reads the same file to know which of the book's orders are ours.
//!
//! The alternative, deterministic ids plus a scan of the order book at startup, misses an order
//! still in the network at the crash: the scan can run before the order arrives.
//!
//! # The file
//!
//! A day's file is preallocated when it is created (at startup, or at the first placement of a
//! new IST day): [`PREALLOC_SLOTS`] slots of [`SLOT`] bytes written as zeros and synced once,
//! so its blocks are allocated and its size final. It is opened with `O_DSYNC`, and each
//! record is one `pwrite` of whole slots at the next free slot: the write returns once the data
//! is on the disk, with no metadata to flush (the size does not change and the blocks are
//! already written), which is what makes it cheaper than an append and `fdatasync` — above all
//! after an idle spell (the journal benchmark, `benches/journal.rs`, and README's Decisions).
//!
//! Placements of a burst (a flatten on several placers) share their disk flushes (group
//! commit): one write is in flight at a time; records that arrive meanwhile take the next
//! slots and go together in the next `pwrite`, so four placements at once cost two flushes,
//! not four. Every caller still returns only once its own record is durable.
//!
//! A record is text, so `grep` finds an id in it: `J1 <length, 4 hex> <CRC-32 of the JSON, 8
//! hex>` then the JSON of a [`JournalLine`], padded with spaces to the end of its last slot,
//! which ends in a newline. One slot holds an ordinary intent. Reading walks the slots: a record
//! whose header, length, checksum or JSON does not hold is skipped (a write cut by a crash: it
//! did not complete, so the order it describes was never sent), a zeroed slot is free, and the
//! next record goes after the last slot that is not zero. A full file grows by another
//! preallocation (its new size synced before the record is written).
//!
//! A `.jsonl` file of the same day (the format before this one: JSON lines appended and
//! fsynced) is still read at startup, so an upgrade in the middle of a day forgets no id; new
//! records go to the new file. Files of earlier days are left in place for audits
//! ([`read_file`] reads either format).

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write as _};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use chrono::NaiveDate;
use parking_lot::{Condvar, Mutex, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::domain::{CorrelationId, OrderIntent, Timestamp};

/// A record starts on a slot boundary and takes whole slots (a disk sector: a one-slot write is
/// not torn by most devices, and a torn one is detected anyway).
pub const SLOT: usize = 512;
/// Slots a day's file is created with, and grows by when full: 1 MiB, about 2000 placements.
pub const PREALLOC_SLOTS: u64 = 2048;
/// `J1 ` + 4 hex digits of length + a space + 8 hex digits of CRC-32 + a space.
const HEADER: usize = 17;
const MAGIC: &[u8] = b"J1 ";

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

/// A [`JournalLine`] by reference: the same JSON, without copying the intent to write it.
#[derive(Serialize)]
struct LineRef<'a> {
    at: Timestamp,
    intent: &'a OrderIntent,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    presumed: bool,
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

/// Today's record file, open for writing.
struct DayFile {
    file: Arc<File>,
    path: PathBuf,
    /// Where the next record goes.
    next_slot: u64,
    /// Slots the file holds.
    slots: u64,
}

struct State {
    day: NaiveDate,
    file: Option<DayFile>,
    sent: HashMap<CorrelationId, Sent>,
    /// Records waiting for their write, oldest first (group commit).
    queue: VecDeque<Batch>,
    /// A thread is writing a batch (with the lock released).
    writing: bool,
}

/// Records in consecutive slots of one file, written by one `pwrite`.
struct Batch {
    file: Arc<File>,
    at: u64,
    bytes: Vec<u8>,
    /// Set once the batch is durable (or its write failed).
    done: Arc<OnceLock<Result<(), (io::ErrorKind, String)>>>,
}

/// The journal; shared by the gateway and the order desk (both place orders).
pub struct OrderJournal {
    dir: PathBuf,
    /// Slots a new file gets, and a full one grows by.
    prealloc: u64,
    state: Mutex<State>,
    /// Signalled when a batch is done.
    written: Condvar,
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
    /// Opens the journal in `dir` (created if missing), reads today's files (IST day of `now`):
    /// every id in them counts as sent by a previous run, and prepares today's record file.
    pub fn open(dir: &Path, now: Timestamp) -> Result<OrderJournal, JournalError> {
        OrderJournal::open_with(dir, now, PREALLOC_SLOTS)
    }

    /// As [`OrderJournal::open`], with files of `prealloc` slots (growing by as many).
    fn open_with(dir: &Path, now: Timestamp, prealloc: u64) -> Result<OrderJournal, JournalError> {
        std::fs::create_dir_all(dir).map_err(io_err("creating the directory", dir))?;
        let day = now.ist_date();
        let mut state =
            State { day, file: None, sent: HashMap::new(), queue: VecDeque::new(), writing: false };
        let legacy = legacy_file(dir, day);
        match File::open(&legacy) {
            Ok(f) => {
                let (lines, skipped) = read_lines(f).map_err(io_err("reading", &legacy))?;
                note_skipped(&legacy, skipped);
                absorb(&mut state.sent, lines);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("opening", &legacy)(e)),
        }
        let (file, lines) = DayFile::open(dir, day, prealloc)?;
        absorb(&mut state.sent, lines);
        state.file = Some(file);
        if !state.sent.is_empty() {
            log::info!(target: "journal", "{}: {} orders were sent earlier today; none of them will be sent again", dir.display(), state.sent.len());
        }
        Ok(OrderJournal {
            dir: dir.to_path_buf(),
            prealloc,
            state: Mutex::new(state),
            written: Condvar::new(),
        })
    }

    /// The file of the IST day of `at`.
    pub fn path_for(&self, at: Timestamp) -> PathBuf {
        day_file(&self.dir, at.ist_date())
    }

    /// Records `intent` as about to be sent and makes it durable before returning.
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
        if st.file.is_none() {
            let (file, lines) = DayFile::open(&self.dir, st.day, self.prealloc)?;
            absorb(&mut st.sent, lines);
            st.file = Some(file);
            if st.sent.contains_key(&intent.correlation_id) {
                return Ok(());
            }
        }
        let file = st.file.as_mut().expect("opened above");
        let record = encode_line(&LineRef { at: now, intent, presumed })
            .map_err(io_err("encoding a record for", &file.path))?;
        let at = file.reserve(record.len(), self.prealloc)?;
        // The path is only for an error: made then, from the day the record was written for.
        let (handle, day) = (file.file.clone(), st.day);
        // Group commit: join the batch still waiting when this record follows it in the same
        // file, else start one.
        let done = match st.queue.back_mut() {
            Some(b) if Arc::ptr_eq(&b.file, &handle) && b.at + b.bytes.len() as u64 == at => {
                b.bytes.extend_from_slice(&record);
                b.done.clone()
            }
            _ => {
                let done = Arc::new(OnceLock::new());
                st.queue.push_back(Batch { file: handle, at, bytes: record, done: done.clone() });
                done
            }
        };
        // Until this record's batch is done: while no one is writing, write the oldest batch
        // (this one or one before it), with the lock released so that others can join the
        // next batch meanwhile.
        let result = loop {
            if let Some(r) = done.get() {
                break r.clone();
            }
            if !st.writing
                && let Some(b) = st.queue.pop_front()
            {
                st.writing = true;
                let r = MutexGuard::unlocked(&mut st, || b.file.write_all_at(&b.bytes, b.at));
                st.writing = false;
                let _ = b.done.set(r.map_err(|e| (e.kind(), e.to_string())));
                self.written.notify_all();
                continue;
            }
            self.written.wait(&mut st);
        };
        result.map_err(|(kind, text)| JournalError::Io {
            what: "writing",
            path: day_file(&self.dir, day),
            source: io::Error::new(kind, text),
        })?;
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

/// Adds what an earlier run wrote.
fn absorb(sent: &mut HashMap<CorrelationId, Sent>, lines: Vec<JournalLine>) {
    for l in lines {
        let s = Sent { at: l.at, intent: l.intent, previous_run: true, presumed: l.presumed };
        sent.insert(s.intent.correlation_id.clone(), s);
    }
}

fn note_skipped(path: &Path, skipped: usize) {
    if skipped > 0 {
        log::warn!(target: "journal", "{}: skipped {skipped} unreadable records (an interrupted write)", path.display());
    }
}

impl DayFile {
    /// Opens (or creates and preallocates) the record file of `day`, returning what it holds.
    fn open(
        dir: &Path,
        day: NaiveDate,
        prealloc: u64,
    ) -> Result<(DayFile, Vec<JournalLine>), JournalError> {
        let path = day_file(dir, day);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .custom_flags(libc::O_DSYNC)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err("reading", &path))?;
        let parsed = parse_records(&bytes);
        note_skipped(&path, parsed.skipped);
        let slots = (bytes.len() / SLOT) as u64;
        let mut day_file =
            DayFile { file: Arc::new(file), path, next_slot: parsed.used_slots, slots };
        if day_file.slots < prealloc {
            day_file.grow(prealloc - day_file.slots)?;
        }
        // The file's directory entry must survive a crash too.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok((day_file, parsed.lines))
    }

    /// Takes the next free slots for a record of `len` bytes (whole slots), growing the file
    /// when it is full, and returns their offset. The record is durable once a `pwrite` of it
    /// there returns (`O_DSYNC`).
    fn reserve(&mut self, len: usize, grow_by: u64) -> Result<u64, JournalError> {
        let need = (len / SLOT) as u64;
        if self.next_slot + need > self.slots {
            self.grow(grow_by.max(need))?;
        }
        let at = self.next_slot * SLOT as u64;
        self.next_slot += need;
        Ok(at)
    }

    /// Adds `slots` zeroed slots at the end and syncs the new size.
    fn grow(&mut self, slots: u64) -> Result<(), JournalError> {
        const CHUNK: usize = 1 << 20;
        let zeros = vec![0u8; CHUNK.min(slots as usize * SLOT)];
        let end = (self.slots + slots) * SLOT as u64;
        let mut at = self.slots * SLOT as u64;
        while at < end {
            let n = ((end - at) as usize).min(zeros.len());
            self.file.write_all_at(&zeros[..n], at).map_err(io_err("preallocating", &self.path))?;
            at += n as u64;
        }
        // Drops a partial slot a crash may have left past the last whole one.
        self.file.set_len(end).map_err(io_err("preallocating", &self.path))?;
        self.file.sync_all().map_err(io_err("syncing", &self.path))?;
        self.slots += slots;
        Ok(())
    }
}

/// The record of one line, as [`encode`] makes it from the line's JSON, written into one
/// buffer: the JSON after room for the header, then the header in place (one allocation for
/// a record of one slot).
fn encode_line(line: &LineRef<'_>) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(SLOT);
    out.resize(HEADER, b' ');
    serde_json::to_writer(&mut out, line).map_err(io::Error::other)?;
    let json_len = out.len() - HEADER;
    if json_len > 0xFFFF {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a record over 64 KiB"));
    }
    let len = (HEADER + json_len + 1).div_ceil(SLOT) * SLOT;
    let crc = crc32(&out[HEADER..]);
    let mut header = &mut out[..HEADER];
    write!(header, "J1 {json_len:04x} {crc:08x} ")?;
    out.resize(len - 1, b' ');
    out.push(b'\n');
    Ok(out)
}

/// The record of one JSON text: header, text, spaces, a newline; whole slots. The reference
/// form [`encode_line`] must give (and the tests' way to make records).
#[cfg(test)]
fn encode(json: &[u8]) -> io::Result<Vec<u8>> {
    if json.len() > 0xFFFF {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a record over 64 KiB"));
    }
    let len = (HEADER + json.len() + 1).div_ceil(SLOT) * SLOT;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(format!("J1 {:04x} {:08x} ", json.len(), crc32(json)).as_bytes());
    out.extend_from_slice(json);
    out.resize(len - 1, b' ');
    out.push(b'\n');
    Ok(out)
}

struct Parsed {
    lines: Vec<JournalLine>,
    /// Slots that are neither free nor part of a whole record.
    skipped: usize,
    /// One past the last slot that is not zero.
    used_slots: u64,
}

/// The records in a record file's bytes (see the module doc).
fn parse_records(bytes: &[u8]) -> Parsed {
    let slots = bytes.len() / SLOT;
    let mut out = Parsed { lines: Vec::new(), skipped: 0, used_slots: 0 };
    let mut i = 0;
    while i < slots {
        let at = i * SLOT;
        if bytes[at..at + SLOT].iter().all(|&b| b == 0) {
            i += 1;
            continue;
        }
        match record_at(&bytes[at..]) {
            Some((line, n)) => {
                out.lines.push(line);
                i += n;
            }
            None => {
                out.skipped += 1;
                i += 1;
            }
        }
        out.used_slots = i as u64;
    }
    out
}

/// The record starting at `bytes[0]` and the slots it takes, if it is whole.
fn record_at(bytes: &[u8]) -> Option<(JournalLine, usize)> {
    let header = bytes.get(..HEADER)?;
    if !header.starts_with(MAGIC) || header[7] != b' ' || header[16] != b' ' {
        return None;
    }
    let hex = |b: &[u8]| u32::from_str_radix(std::str::from_utf8(b).ok()?, 16).ok();
    let len = hex(&header[3..7])? as usize;
    let crc = hex(&header[8..16])?;
    let slots = (HEADER + len + 1).div_ceil(SLOT);
    let whole = bytes.get(..slots * SLOT)?;
    let json = &whole[HEADER..HEADER + len];
    if crc32(json) != crc || whole[slots * SLOT - 1] != b'\n' {
        return None;
    }
    let line = serde_json::from_slice(json).ok()?;
    Some((line, slots))
}

/// JSON lines (the format before record files); a line that does not parse (a torn last line:
/// the crash came before the fsync returned, so its order was never sent) is counted.
fn read_lines(f: File) -> io::Result<(Vec<JournalLine>, usize)> {
    let (mut lines, mut skipped) = (Vec::new(), 0);
    for line in BufReader::new(f).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<JournalLine>(&line) {
            Ok(l) => lines.push(l),
            Err(_) => skipped += 1,
        }
    }
    Ok((lines, skipped))
}

/// Every whole record of a journal file of either format (`.journal` records, `.jsonl`
/// lines), in file order: for audits and tests.
pub fn read_file(path: &Path) -> io::Result<Vec<JournalLine>> {
    if path.extension().is_some_and(|e| e == "jsonl") {
        return Ok(read_lines(File::open(path)?)?.0);
    }
    Ok(parse_records(&std::fs::read(path)?).lines)
}

fn day_file(dir: &Path, day: NaiveDate) -> PathBuf {
    dir.join(format!("orders-{}.journal", day.format("%Y-%m-%d")))
}

fn legacy_file(dir: &Path, day: NaiveDate) -> PathBuf {
    dir.join(format!("orders-{}.jsonl", day.format("%Y-%m-%d")))
}

/// CRC-32 (IEEE 802.3, as zlib computes it).
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in bytes {
        c = TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
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
    fn a_line_is_encoded_in_place_as_from_its_json() {
        for (cid, presumed, position) in
            [("X1-p1", false, "p1".to_string()), ("N2-p9", true, "q".repeat(700))]
        {
            let mut line = JournalLine { at: MON, intent: intent(cid), presumed };
            line.intent.position_id = PositionId::new(position);
            let want = encode(&serde_json::to_vec(&line).unwrap()).unwrap();
            let got = encode_line(&LineRef { at: MON, intent: &line.intent, presumed }).unwrap();
            assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want));
        }
    }

    #[test]
    fn a_record_round_trips_through_its_text_form() {
        let line = JournalLine { at: MON, intent: intent("X1-p1"), presumed: true };
        let json = serde_json::to_vec(&line).unwrap();
        let record = encode(&json).unwrap();
        assert_eq!(record.len(), SLOT, "an ordinary intent takes one slot");
        assert!(record.starts_with(format!("J1 {:04x} ", json.len()).as_bytes()));
        assert_eq!(record.last(), Some(&b'\n'));
        assert_eq!(record_at(&record), Some((line.clone(), 1)));
        // A long one spans slots and still round-trips.
        let mut long = line.clone();
        long.intent.position_id = PositionId::new("p".repeat(700));
        let record = encode(&serde_json::to_vec(&long).unwrap()).unwrap();
        assert_eq!(record.len(), 2 * SLOT);
        assert_eq!(record_at(&record), Some((long, 2)));
        // The check value is zlib's.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    /// The day's file after a crash that cut the second of two writes at `keep` bytes.
    fn reopen_after_a_torn_write(keep: usize) -> (OrderJournal, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let j = OrderJournal::open(dir.path(), MON).unwrap();
        j.record(&intent("X1-p1"), MON).unwrap();
        let path = j.path_for(MON);
        drop(j);
        let line = JournalLine { at: MON, intent: intent("X2-p1"), presumed: false };
        let record = encode(&serde_json::to_vec(&line).unwrap()).unwrap();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&record[..keep], SLOT as u64).unwrap();
        drop(f);
        (OrderJournal::open(dir.path(), MON).unwrap(), dir)
    }

    #[test]
    fn a_torn_record_is_not_an_order_sent_and_the_next_goes_after_it() {
        for keep in [1, 16, 100, 300, SLOT - 1] {
            let (j, _dir) = reopen_after_a_torn_write(keep);
            assert_eq!(j.today().len(), 1, "cut at {keep}");
            assert!(j.lookup(&intent("X2-p1").correlation_id).is_none(), "cut at {keep}");
            j.record(&intent("X3-p1"), MON).unwrap();
            let lines = read_file(&j.path_for(MON)).unwrap();
            let ids: Vec<&str> = lines.iter().map(|l| l.intent.correlation_id.as_str()).collect();
            assert_eq!(ids, ["X1-p1", "X3-p1"], "cut at {keep}");
        }
    }

    #[test]
    fn a_record_with_a_flipped_byte_is_skipped() {
        let line = JournalLine { at: MON, intent: intent("X1-p1"), presumed: false };
        let mut record = encode(&serde_json::to_vec(&line).unwrap()).unwrap();
        record[40] ^= 0x20;
        assert_eq!(record_at(&record), None);
        let parsed = parse_records(&record);
        assert_eq!((parsed.lines.len(), parsed.skipped, parsed.used_slots), (0, 1, 1));
    }

    #[test]
    fn a_zeroed_tail_is_free_space_not_records() {
        let dir = tempfile::tempdir().unwrap();
        let j = OrderJournal::open(dir.path(), MON).unwrap();
        let path = j.path_for(MON);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), PREALLOC_SLOTS * SLOT as u64);
        j.record(&intent("X1-p1"), MON).unwrap();
        j.record(&intent("X2-p1"), MON).unwrap();
        let parsed = parse_records(&std::fs::read(&path).unwrap());
        assert_eq!((parsed.lines.len(), parsed.skipped, parsed.used_slots), (2, 0, 2));
        // The size never changed: a record's write flushes data only.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), PREALLOC_SLOTS * SLOT as u64);
    }

    #[test]
    fn a_full_file_grows_and_keeps_every_record_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let j = OrderJournal::open_with(dir.path(), MON, 2).unwrap();
        let path = j.path_for(MON);
        for i in 1..=5 {
            j.record(&intent(&format!("X{i}-p1")), MON).unwrap();
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 6 * SLOT as u64);
        drop(j);
        let j = OrderJournal::open_with(dir.path(), MON, 2).unwrap();
        assert_eq!(j.today().len(), 5);
        j.record(&intent("X6-p1"), MON).unwrap();
        let ids: Vec<String> = read_file(&path)
            .unwrap()
            .into_iter()
            .map(|l| l.intent.correlation_id.as_str().to_owned())
            .collect();
        assert_eq!(ids, ["X1-p1", "X2-p1", "X3-p1", "X4-p1", "X5-p1", "X6-p1"]);
        // A crash while growing leaves a partial slot: it is dropped by the next growth.
        drop(j);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(7 * SLOT as u64 + 100).unwrap();
        drop(f);
        let j = OrderJournal::open_with(dir.path(), MON, 2).unwrap();
        j.record(&intent("X7-p1"), MON).unwrap();
        j.record(&intent("X8-p1"), MON).unwrap();
        assert_eq!(read_file(&path).unwrap().len(), 8);
        assert_eq!(std::fs::metadata(&path).unwrap().len() % SLOT as u64, 0);
    }

    #[test]
    fn a_jsonl_file_of_the_same_day_is_still_read_and_its_torn_line_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let old = legacy_file(dir.path(), MON.ist_date());
        let line = JournalLine { at: MON, intent: intent("X1-p1"), presumed: false };
        let mut text = serde_json::to_string(&line).unwrap();
        text.push('\n');
        text.push_str(r#"{"at":1763958600000,"intent":{"correlation_id":"X2-p"#);
        std::fs::write(&old, text).unwrap();
        let j = OrderJournal::open(dir.path(), MON).unwrap();
        assert!(j.lookup(&intent("X1-p1").correlation_id).unwrap().previous_run);
        assert!(j.lookup(&intent("X2-p1").correlation_id).is_none());
        j.record(&intent("X1-p1"), MON).unwrap();
        j.record(&intent("X2-p1"), MON).unwrap();
        let new: Vec<_> = read_file(&j.path_for(MON)).unwrap();
        assert_eq!(new.len(), 1, "only the new id is written, to the new file");
        assert_eq!(read_file(&old).unwrap().len(), 1, "the old file is left as it was");
        // Another day's old file is not read.
        drop(j);
        let j = OrderJournal::open(dir.path(), TUE).unwrap();
        assert!(j.today().is_empty());
    }

    #[test]
    fn records_written_at_once_by_many_threads_are_all_durable_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let j = Arc::new(OrderJournal::open_with(dir.path(), MON, 16).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let j = j.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        j.record(&intent(&format!("X{}-p{t}", i + 1)), MON).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(j.today().len(), 200);
        let path = j.path_for(MON);
        drop(j);
        let parsed = parse_records(&std::fs::read(&path).unwrap());
        assert_eq!((parsed.lines.len(), parsed.skipped, parsed.used_slots), (200, 0, 200));
        assert_eq!(OrderJournal::open(dir.path(), MON).unwrap().today().len(), 200);
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
        assert_eq!(read_file(&j.path_for(MON)).unwrap().len(), 1);
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
