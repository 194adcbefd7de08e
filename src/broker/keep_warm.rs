//! Warm REST connections: the first order after a quiet spell must not pay a TCP and TLS
//! handshake (a few round trips to Dhan, ≈ the order's own round trip again).
//!
//! The pool reuses a connection only while it has been idle less than its idle age (4 s,
//! `rest`), and servers and middleboxes close idle ones anyway. So whenever the client has made
//! no call for `broker.keep_warm_ms` (2 s by default), this worker makes one cheap call
//! ([`DhanClient::keep_warm`], `GET /profile`): it reuses the pooled connection and keeps it
//! fresh, or, when the server had closed it, opens a new one now instead of under the next
//! order. Any other call (an order, a poll) counts as use, so a busy client gets no extra call.
//! About one call every 2 s of quiet: far inside Dhan's non-trading limit (20 a second).

use std::time::Duration;

use super::rest::DhanClient;
use crate::runtime::{Worker, WorkerCtx};

/// The `rest_keep_warm` worker.
pub struct KeepWarm {
    client: DhanClient,
    every: Duration,
}

impl KeepWarm {
    /// A call whenever the client has been idle for `every` (not zero).
    pub fn new(client: DhanClient, every: Duration) -> KeepWarm {
        KeepWarm { client, every: every.max(Duration::from_millis(1)) }
    }
}

impl Worker for KeepWarm {
    fn run(&mut self, ctx: &WorkerCtx) -> anyhow::Result<()> {
        loop {
            ctx.beat();
            let idle = self.client.idle_for();
            let wait = if idle >= self.every {
                self.client.keep_warm();
                self.every
            } else {
                self.every - idle
            };
            if !ctx.sleep(wait) {
                break;
            }
        }
        Ok(())
    }
}
