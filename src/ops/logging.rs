//! Logging: `env_logger`, levels from `RUST_LOG` (default `info`), one line per event with the
//! component as the log target. Under systemd (`JOURNAL_STREAM` set) each line starts with the
//! syslog priority prefix (`<3>` for errors...) so journald records the right level, and the
//! timestamp is left to the journal; colours only on a terminal.
//!
//! Some libraries log secrets at trace level (tungstenite prints the order-update login frame,
//! access token included): lines from those targets above `broker::log_level_cap` are dropped
//! when they are written, so no `RUST_LOG` setting can let the token out.

use std::io::Write;

use env_logger::{Builder, Env, WriteStyle};
use log::Level;

/// Installs the logger once; later calls are ignored (tests may call it many times).
pub fn init() {
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut b = Builder::from_env(Env::default().default_filter_or("info"));
    b.write_style(WriteStyle::Auto);
    if journald {
        b.format(|buf, rec| {
            if rec.level() > crate::broker::log_level_cap(rec.target()) {
                return Ok(());
            }
            writeln!(buf, "<{}>{}: {}", syslog_priority(rec.level()), rec.target(), rec.args())
        });
    } else {
        b.format(|buf, rec| {
            if rec.level() > crate::broker::log_level_cap(rec.target()) {
                return Ok(());
            }
            let ts = buf.timestamp_millis();
            let style = buf.default_level_style(rec.level());
            writeln!(
                buf,
                "{ts} {style}{:<5}{style:#} {}: {}",
                rec.level(),
                rec.target(),
                rec.args()
            )
        });
    }
    let _ = b.try_init();
}

/// The syslog priority journald understands for a log level.
pub fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}
