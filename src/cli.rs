//! The command line: `scalper <command>`. Each command lives with the part of the engine it
//! drives; this file only parses arguments and maps outcomes to exit codes.
//!
//! Exit codes: 0 success, 2 bad usage or bad configuration, 1 runtime failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for success.
pub const EXIT_OK: u8 = 0;
/// Exit code for a runtime failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for bad usage or bad configuration.
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "scalper", about = "Live-trading runtime that keeps Dhan options positions safe")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the engine.
    Run {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a configuration file and report every error in it.
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the version.
    Version,
    /// Decode raw Dhan feed bytes (from FILE or stdin) into one JSON object per packet.
    Decode {
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        /// Stop at the first malformed packet.
        #[arg(long)]
        strict: bool,
    },
    /// Run the Dhan simulator (market feed, REST and order-update socket) on loopback.
    Sim {
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Run the exit engine over recorded ticks on a virtual clock and write exits.csv and
    /// summary.json.
    Replay {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, value_name = "FILE")]
        ticks: PathBuf,
        #[arg(long, value_name = "FILE")]
        positions: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Show the running engine's positions, PnL and health.
    Status {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Kill switch: exit every open position and halt trading.
    Flatten {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
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
