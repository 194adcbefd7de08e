//! The instrument master: parsing Dhan's detailed CSV from fixtures, the last good copy after a
//! failed download, and the atomic daily swap.

#[path = "log_capture/mod.rs"]
mod log_capture;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use scalper::domain::{InstrumentKey, Paise, Qty, Segment};
use scalper::instruments::source::{MasterSource, Origin};
use scalper::instruments::{
    MasterError, OptionKind, SharedInstruments, SymbolError, TickUnit, parse_master,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/instruments").join(name)
}

fn parse(name: &str) -> Result<scalper::instruments::Instruments, MasterError> {
    parse_master(std::fs::File::open(fixture(name)).unwrap())
}

fn key(seg: Segment, id: u32) -> InstrumentKey {
    InstrumentKey::new(seg, id)
}

#[test]
fn full_32_column_file_parses_index_option_future_and_equity() {
    let t = parse("master_detailed.csv").unwrap();
    let c = t.counts();
    assert_eq!((c.rows, c.loaded, c.skipped), (10, 9, 1), "{c}");
    assert!(c.skip_reasons[0].contains("USDINR") || c.skip_reasons[0].contains("10093"), "{c}");
    assert_eq!(c.tick_unit, Some(TickUnit::Rupees));

    let idx = t.get(key(Segment::IdxI, 13)).unwrap();
    assert_eq!(
        (&*idx.kind, idx.lot, idx.tick, idx.expiry, idx.band),
        ("INDEX", Qty(1), Paise(5), None, None)
    );

    let opt = t.by_symbol("NIFTY-Dec2026-24500-CE").unwrap();
    assert_eq!(opt.key, key(Segment::NseFno, 52175));
    assert_eq!(&*opt.display_name, "NIFTY 30 DEC 24500 CALL");
    assert_eq!(opt.lot, Qty(75));
    assert_eq!(opt.tick, Paise(5));
    assert_eq!(opt.freeze, Some(Qty(1800)));
    assert_eq!(opt.band, Some((Paise(5), Paise(152_030))));
    assert_eq!(opt.strike, Some(Paise(2_450_000)));
    assert_eq!(opt.option, Some(OptionKind::Call));
    assert_eq!(opt.expiry, NaiveDate::from_ymd_opt(2026, 12, 30));

    let fut = t.get(key(Segment::NseFno, 60010)).unwrap();
    assert_eq!((fut.lot, fut.tick, fut.strike, fut.option), (Qty(500), Paise(10), None, None));
    assert_eq!(fut.band, Some((Paise(135_000), Paise(165_000))));

    let eq = t.get(key(Segment::NseEq, 2885)).unwrap();
    assert_eq!((eq.lot, eq.tick, eq.freeze), (Qty(1), Paise(10), None));
    // RELIANCE is on NSE and BSE: the bare symbol is ambiguous and says so.
    assert!(
        matches!(t.by_symbol("RELIANCE"), Err(SymbolError::Ambiguous { keys, .. }) if keys.len() == 2)
    );
    assert!(matches!(t.by_symbol("NOPE"), Err(SymbolError::Unknown(_))));
    // Expiry with a time of day.
    let nov = t.get(key(Segment::NseFno, 41001)).unwrap();
    assert_eq!(nov.expiry_time, chrono::NaiveTime::from_hms_opt(14, 30, 0));
}

#[test]
fn a_file_with_only_the_first_17_columns_parses() {
    let t = parse("master_17_columns.csv").unwrap();
    assert_eq!(t.len(), 9);
    let opt = t.get(key(Segment::NseFno, 52175)).unwrap();
    assert_eq!((opt.lot, opt.tick, opt.freeze, opt.band), (Qty(75), Paise(5), None, None));
    assert_eq!(&*opt.symbol, "NIFTY-Dec2026-24500-CE");
}

