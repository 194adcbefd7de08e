//! The order journal's durable write, the one disk wait on an order's path: the ways to make a
//! placement durable before it is sent, measured on the data disk (the target directory) and on
//! tmpfs (`/dev/shm`), back to back and after an idle pause (what the first exit after a quiet
//! spell pays), as distributions (hdrhistogram, µs):
//!
//! 1. append a JSON line + `fsync` (file data and metadata);
//! 2. append a JSON line + `fdatasync` (the journal before the record file);
//! 3. `pwrite` of a 512-byte record under `O_DSYNC` into a file preallocated with `fallocate`
//!    (unwritten extents: the first write to each block still changes metadata);
//! 4. the same into a file preallocated by writing zeros (and syncing it once): the blocks are
//!    allocated and written, so a record's write flushes data only (what the journal does);
//! 5. group commit for a burst of 4 placements (a flatten with 4 placers): 4 records written
//!    one after the other, in one `pwrite`, and by 4 threads at once;
//! 6. `OrderJournal::record` itself (the chosen method, with its encoding and bookkeeping),
//!    alone and by 4 threads at once (its group commit).
//!
//! `cargo bench --bench journal` runs the full counts; under `cargo test` a short smoke run
//! checks that it works.

#[path = "support/micros.rs"]
mod micros;
use micros::{histogram, report};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use scalper::broker::journal::OrderJournal;
use scalper::domain::{
    Clock, CorrelationId, ExitReason, InstrumentKey, OrderIntent, OrderPurpose, Paise, PositionId,
    Qty, Segment, SystemClock, Timestamp, Txn,
};

const RECORD: usize = 512;
const FILE_LEN: u64 = 4 << 20;

struct Sizes {
    back_to_back: usize,
    after_idle: usize,
    idle: Duration,
    bursts: usize,
}

fn intent(i: usize) -> OrderIntent {
    OrderIntent {
        correlation_id: CorrelationId::new(format!("X{}-bench", i + 1)).expect("short id"),
        position_id: PositionId::new("bench"),
        instrument: InstrumentKey::new(Segment::NseFno, 52175),
        txn: Txn::Sell,
        quantity: Qty(75),
        purpose: OrderPurpose::Exit(ExitReason::StopLoss),
        reference_price: Paise(12345),
        price_is_stale: false,
        created_at: Timestamp(0),
        limit_price: None,
    }
}

fn line(i: usize) -> Vec<u8> {
    let mut v = serde_json::to_vec(&intent(i)).expect("encodes");
    v.push(b'\n');
    v
}

fn record(i: usize) -> [u8; RECORD] {
    let mut r = [b' '; RECORD];
    let l = line(i);
    r[..l.len()].copy_from_slice(&l);
    r[RECORD - 1] = b'\n';
    r
}

/// Times `write(i)` `n` times, with `idle` before each when given.
fn measure(n: usize, idle: Option<Duration>, mut write: impl FnMut(usize)) -> Histogram<u64> {
    let mut h = histogram();
    for i in 0..n {
        if let Some(d) = idle {
            std::thread::sleep(d);
        }
        let t = Instant::now();
        write(i);
        h.record((t.elapsed().as_micros() as u64).max(1)).expect("in range");
    }
    h
}

fn appender(dir: &Path, name: &str) -> File {
    OpenOptions::new().create(true).append(true).open(dir.join(name)).expect("journal file")
}

fn zeroed(dir: &Path, name: &str) -> File {
    let path = dir.join(name);
    let mut f = File::create(&path).expect("journal file");
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..FILE_LEN / chunk.len() as u64 {
        f.write_all(&chunk).expect("zero fill");
    }
    f.sync_all().expect("sync");
    drop(f);
    dsync(&path)
}

fn fallocated(dir: &Path, name: &str) -> File {
    use std::os::fd::AsRawFd;
    let path = dir.join(name);
    let f = File::create(&path).expect("journal file");
    // SAFETY: a valid open descriptor; fallocate reads no memory of ours.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, FILE_LEN as libc::off_t) };
    assert_eq!(rc, 0, "fallocate: {}", std::io::Error::last_os_error());
    f.sync_all().expect("sync");
    drop(f);
    dsync(&path)
}

fn dsync(path: &Path) -> File {
    OpenOptions::new().write(true).custom_flags(libc::O_DSYNC).open(path).expect("reopen O_DSYNC")
}

