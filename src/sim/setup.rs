//! The simulator as the configuration describes it (`[sim]`): the feed half's listening
//! address, the credentials it expects, and how prices move (a seeded random walk from
//! `sim.instruments`, or the `sim.scenario` ticks); with `sim.broker`, the broker half (REST
//! and order-update socket) filling orders at the same prices. Used by the engine's in-process
//! simulator and by `scalper sim`.
//!
//! Ports: the feed listens on `sim.listen`; the broker half on the same address, REST on the
//! next port and the order-update socket on the one after (with port 0, each on a free port).
//! An engine configured with port-0 loopback URLs is pointed at the in-process halves by
//! [`bind_broker`] and `Config::bind_simulator`.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{Config, SIM_FEED_PATH, ScenarioSpeed, is_loopback_url};
use crate::domain::{Clock, InstrumentKey, Paise, SystemClock};
use crate::instruments::source::parse_file;
use crate::instruments::{Instruments, synthetic};
use crate::sim::broker::{SimBroker, SimBrokerConfig};
use crate::sim::feed::{Pace, PriceSource, SimFeed, SimFeedConfig};
use crate::sim::prices::PriceBoard;
use crate::sim::saved_prices::{self, PriceKeeper};
use crate::sim::scenario;

/// The feed simulator's settings and its price board (opening prices set) from `[sim]`.
pub fn feed_config(config: &Config) -> anyhow::Result<(SimFeedConfig, PriceBoard)> {
    let sim = &config.sim;
    let mut cfg = SimFeedConfig::new(sim.client_id.expose(), sim.access_token.expose());
    cfg.bind = sim.listen;
    cfg.prices = match &sim.scenario {
        Some(path) => {
            let rows = scenario::load(path)
                .map_err(|e| anyhow::anyhow!("loading the simulator scenario: {e}"))?;
            let pace = match sim.scenario_speed {
                ScenarioSpeed::Realtime => Pace::RealTime,
                ScenarioSpeed::Fast => Pace::AsFastAsPossible,
            };
            PriceSource::Scenario { rows, pace }
        }
        None => PriceSource::RandomWalk { seed: sim.seed, interval: sim.tick_interval },
    };
    let board = PriceBoard::new();
    let now = SystemClock.now();
    for i in &sim.instruments {
        board.set(i.instrument, i.price, now);
    }
    Ok((cfg, board))
}

/// Starts the feed simulator on `sim.listen`.
pub fn start_feed(config: &Config) -> anyhow::Result<SimFeed> {
    Ok(start(config)?.0)
}

/// Starts the feed half and, with `sim.broker`, the broker half on the same prices.
pub fn start(config: &Config) -> anyhow::Result<(SimFeed, Option<SimBroker>)> {
    let (cfg, board) = feed_config(config)?;
    start_on(config, cfg, board)
}

/// The engine's in-process simulator: [`start`], but a random walk continues from the prices
/// kept in `<data_dir>/sim-prices.json` (when the file is there and valid; otherwise a warning
/// and the configured prices) and keeps its prices there while it runs and when it stops.
pub fn start_in_process(
    config: &Config,
) -> anyhow::Result<(SimFeed, Option<SimBroker>, Option<PriceKeeper>)> {
    let (cfg, board) = feed_config(config)?;
    let mut keeper = None;
    if matches!(cfg.prices, PriceSource::RandomWalk { .. }) {
        let path = config.data_dir.join(saved_prices::FILE_NAME);
        match saved_prices::load(&path) {
            Ok(None) => {}
            Ok(Some(prices)) => {
                saved_prices::restore(&board, &prices, SystemClock.now());
                log::info!(target: "sim", "simulator: continuing from the {} prices kept in {}", prices.len(), path.display());
            }
            Err(e) => {
                log::warn!(target: "sim", "simulator: ignoring its kept prices ({e}); starting from the configured prices")
            }
        }
        match PriceKeeper::start(path, board.clone(), saved_prices::EVERY) {
            Ok(k) => keeper = Some(k),
            Err(e) => log::warn!(target: "sim", "simulator: cannot start keeping its prices: {e}"),
        }
    }
    let (feed, broker) = start_on(config, cfg, board)?;
    Ok((feed, broker, keeper))
}