#[test]
fn rows_shorter_than_the_header_read_missing_trailing_fields_as_empty() {
    let text = std::fs::read_to_string(fixture("master_detailed.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // Cut the option's row after EXPIRY_FLAG (17 fields) under the 32-column header.
    lines[2] = lines[2].split(',').take(17).collect::<Vec<_>>().join(",");
    let t = parse_master(lines.join("\n").as_bytes()).unwrap();
    let opt = t.get(key(Segment::NseFno, 52175)).unwrap();
    assert_eq!((opt.lot, opt.freeze, opt.band), (Qty(75), None, None));
    assert_eq!(t.counts().skipped, 1);
}

#[test]
fn a_missing_required_column_refuses_the_file_and_names_it() {
    let err = parse("master_missing_lot.csv").unwrap_err();
    assert_eq!(err, MasterError::MissingColumn("LOT_SIZE"));
    assert!(err.to_string().contains("LOT_SIZE"), "{err}");
}

#[test]
fn tick_size_in_paise_is_recognised_from_the_index_options() {
    let t = parse("master_tick_paise.csv").unwrap();
    assert_eq!(t.counts().tick_unit, Some(TickUnit::Paise));
    assert_eq!(t.get(key(Segment::NseFno, 52175)).unwrap().tick, Paise(5));
    assert_eq!(t.get(key(Segment::NseEq, 2885)).unwrap().tick, Paise(10));
    // Same instruments, same ticks, whatever the file's unit.
    let r = parse("master_detailed.csv").unwrap();
    for inst in t.iter() {
        assert_eq!(r.get(inst.key).unwrap().tick, inst.tick, "{}", inst.key);
    }
}

#[test]
fn an_undecidable_tick_unit_refuses_the_file() {
    let err = parse("master_tick_undecidable.csv").unwrap_err();
    assert!(matches!(err, MasterError::TickUnitUndecidable(_)), "{err}");
    assert!(err.to_string().contains("TICK_SIZE"), "{err}");
    // An index option whose tick is neither ₹0.05 nor 5 paise is refused too.
    let text = std::fs::read_to_string(fixture("master_detailed.csv")).unwrap();
    let odd = text.replace("CE,0.0500,", "CE,0.5000,");
    assert!(matches!(parse_master(odd.as_bytes()), Err(MasterError::TickUnitUndecidable(_))));
}

fn source(dir: &Path, download: bool) -> MasterSource {
    MasterSource {
        file: None,
        url: "http://127.0.0.1:9/master.csv".into(),
        download,
        timeout: Duration::from_secs(1),
        cache_dir: dir.join("instruments"),
    }
}

#[test]
fn a_download_is_kept_and_a_failed_one_falls_back_to_the_last_good_copy_with_a_warning() {
    log_capture::capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path(), true);
    let day1 = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
    let day2 = NaiveDate::from_ymd_opt(2026, 12, 8).unwrap();
    let good = |_: &str, _: Duration, dest: &Path| {
        std::fs::copy(fixture("master_detailed.csv"), dest).map(|_| ()).map_err(|e| e.to_string())
    };
    let failing = |_: &str, _: Duration, _: &Path| Err::<(), String>("connection refused".into());

    // No copy yet and the download fails: live trading cannot start.
    let err = src.load(day1, &failing).unwrap_err();
    assert!(err.contains("no last good copy"), "{err}");

    let (t, origin) = src.load(day1, &good).unwrap().unwrap();
    assert_eq!((t.len(), origin), (9, Origin::Downloaded));
    assert!(!src.needs_download(day1));
    // Same day again: the copy is reused without a download.
    let (_, origin) = src.load(day1, &failing).unwrap().unwrap();
    assert_eq!(origin, Origin::CachedToday);

    // Next day the download fails: the last good copy, with a warning.
    assert!(src.needs_download(day2));
    let (t, origin) = src.load(day2, &failing).unwrap().unwrap();
    assert_eq!(t.len(), 9);
    assert!(matches!(origin, Origin::LastGood { fetched: Some(d), .. } if d == day1), "{origin:?}");
    assert!(
        log_capture::captured().iter().any(
            |l| l.starts_with("WARN") && l.contains("using the last good copy from 2026-12-07")
        ),
        "no warning logged"
    );

    // A download that is not a valid master does not replace the copy.
    let garbage = |_: &str, _: Duration, dest: &Path| {
        std::fs::write(dest, "not,a,master\n1,2,3\n").map_err(|e| e.to_string())
    };
    let (t, origin) = src.load(day2, &garbage).unwrap().unwrap();
    assert_eq!(t.len(), 9);
    assert!(
        matches!(origin, Origin::LastGood { ref reason, .. } if reason.contains("EXCH_ID")),
        "{origin:?}"
    );
}

#[test]
fn paper_mode_never_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path(), false);
    let today = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
    let never = |_: &str, _: Duration, _: &Path| -> Result<(), String> {
        panic!("downloaded in paper mode")
    };
    assert!(src.load(today, &never).unwrap().is_none());
    let with_file = MasterSource { file: Some(fixture("master_17_columns.csv")), ..src };
    let (t, origin) = with_file.load(today, &never).unwrap().unwrap();
    assert_eq!(t.len(), 9);
    assert!(matches!(origin, Origin::File(_)));
}

#[test]
fn the_daily_swap_replaces_the_table_without_disturbing_a_reader() {
    let shared = SharedInstruments::new(parse("master_17_columns.csv").unwrap());
    let held = shared.load();
    assert_eq!(held.get(key(Segment::NseFno, 52175)).unwrap().freeze, None);
    // A reader holding the old table (as the exit engine does between reloads) keeps it whole;
    // the swap does not wait for it.
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            shared.store(parse("master_detailed.csv").unwrap());
            tx.send(()).unwrap();
        })
    };
    rx.recv_timeout(Duration::from_secs(30)).expect("the swap blocked on a reader");
    writer.join().unwrap();
    assert_eq!(held.get(key(Segment::NseFno, 52175)).unwrap().freeze, None);
    assert_eq!(shared.load().get(key(Segment::NseFno, 52175)).unwrap().freeze, Some(Qty(1800)));
    assert_eq!(Arc::strong_count(&held), 1);
}

#[test]
fn instruments_find_prints_the_matches_nearest_expiry_first() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scalper.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[instruments]\nmaster_file = \"{}\"\n",
            dir.path().display(),
            fixture("master_detailed.csv").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scalper"))
        .args(["instruments", "find", "NIFTY", "24500", "CE", "--date", "2026-11-25", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "header and two contracts (Nov expired on the 24th): {stdout}");
    assert!(lines[0].starts_with("SYMBOL") && lines[0].contains("FREEZE"), "{stdout}");
    let dec: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(dec[0], "NIFTY-Dec2026-24500-CE", "nearest expiry first: {stdout}");
    assert!(lines[1].contains("NIFTY 30 DEC 24500 CALL"), "{stdout}");
    for field in ["NSE_FNO:52175", "75", "0.05", "1800", "0.05-1520.30", "2026-12-30"] {
        assert!(dec.contains(&field), "{field} in {:?}", lines[1]);
    }
    assert!(lines[2].starts_with("NIFTY-Jan2027-24500-CE"), "{stdout}");

    // Nothing matches: a message and a failure code.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scalper"))
        .args(["instruments", "find", "BANKNIFTY", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no instrument matches"));
}
