//! The simulator's feed half as the configuration describes it (`[sim]`): its listening
//! address, the credentials it expects, and how prices move (a seeded random walk from
//! `sim.instruments`, or the `sim.scenario` ticks). Used by the engine's in-process simulator
//! and by `scalper sim`.

use crate::config::{Config, SIM_FEED_PATH, ScenarioSpeed};
use crate::domain::{Clock, SystemClock};
use crate::sim::feed::{Pace, PriceSource, SimFeed, SimFeedConfig};
use crate::sim::prices::PriceBoard;
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
    let (cfg, board) = feed_config(config)?;
    let bind = cfg.bind;
    SimFeed::start(cfg, board)
        .map_err(|e| anyhow::anyhow!("starting the feed simulator on {bind}: {e}"))
}

/// The URL a feed reader connects to.
pub fn feed_url(sim: &SimFeed) -> String {
    format!("ws://{}{SIM_FEED_PATH}", sim.addr())
}
