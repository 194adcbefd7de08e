//! The command line: `scalper <command>`. Each command lives with the part of the engine it
//! drives; this file only parses arguments and maps outcomes to exit codes.
//!
//! Exit codes: 0 success, 2 bad usage or bad configuration, 1 runtime failure; `status` uses 3
//! for an engine that answers but is not healthy.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a runtime failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for bad usage or bad configuration.
pub const EXIT_USAGE: u8 = 2;
/// Exit code of `status` when the engine answers but reports itself unhealthy (/health 503).
pub const EXIT_UNHEALTHY: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "scalper",
    version,
    about = "Live-trading runtime that keeps Dhan options positions safe"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the engine.
    Run {
        /// The configuration file (relative paths in it are relative to its directory).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a configuration file and report every error in it.
    CheckConfig {
        /// The configuration file to check.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the version.
    Version,
    /// Decode raw Dhan feed bytes (from FILE or stdin) into one JSON object per packet.
    Decode {
        /// Raw feed bytes; standard input when absent.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// Stop at the first malformed packet.
        #[arg(long)]
        strict: bool,
    },
    /// Run the Dhan simulator (market feed, REST and order-update socket) on loopback.
    Sim {
        /// A configuration file whose [sim] table to use; the built-in defaults when absent.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run the exit engine over recorded ticks on a virtual clock and write exits.csv and
    /// summary.json.
    Replay {
        /// The configuration whose risk, limits, session, charges and paper tables apply.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Recorded ticks (ticks.csv).
        #[arg(long, value_name = "FILE")]
        ticks: PathBuf,
        /// The positions open at the start (positions.csv).
        #[arg(long, value_name = "FILE")]
        positions: PathBuf,
        /// Where exits.csv and summary.json are written.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Show the running engine's positions, PnL and health (exit 0 healthy, 1 unreachable or
    /// refused, 2 bad config, 3 unhealthy).
    Status {
        /// The running engine's configuration file (for its data_dir and control token).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Kill switch: exit every open position and halt trading.
    Flatten {
        /// The running engine's configuration file (for its data_dir and control token).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Look things up in the instrument master.
    Instruments {
        #[command(subcommand)]
        action: InstrumentsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum InstrumentsCommand {
    /// Print the instruments whose symbol or display name has every word of QUERY (symbol,
    /// display name, id, lot, tick, freeze, band, expiry), nearest expiry first.
    Find {
        /// Words to match, e.g. `NIFTY 24500 CE`.
        #[arg(required = true, num_args = 1.., value_name = "QUERY")]
        query: Vec<String>,
        /// The configuration whose master to search ([instruments] master_file or the last
        /// downloaded copy under data_dir, else the simulator's); the built-in defaults when
        /// absent.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print at most this many instruments.
        #[arg(long, default_value_t = 20, value_name = "N")]
        limit: usize,
        /// Leave out contracts expired before this day (YYYY-MM-DD); default today (IST).
        #[arg(long, value_name = "DATE")]
        date: Option<chrono::NaiveDate>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(dispatch(cli.command))
}

fn dispatch(command: Command) -> u8 {
    match command {
        Command::Version => {
            println!("scalper {}", env!("CARGO_PKG_VERSION"));
            EXIT_OK
        }
        Command::Run { config } => crate::app::run(&config),
        Command::CheckConfig { file } => crate::config::check_config(&file),
        Command::Replay { config, ticks, positions, out } => match load_config(&config) {
            Ok(cfg) => crate::replay::command(&cfg.replay_params(), &ticks, &positions, &out),
            Err(code) => code,
        },
        Command::Decode { file, strict } => crate::feed::decode_cmd::run(file.as_deref(), strict),
        Command::Sim { config } => crate::sim::command::run(config.as_deref()),
        Command::Status { config } => crate::ops::remote::status(&config),
        Command::Flatten { config } => crate::ops::remote::flatten(&config),
        Command::Instruments {
            action: InstrumentsCommand::Find { query, config, limit, date },
        } => {
            let cfg = match &config {
                Some(path) => match load_config(path) {
                    Ok(c) => c,
                    Err(code) => return code,
                },
                None => crate::config::Config::default(),
            };
            match crate::engine::instruments::find_command(&cfg, &query.join(" "), limit, date) {
                Ok(table) => {
                    print!("{table}");
                    EXIT_OK
                }
                Err(why) => {
                    eprintln!("{why}");
                    EXIT_FAILURE
                }
            }
        }
    }
}

/// Loads and validates a config file for a command, printing every error on failure.
fn load_config(path: &std::path::Path) -> Result<crate::config::Config, u8> {
    crate::config::Config::load(path).map_err(|errors| {
        for line in errors.lines() {
            eprintln!("{line}");
        }
        EXIT_USAGE
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_command_and_option_has_help_text() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        for sub in cli.get_subcommands() {
            assert!(sub.get_about().is_some(), "`scalper {}` has no help text", sub.get_name());
            for arg in sub.get_arguments() {
                assert!(
                    arg.get_help().is_some(),
                    "`scalper {} {}` has no help text",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
        assert!(cli.get_version().is_some(), "`scalper --version` prints the version");
    }
}
