//! Process signals, turned into messages: SIGINT/SIGTERM ask for a graceful shutdown (a second
//! one exits at once), SIGHUP asks for a config reload. A dedicated thread owns the signal
//! iterator; the engine's main loop receives [`SignalEvent`]s on a channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

/// What a signal asks of the engine.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SignalEvent {
    Shutdown,
    Reload,
}

/// Exit code used when a second SIGINT/SIGTERM cuts a graceful shutdown short.
pub const EXIT_ON_SECOND_SIGNAL: i32 = 1;

/// The running signal thread; dropping it does not stop it, [`SignalListener::close`] does.
pub struct SignalListener {
    handle: Handle,
    events: Receiver<SignalEvent>,
}

impl SignalListener {
    /// Installs the handlers and starts the thread. From here on SIGINT/SIGTERM no longer kill
    /// the process by default: the engine must act on [`SignalEvent::Shutdown`].
    pub fn install() -> std::io::Result<SignalListener> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        let handle = signals.handle();
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || forward(&mut signals, &tx))?;
        Ok(SignalListener { handle, events: rx })
    }

    pub fn events(&self) -> &Receiver<SignalEvent> {
        &self.events
    }

    pub fn close(&self) {
        self.handle.close();
    }
}

fn forward(signals: &mut Signals, tx: &Sender<SignalEvent>) {
    let shutting_down = Arc::new(AtomicBool::new(false));
    for sig in signals.forever() {
        match sig {
            SIGHUP => {
                log::info!(target: "signals", "SIGHUP: reloading configuration");
                let _ = tx.send(SignalEvent::Reload);
            }
            _ => {
                let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                if shutting_down.swap(true, Ordering::SeqCst) {
                    log::error!(target: "signals", "Second {name} during shutdown: exiting now");
                    std::process::exit(EXIT_ON_SECOND_SIGNAL);
                }
                log::info!(target: "signals", "{name}: shutting down gracefully (send again to exit at once)");
                let _ = tx.send(SignalEvent::Shutdown);
            }
        }
    }
}
