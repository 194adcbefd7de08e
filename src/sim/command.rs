//! `scalper sim [--config FILE]`: the simulator standalone on the configured address (port 0:
//! any free port), for an engine or a tool in another process: the feed half and the broker
//! half (REST and order-update socket, on the next two ports; see `setup`), on the same prices.
//! Prints one JSON line with the bound addresses on stdout, then serves until SIGINT or
//! SIGTERM:
//!
//! `{"listen":…,"feed":"ws://…/","broker":{"rest":"http://…/v2","order_update":"ws://…/order-update","client_id":…},"instruments":[…]}`

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::cli::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::config::Config;
use crate::runtime::signals::{SignalEvent, SignalListener};
use crate::sim::setup;

pub fn run(config: Option<&Path>) -> u8 {
    crate::ops::logging::init();
    let mut config = match config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(errors) => {
                for line in errors.lines() {
                    eprintln!("{line}");
                }
                return EXIT_USAGE;
            }
        },
        None => Config::default(),
    };
    // Signals first: a SIGTERM right after the address is printed must not kill us untidily.
    let signals = match SignalListener::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("scalper sim: cannot install signal handlers: {e}");
            return EXIT_FAILURE;
        }
    };
    // Standalone, the simulator always serves both halves.
    config.sim.broker = true;
    let (feed, broker) = match setup::start(&config) {
        Ok((f, Some(b))) => (f, b),
        Ok((_, None)) => unreachable!("sim.broker is set above"),
        Err(e) => {
            eprintln!("scalper sim: {e:#}");
            return EXIT_FAILURE;
        }
    };
    let line = json!({
        "listen": feed.addr().to_string(),
        "feed": setup::feed_url(&feed),
        "broker": {
            "rest": broker.base_url(),
            "order_update": broker.order_socket_url(),
            "client_id": broker.client_id(),
        },
        "instruments": config.sim.instruments.iter().map(|i| i.instrument.to_string()).collect::<Vec<_>>(),
    });
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        return EXIT_FAILURE;
    }
    drop(out);
    loop {
        match signals.events().recv() {
            Ok(SignalEvent::Shutdown) | Err(_) => break,
            Ok(SignalEvent::Reload) => {
                log::info!(target: "sim", "SIGHUP ignored: the simulator has nothing to reload");
            }
        }
    }
    signals.close();
    broker.shutdown();
    feed.shutdown();
    log::info!(target: "sim", "simulator stopped");
    EXIT_OK
}
