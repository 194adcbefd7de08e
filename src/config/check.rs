//! `scalper check-config FILE`: validates a config file and prints every problem in it, one
//! per line, so an operator can fix a file before a restart (or a SIGHUP) depends on it.
//! Secrets are not resolved here: they live outside the file and are checked at startup.

use std::path::Path;

use crate::cli::{EXIT_OK, EXIT_USAGE};

use super::Config;

/// Prints `ok: FILE (mode, broker, store)` and returns 0 for a valid file; prints each error on
/// its own line (on stderr) and returns 2 otherwise.
pub fn check_config(path: &Path) -> u8 {
    match Config::load(path) {
        Ok(config) => {
            println!("ok: {} ({})", path.display(), config.summary());
            EXIT_OK
        }
        Err(errors) => {
            for line in errors.lines() {
                eprintln!("{line}");
            }
            EXIT_USAGE
        }
    }
}
