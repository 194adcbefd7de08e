//! Demo entries (`entries.demo`): every `entries.demo_interval`, an entry of
//! `entries.demo_quantity` on a random instrument of `entries.demo_instruments`, on a random
//! side, through the same path as `POST /v1/orders` (the exit engine's checks, then the
//! router). A local run with the simulator thus shows the whole cycle: entry, ticks, exit.
//! Refusals (limits, cooldown, cut-off) are logged and the next interval tries again.

use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::domain::{InstrumentKey, Qty, Side};
use crate::exec::messages::{EngineCommand, EntryOrder, EntrySource};
use crate::runtime::{Worker, WorkerCtx};

/// How long an entry may wait for the exit engine's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

pub struct DemoEntries {
    /// Its one handle: the exit engine's command channel.
    commands: Sender<EngineCommand>,
    instruments: Vec<InstrumentKey>,
    quantity: Qty,
    interval: Duration,
    rng: fastrand::Rng,
}

impl DemoEntries {
    pub fn new(
        commands: Sender<EngineCommand>,
        instruments: Vec<InstrumentKey>,
        quantity: Qty,
        interval: Duration,
    ) -> DemoEntries {
        DemoEntries { commands, instruments, quantity, interval, rng: fastrand::Rng::new() }
    }

    fn one(&mut self, ctx: &WorkerCtx) {
        if self.instruments.is_empty() {
            return;
        }
        let instrument = self.instruments[self.rng.usize(..self.instruments.len())];
        let side = if self.rng.bool() { Side::Long } else { Side::Short };
        let order = EntryOrder {
            instrument,
            side,
            quantity: self.quantity,
            source: EntrySource::Demo,
            limit_price: None,
        };
        let (reply, answer) = crossbeam_channel::bounded(1);
        let command = EngineCommand::PlaceEntry { order, reply };
        if self.commands.try_send(command).is_err() {
            log::warn!(target: "entries_demo", "the exit engine's command queue is full; skipping this entry");
            return;
        }
        let deadline = Instant::now() + ANSWER_WITHIN;
        while Instant::now() < deadline && !ctx.should_stop() {
            ctx.beat();
            match answer.recv_timeout(ctx.beat_every()) {
                // The exit engine logs accepted and refused entries itself.
                Ok(_) => return,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
        }
        log::warn!(target: "entries_demo", "no answer from the exit engine within {ANSWER_WITHIN:?}");
    }
}

impl Worker for DemoEntries {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        while ctx.sleep(self.interval) {
            self.one(ctx);
        }
        Ok(())
    }
}
