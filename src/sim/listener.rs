//! What the simulator's TCP servers (REST, order-update socket) share: a listener on its own
//! thread, a thread per connection, and a shutdown that wakes the blocked accept, asks every
//! connection to stop and joins every thread.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::Mutex;

/// Serves one connection until it ends or `stop` is set.
pub type Serve = dyn Fn(TcpStream, &AtomicBool) + Send + Sync;

/// A running listener; dropping it shuts it down.
pub struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Listener {
    /// Binds `bind` and accepts on a thread named `<name>-accept`; each connection is served
    /// by `serve` on a thread named `<name>-conn`.
    pub fn start(bind: SocketAddr, name: &str, serve: Arc<Serve>) -> io::Result<Listener> {
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = {
            let (stop, connections) = (stop.clone(), connections.clone());
            let conn_name = format!("{name}-conn");
            thread::Builder::new().name(format!("{name}-accept")).spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(tcp) = conn else { continue };
                    let (serve, stop) = (serve.clone(), stop.clone());
                    let spawned = thread::Builder::new()
                        .name(conn_name.clone())
                        .spawn(move || serve(tcp, &stop));
                    if let Ok(h) = spawned {
                        let mut conns = connections.lock();
                        conns.retain(|h| !h.is_finished());
                        conns.push(h);
                    }
                }
            })?
        };
        Ok(Listener { addr, stop, acceptor: Some(acceptor), connections })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, asks every connection to stop and joins the threads.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        let conns: Vec<_> = self.connections.lock().drain(..).collect();
        for h in conns {
            let _ = h.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if self.acceptor.is_some() {
            self.shutdown();
        }
    }
}
