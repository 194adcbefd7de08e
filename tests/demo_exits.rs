//! The `make run` demo on a virtual clock: ten minutes of the simulator's random walk as
//! `config/default.toml` sets it up (seed, tick interval, instruments: the same prices the
//! in-process simulator streams), demo entries at the configured interval on a random
//! instrument and side (refused, as the engine refuses them, at the open-position limit and in
//! the re-entry cooldown), and the exit core with the file's rules through `replay`. Checks
//! that the exit kinds README's "What `make run` shows" says the demo shows do show within
//! ten minutes, and that it tells how to see every other kind.

use std::collections::BTreeMap;
use std::path::Path;

use scalper::config::Config;
use scalper::domain::{ExitReason, InstrumentKey, Paise, Timestamp};
use scalper::replay::{TickRow, positions_from_reader, simulate, ticks_from_reader};
use scalper::sim::feed::walk;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// 2025-11-24 10:30:15 IST, a Monday.
const T0: i64 = 1_763_960_415_000;
const TEN_MINUTES_MS: i64 = 10 * 60 * 1_000;

fn parts(key: InstrumentKey) -> (String, String) {
    let text = key.to_string();
    let (segment, id) = text.split_once(':').expect("SEGMENT:ID");
    (segment.to_string(), id.to_string())
}

/// The simulator's walk from `config`: every tick interval, one step per instrument in key
/// order, as its market thread does for the subscribed instruments.
fn market(config: &Config) -> (Vec<TickRow>, Vec<(i64, InstrumentKey, Paise)>) {
    let mut prices: Vec<(InstrumentKey, Paise)> =
        config.sim.instruments.iter().map(|i| (i.instrument, i.price)).collect();
    prices.sort();
    let mut rng = fastrand::Rng::with_seed(config.sim.seed);
    let step = config.sim.tick_interval.as_millis() as i64;
    let mut csv = String::from("ts,segment,security_id,ltp\n");
    let mut ticks = Vec::new();
    let mut t = T0;
    while t <= T0 + TEN_MINUTES_MS {
        for (key, price) in prices.iter_mut() {
            *price = walk(*price, &mut rng);
            if key.segment.is_tradable() {
                let (segment, id) = parts(*key);
                csv.push_str(&format!("{t},{segment},{id},{price}\n"));
                ticks.push((t, *key, *price));
            }
        }
        t += step;
    }
    (ticks_from_reader(csv.as_bytes(), Path::new("ticks.csv")).unwrap(), ticks)
}

/// Exits by reason after ten minutes of demo entries drawn with `entry_seed`.
fn demo_run(config: &Config, entry_seed: u64) -> BTreeMap<String, u64> {
    let params = config.replay_params();
    let (rows, ticks) = market(config);
    let instruments = &config.entries.demo_instruments;
    let interval = config.entries.demo_interval.as_millis() as i64;
    let cooldown = config.limits.reentry_cooldown_secs * 1_000;
    let mut rng = fastrand::Rng::with_seed(entry_seed);
    let mut positions =
        String::from("id,segment,security_id,side,quantity,entry_price,opened_at\n");
    let mut n = 0;
    let mut at = T0 + interval;
    while at <= T0 + TEN_MINUTES_MS {
        let instrument = instruments[rng.usize(..instruments.len())];
        let side = if rng.bool() { "LONG" } else { "SHORT" };
        // The state of the book just before `at`.
        let seen = ticks.partition_point(|(t, _, _)| *t < at);
        let rows_before = rows.partition_point(|r| r.tick.received_at < Timestamp(at));
        let pos = positions_from_reader(positions.as_bytes(), Path::new("positions.csv")).unwrap();
        let state = simulate(&params, &pos, &rows[..rows_before], Path::new("ticks.csv")).unwrap();
        let open = state.open_positions.len() as u32;
        let cooling = state
            .trades
            .iter()
            .any(|t| t.instrument == instrument && at - t.exited_at.0 <= cooldown && cooldown > 0);
        let price = ticks[..seen].iter().rev().find(|(_, k, _)| *k == instrument).map(|x| x.2);
        if open < config.limits.max_open_positions
            && !cooling
            && let Some(price) = price
        {
            n += 1;
            let (segment, id) = parts(instrument);
            let qty = config.entries.demo_quantity.0;
            positions.push_str(&format!("p{n},{segment},{id},{side},{qty},{price},{at}\n"));
        }
        at += interval;
    }
    let pos = positions_from_reader(positions.as_bytes(), Path::new("positions.csv")).unwrap();
    let summary = simulate(&params, &pos, &rows, Path::new("ticks.csv")).unwrap();
    summary.exits_by_reason.into_iter().filter(|(_, n)| *n > 0).collect()
}

/// The part of README between "## What `make run` shows" and the next section.
fn readme_demo_section() -> String {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).unwrap();
    let start = readme.find("## What `make run` shows").expect("the section");
    let rest = &readme[start + 3..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
}

/// The exit kinds README says the demo shows within ten minutes: the backquoted names in the
/// sentence "The tick-driven exits show within about ten minutes: ...".
fn readme_shown(section: &str) -> Vec<String> {
    let start = section.find("show within about ten minutes:").expect("the sentence");
    let sentence = &section[start..start + section[start..].find('(').unwrap()];
    sentence.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

#[test]
fn the_demo_shows_the_exit_kinds_readme_promises_within_ten_minutes() {
    let config = Config::load(Path::new(&format!("{ROOT}/config/default.toml"))).unwrap();
    let section = readme_demo_section();
    let shown = readme_shown(&section);
    assert!(!shown.is_empty(), "README names no exit kind the demo shows");

    // Five entry draws (the demo's own are random): every promised kind in each of them.
    for seed in 1..=5 {
        let exits = demo_run(&config, seed);
        eprintln!("entry seed {seed}: {exits:?}");
        for kind in &shown {
            assert!(
                exits.contains_key(kind),
                "README promises {kind} within ten minutes; entry seed {seed} shows {exits:?}"
            );
        }
    }
    // Every other kind comes with a way to see it.
    for reason in ExitReason::ALL {
        let name = reason.code();
        if !shown.iter().any(|s| s == name) {
            assert!(
                section.contains(&format!("| `{name}` |")),
                "README's make-run section neither promises {name} nor says how to see it"
            );
        }
    }
}
