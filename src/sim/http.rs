//! The simulated Dhan REST API's HTTP server: the project's one HTTP/1.1 server
//! ([`crate::runtime::http_server`]) on its own thread, with the simulator's limits.
//!
//! The handler returns an [`HttpAction`], so the simulator can misbehave at the socket level
//! the way a real gateway can: close a connection without answering, answer after the client
//! gave up, reset with RST.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

pub use crate::runtime::http_server::{
    Handler, HttpAction, HttpRequest, HttpResponse, Limits, reset,
};
use crate::runtime::http_server::{HttpListener, serve};

/// A running server; dropping it shuts it down.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub fn start(bind: SocketAddr, handler: Arc<Handler>) -> io::Result<HttpServer> {
        HttpServer::start_with(bind, handler, Limits::simulator())
    }

    pub fn start_with(
        bind: SocketAddr,
        handler: Arc<Handler>,
        limits: Limits,
    ) -> io::Result<HttpServer> {
        let listener = HttpListener::bind(bind)?;
        let addr = listener.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new().name("sim-http".into()).spawn(move || {
                let go_on = || !stop.load(Ordering::Acquire);
                if let Err(e) = serve(&listener, &limits, "sim-http", &*handler, go_on) {
                    log::error!(target: "sim", "The simulator's HTTP server stopped: {e}");
                }
            })?
        };
        Ok(HttpServer { addr, stop, thread: Some(thread) })
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