fn start_on(
    config: &Config,
    cfg: SimFeedConfig,
    board: PriceBoard,
) -> anyhow::Result<(SimFeed, Option<SimBroker>)> {
    let bind = cfg.bind;
    let feed = SimFeed::start(cfg, board.clone())
        .map_err(|e| anyhow::anyhow!("starting the feed simulator on {bind}: {e}"))?;
    let broker = if config.sim.broker {
        let mut bcfg = broker_config(config, feed.addr());
        bcfg.instruments = Some(Arc::new(master(config)?));
        let ports = (bcfg.rest_port, bcfg.order_socket_port);
        let broker = SimBroker::start(bcfg, board).map_err(|e| {
            anyhow::anyhow!("starting the simulator's broker half on ports {ports:?}: {e}")
        })?;
        Some(broker)
    } else {
        None
    };
    Ok((feed, broker))
}

/// The master the simulator trades by: `sim.master_file`, or one generated for
/// `sim.instruments` (lot 75, tick ₹0.05, freeze 1800, a band around the opening price).
pub fn master(config: &Config) -> anyhow::Result<Instruments> {
    match &config.sim.master_file {
        Some(path) => parse_file(path).map_err(|e| anyhow::anyhow!("sim.master_file: {e}")),
        None => {
            let open: Vec<(InstrumentKey, Paise)> =
                config.sim.instruments.iter().map(|i| (i.instrument, i.price)).collect();
            Ok(synthetic::generate(&open))
        }
    }
}

/// The broker half's settings from `[sim]`, next to a feed half bound at `feed`.
pub fn broker_config(config: &Config, feed: SocketAddr) -> SimBrokerConfig {
    let sim = &config.sim;
    let port = |offset: u16| {
        if sim.listen.port() == 0 { 0 } else { feed.port().saturating_add(offset) }
    };
    SimBrokerConfig {
        client_id: sim.client_id.expose().to_string(),
        access_token: sim.access_token.expose().to_string(),
        bind: feed.ip(),
        rest_port: port(1),
        order_socket_port: port(2),
        transit: sim.transit,
        ..SimBrokerConfig::default()
    }
}

/// Points the port-0 loopback broker URLs (`broker.rest_url`, `broker.order_update_url`) at
/// the running broker half.
pub fn bind_broker(config: &mut Config, broker: &SimBroker) {
    for (url, addr) in [
        (&mut config.broker.rest_url, broker.rest_addr()),
        (&mut config.broker.order_update_url, broker.order_socket_addr()),
    ] {
        if url.port() == Some(0) && is_loopback_url(url) {
            // Both calls only fail for URLs that cannot have a host (not ws/http).
            let _ = url.set_ip_host(addr.ip());
            let _ = url.set_port(Some(addr.port()));
        }
    }
}

/// The URL a feed reader connects to.
pub fn feed_url(sim: &SimFeed) -> String {
    format!("ws://{}{SIM_FEED_PATH}", sim.addr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Paise;

    #[test]
    fn the_broker_half_listens_next_to_the_feed_or_on_free_ports() {
        let mut config = Config::default();
        config.sim.transit = std::time::Duration::from_millis(123);
        let feed: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let any = broker_config(&config, feed);
        assert_eq!((any.rest_port, any.order_socket_port), (0, 0), "port 0: free ports");
        assert_eq!(any.transit, std::time::Duration::from_millis(123));
        config.sim.listen = feed;
        let fixed = broker_config(&config, feed);
        assert_eq!((fixed.rest_port, fixed.order_socket_port), (9001, 9002));
        assert_eq!(fixed.access_token, config.sim.access_token.expose());
    }

    /// A restart of the in-process simulator (random walk) continues from the last prices,
    /// not from the configured opening prices; a damaged price file gives those back.
    #[test]
    fn the_in_process_simulator_continues_from_its_last_prices() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config { data_dir: dir.path().to_path_buf(), ..Config::default() };
        config.sim.listen = "127.0.0.1:0".parse().unwrap();
        config.sim.broker = false;
        let first = config.sim.instruments.first().expect("default instruments");
        let (key, opening) = (first.instrument, first.price);
        let moved = Paise(opening.0 + 5_000);

        let (feed, _, keeper) = start_in_process(&config).unwrap();
        assert_eq!(feed.control().price(key), opening, "first start: the configured price");
        feed.control().set_price(key, moved);
        drop(feed);
        drop(keeper);

        let (feed, _, keeper) = start_in_process(&config).unwrap();
        assert_eq!(feed.control().price(key), moved, "restart: the last price");
        drop((feed, keeper));

        std::fs::write(dir.path().join(saved_prices::FILE_NAME), "{ not json").unwrap();
        let (feed, _, _keeper) = start_in_process(&config).unwrap();
        assert_eq!(feed.control().price(key), opening, "bad file: the configured price");
    }
}
