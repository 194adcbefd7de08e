//! Loading the instrument master: a generated detailed CSV of the real file's size (~200k rows,
//! all 32 columns, mostly index and stock options like the real one) parsed into the table.
//! Reports the load time and the peak heap the load allocates (a counting allocator), and the
//! process's peak resident set.
//!
//! Run: `cargo bench --bench instruments` (`INSTRUMENTS_BENCH_ROWS`, `INSTRUMENTS_BENCH_RUNS`
//! change the size and the number of loads; defaults 200000 and 5). Without `--bench` (as
//! `make test` runs it) a smoke pass of 2000 rows.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use scalper::instruments::source::parse_file;
use scalper::instruments::synthetic::DETAILED_HEADER;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// A deterministic master: 80 % index options over 4 underlyings, 12 % stock options, 4 % stock
/// futures, 4 % equities on NSE and BSE.
fn generate(rows: usize, out: &mut impl Write) -> std::io::Result<()> {
    let mut rng = fastrand::Rng::with_seed(12);
    writeln!(out, "{DETAILED_HEADER}")?;
    let idx = ["NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY"];
    for n in 0..rows {
        let id = 30_000 + n as u32;
        let month = MONTHS[rng.usize(0..12)];
        let day = rng.u32(1..29);
        let year = 2026 + rng.u32(0..2);
        let m = MONTHS.iter().position(|x| *x == month).unwrap_or(0) + 1;
        let expiry = format!("{year}-{m:02}-{day:02} 14:30:00");
        match rng.u8(0..100) {
            0..=79 => {
                let u = idx[rng.usize(0..4)];
                let strike = 10_000 + rng.u32(0..800) * 50;
                let (ot, word) = if rng.bool() { ("CE", "CALL") } else { ("PE", "PUT") };
                let upper = rng.u32(100..200_000);
                writeln!(
                    out,
                    "NSE,D,{id},NA,OPTIDX,13,{u},{u}-{month}{year}-{strike}-{ot},{u} {day} {} {strike} {word},OP,NA,75.0,{expiry},{strike}.00000,{ot},0.0500,M,N,N,N,NA,A,0,0,0,0,0,0,0,{}.{:02},0.05,1800",
                    month.to_uppercase(),
                    upper / 100,
                    upper % 100
                )?;
            }
            80..=91 => {
                let u = format!("STOCK{}", rng.u32(0..200));
                let strike = 100 + rng.u32(0..400) * 10;
                writeln!(
                    out,
                    "NSE,D,{id},NA,OPTSTK,{},{u},{u}-{month}{year}-{strike}-CE,{u} {day} {} {strike} CALL,OP,NA,500.0,{expiry},{strike}.00000,CE,0.0500,M,N,N,N,NA,A,0,0,0,0,0,0,0,250.00,0.05,20000",
                    id % 1000,
                    month.to_uppercase()
                )?;
            }
            92..=95 => {
                let u = format!("STOCK{}", rng.u32(0..200));
                writeln!(
                    out,
                    "NSE,D,{id},NA,FUTSTK,{},{u},{u}-{month}{year}-FUT,{u} {} FUT,FUT,NA,500.0,{expiry},-0.01000,XX,0.1000,M,N,N,N,NA,A,0,0,0,0,0,0,0,1650.00,1350.00,10000",
                    id % 1000,
                    month.to_uppercase()
                )?;
            }
            _ => {
                let exch = if rng.bool() { "NSE" } else { "BSE" };
                writeln!(
                    out,
                    "{exch},E,{id},INE{id:09},EQUITY,{id},EQ{id},EQ{id},Equity {id},ES,EQ,1.0,0001-01-01,,XX,0.0500,N,N,N,N,NA,A,0,0,0,0,0,0,5,1650.00,1350.00,0"
                )?;
            }
        }
    }
    Ok(())
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` (make test) does not: a smoke pass.
    let measuring = std::env::args().any(|a| a == "--bench");
    let rows = env_usize("INSTRUMENTS_BENCH_ROWS", if measuring { 200_000 } else { 2_000 });
    let runs = env_usize("INSTRUMENTS_BENCH_RUNS", if measuring { 5 } else { 1 }).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("master.csv");
    {
        let f = std::fs::File::create(&path).expect("create");
        let mut w = std::io::BufWriter::new(f);
        generate(rows, &mut w).expect("write");
        w.flush().expect("flush");
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("instruments: {rows} rows, {:.1} MB file", size as f64 / 1e6);
    let mut times = Vec::with_capacity(runs);
    let mut peak_heap = 0usize;
    for _ in 0..runs {
        let base = CURRENT.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let start = Instant::now();
        let table = parse_file(&path).expect("the generated master parses");
        let elapsed = start.elapsed();
        peak_heap = peak_heap.max(PEAK.load(Ordering::Relaxed) - base);
        assert_eq!(table.len(), rows);
        let held = CURRENT.load(Ordering::Relaxed) - base;
        drop(table);
        times.push(elapsed);
        println!(
            "  load {:>7.1} ms, table holds {:.1} MB",
            elapsed.as_secs_f64() * 1e3,
            held as f64 / 1e6
        );
    }
    times.sort();
    println!(
        "instruments: load median {:.1} ms (min {:.1} ms) over {runs} runs; peak heap during a load {:.1} MB; process peak RSS {} MB",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        peak_heap as f64 / 1e6,
        peak_rss_kib().map_or_else(|| "?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0))
    );
}
