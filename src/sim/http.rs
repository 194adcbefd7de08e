//! The simulated Dhan REST API's HTTP server: the project's one HTTP/1.1 server
//! ([`crate::runtime::http_server`]) on its own thread, with the simulator's limits.
//!
//! The handler returns an [`HttpAction`], so the simulator can misbehave at the socket level
//! the way a real gateway can: close a connection without answering, answer after the client
//! gave up, reset with RST. A keep-alive idle timeout ([`KeepAlive`]) ends connections left
//! idle between requests, either as a web server does (closes them) or as a load balancer or
//! NAT that silently drops idle flows does (the next request on one is reset, unprocessed).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub use crate::runtime::http_server::{
    Handler, HttpAction, HttpRequest, HttpResponse, Limits, OnIdle, reset,
};
use crate::runtime::http_server::{HttpListener, HttpStats, serve_counted};

/// What happens to a connection idle (between requests) for longer than `idle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    pub idle: Duration,
    pub on_idle: OnIdle,
}

/// A running server; dropping it shuts it down.
pub struct HttpServer {
    addr: SocketAddr,
    stats: Arc<HttpStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(bind: SocketAddr, handler: Arc<Handler>) -> io::Result<HttpServer> {
        HttpServer::start_with(bind, handler, None)
    }

    /// As [`HttpServer::start`], with a keep-alive idle timeout.
    pub fn start_with(
        bind: SocketAddr,
        handler: Arc<Handler>,
        keep_alive: Option<KeepAlive>,
    ) -> io::Result<HttpServer> {
        let mut limits = Limits::simulator();
        if let Some(k) = keep_alive {
            limits.idle_timeout = k.idle;
            limits.on_idle = k.on_idle;
        }
        let listener = HttpListener::bind(bind)?;
        let addr = listener.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(HttpStats::default());
        let thread = {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::Builder::new().name("sim-http".into()).spawn(move || {
                let go_on = || !stop.load(Ordering::Acquire);
                let served =
                    serve_counted(&listener, &limits, "sim-http", &*handler, &stats, go_on);
                if let Err(e) = served {
                    log::error!(target: "sim", "The simulator's HTTP server stopped: {e}");
                }
            })?
        };
        Ok(HttpServer { addr, stats, stop, thread: Some(thread) })
    }

    /// Connections accepted and ended by the idle timeout so far.
    pub fn connections(&self) -> (u64, u64) {
        let s = &self.stats;
        (s.accepted.load(Ordering::Acquire), s.expired.load(Ordering::Acquire))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving, closes every connection and joins the threads.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    #[test]
    fn keep_alive_requests_and_a_reset_over_a_real_socket() {
        let handler: Arc<Handler> = Arc::new(|req: HttpRequest| {
            if req.path == "/reset" {
                HttpAction::Reset
            } else {
                HttpAction::Respond(HttpResponse::raw(200, req.body, "text/plain"))
            }
        });
        let mut server = HttpServer::start("127.0.0.1:0".parse().unwrap(), handler).unwrap();
        let mut s = TcpStream::connect(server.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        s.write_all(format!("{req}{req}").as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 1024];
        while got.windows(5).filter(|w| w == b"hello").count() < 2 {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&chunk[..n]);
        }
        s.write_all(b"GET /reset HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = s.read(&mut chunk);
        assert!(matches!(r, Ok(0)) || r.is_err(), "closed without an answer: {r:?}");
        server.shutdown();
    }
}