fn run(label: &str, dir: &Path, s: &Sizes) {
    println!("on {label} ({})", dir.display());
    for (name, idle) in [("back to back", None), ("after idle", Some(s.idle))] {
        let n = if idle.is_some() { s.after_idle } else { s.back_to_back };
        let mut f = appender(dir, &format!("fsync-{name}.jsonl"));
        report(
            &format!("  1 append + fsync, {name}"),
            &measure(n, idle, |i| {
                f.write_all(&line(i)).expect("write");
                f.sync_all().expect("fsync");
            }),
        );
        let mut f = appender(dir, &format!("fdatasync-{name}.jsonl"));
        report(
            &format!("  2 append + fdatasync, {name}"),
            &measure(n, idle, |i| {
                f.write_all(&line(i)).expect("write");
                f.sync_data().expect("fdatasync");
            }),
        );
        let f = fallocated(dir, &format!("fallocated-{name}.jnl"));
        report(
            &format!("  3 fallocate + pwrite O_DSYNC, {name}"),
            &measure(n, idle, |i| {
                f.write_all_at(&record(i), (i * RECORD) as u64).expect("pwrite");
            }),
        );
        let f = zeroed(dir, &format!("zeroed-{name}.jnl"));
        report(
            &format!("  4 zero-filled + pwrite O_DSYNC, {name}"),
            &measure(n, idle, |i| {
                f.write_all_at(&record(i), (i * RECORD) as u64).expect("pwrite");
            }),
        );
        let j = OrderJournal::open(&dir.join(format!("journal-{name}")), SystemClock.now())
            .expect("journal");
        report(
            &format!("  6 OrderJournal::record, {name}"),
            &measure(n, idle, |i| j.record(&intent(i), SystemClock.now()).expect("record")),
        );
    }
    // A burst of 4 after an idle pause, zero-filled file: the time until all 4 are durable.
    let f = Arc::new(zeroed(dir, "burst.jnl"));
    let mut slot = 0usize;
    report(
        "  5 burst of 4: one pwrite O_DSYNC each, in turn",
        &measure(s.bursts, Some(s.idle), |_| {
            for _ in 0..4 {
                f.write_all_at(&record(slot), (slot * RECORD) as u64).expect("pwrite");
                slot += 1;
            }
        }),
    );
    report(
        "  5 burst of 4: group commit, one pwrite of 4 records",
        &measure(s.bursts, Some(s.idle), |_| {
            let mut buf = Vec::with_capacity(4 * RECORD);
            for k in 0..4 {
                buf.extend_from_slice(&record(slot + k));
            }
            f.write_all_at(&buf, (slot * RECORD) as u64).expect("pwrite");
            slot += 4;
        }),
    );
    let mut h = histogram();
    for _ in 0..s.bursts {
        std::thread::sleep(s.idle);
        let go = Arc::new(Barrier::new(5));
        let threads: Vec<_> = (0..4)
            .map(|k| {
                let (f, go) = (f.clone(), go.clone());
                let at = slot + k;
                std::thread::spawn(move || {
                    go.wait();
                    f.write_all_at(&record(at), (at * RECORD) as u64).expect("pwrite");
                })
            })
            .collect();
        go.wait();
        let t = Instant::now();
        for t in threads {
            t.join().expect("writer");
        }
        h.record((t.elapsed().as_micros() as u64).max(1)).expect("in range");
        slot += 4;
    }
    report("  5 burst of 4: 4 threads, one pwrite O_DSYNC each, at once", &h);
    let j = Arc::new(
        OrderJournal::open(&dir.join("journal-burst"), SystemClock.now()).expect("journal"),
    );
    let mut h = histogram();
    for b in 0..s.bursts {
        std::thread::sleep(s.idle);
        let go = Arc::new(Barrier::new(5));
        let threads: Vec<_> = (0..4)
            .map(|k| {
                let (j, go) = (j.clone(), go.clone());
                std::thread::spawn(move || {
                    go.wait();
                    j.record(&intent(b * 4 + k), SystemClock.now()).expect("record");
                })
            })
            .collect();
        go.wait();
        let t = Instant::now();
        for t in threads {
            t.join().expect("writer");
        }
        h.record((t.elapsed().as_micros() as u64).max(1)).expect("in range");
    }
    report("  6 burst of 4: OrderJournal::record by 4 threads (group commit)", &h);
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let s = if full {
        Sizes { back_to_back: 2000, after_idle: 300, idle: Duration::from_millis(50), bursts: 100 }
    } else {
        Sizes { back_to_back: 20, after_idle: 5, idle: Duration::from_millis(2), bursts: 3 }
    };
    println!(
        "journal durable write ({}): load {}",
        if full { "full" } else { "smoke" },
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        let dir = tempfile::tempdir_in(shm).expect("a directory on tmpfs");
        run("tmpfs", dir.path(), &s);
    } else {
        println!("no /dev/shm: the tmpfs run is skipped");
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a directory on disk");
    run("the data disk", dir.path(), &s);
}
