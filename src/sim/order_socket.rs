//! The simulated order-update socket (spec dhan-v2 §3): a WebSocket server, a thread per
//! connection. A connection must send the MsgCode-42 login first; with a wrong token it is
//! reset ~10 ms after the login, with no close frame, as Dhan does. A logged-in connection
//! receives one `order_alert` per order transition of its client ([`OrderBus::publish`]),
//! server pings, and can be dropped on demand through the fault controls.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tungstenite::handshake::HandshakeError;
use tungstenite::{Message, WebSocket};

use super::faults::Faults;
use super::http::reset;
use super::listener::Listener;
use super::orders::SimOrder;
use super::render;

/// Fans order-update messages out to the logged-in sockets.
pub(crate) struct OrderBus {
    client_id: String,
    upper_status: AtomicBool,
    faults: Faults,
    subscribers: Mutex<Vec<(u64, Sender<String>)>>,
    next_id: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
}

impl OrderBus {
    pub fn new(client_id: String, upper_status: bool, faults: Faults) -> OrderBus {
        OrderBus {
            client_id,
            upper_status: AtomicBool::new(upper_status),
            faults,
            subscribers: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn set_upper_status(&self, upper: bool) {
        self.upper_status.store(upper, Ordering::Release);
    }

    /// One message for the order's current state, to every logged-in socket (unless the fault
    /// controls drop it).
    pub fn publish(&self, o: &SimOrder) {
        if self.faults.drop_this_update() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            log::debug!(target: "sim", "dropping the order update for {} {}", o.order_id, o.status);
            return;
        }
        let text =
            render::order_alert(o, &self.client_id, self.upper_status.load(Ordering::Acquire))
                .to_string();
        self.sent.fetch_add(1, Ordering::Relaxed);
        self.subscribers.lock().retain(|(_, tx)| tx.send(text.clone()).is_ok());
    }

    fn subscribe(&self) -> (u64, Receiver<String>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::unbounded();
        self.subscribers.lock().push((id, tx));
        (id, rx)
    }

    fn unsubscribe(&self, id: u64) {
        self.subscribers.lock().retain(|(i, _)| *i != id);
    }

    pub fn subscribers(&self) -> usize {
        self.subscribers.lock().len()
    }

    /// Messages sent and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.sent.load(Ordering::Relaxed), self.dropped.load(Ordering::Relaxed))
    }
}

pub(crate) struct SocketCtx {
    pub bus: Arc<OrderBus>,
    pub token: Arc<RwLock<String>>,
    pub client_id: String,
    pub faults: Faults,
    pub ping_every: Duration,
    pub logins: AtomicU64,
    pub refused_logins: AtomicU64,
}

pub(crate) struct OrderSocketServer(Listener);

const POLL: Duration = Duration::from_millis(5);

impl OrderSocketServer {
    pub fn start(bind: SocketAddr, ctx: Arc<SocketCtx>) -> io::Result<OrderSocketServer> {
        let serve = move |tcp: TcpStream, stop: &AtomicBool| serve(tcp, &ctx, stop);
        Listener::start(bind, "sim-ou", Arc::new(serve)).map(OrderSocketServer)
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.addr()
    }

    pub fn shutdown(&mut self) {
        self.0.shutdown();
    }
}

fn serve(tcp: TcpStream, ctx: &SocketCtx, stop: &AtomicBool) {
    let Ok(raw) = tcp.try_clone() else { return };
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(POLL));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut hs = tungstenite::accept(tcp);
    let mut ws = loop {
        match hs {
            Ok(ws) => break ws,
            Err(HandshakeError::Interrupted(mid))
                if Instant::now() < deadline && !stop.load(Ordering::Acquire) =>
            {
                hs = mid.handshake();
            }
            Err(_) => return,
        }
    };
    // The login must come first.
    let login = loop {
        if Instant::now() > deadline || stop.load(Ordering::Acquire) {
            return;
        }
        match ws.read() {
            Ok(Message::Text(t)) => break t.to_string(),
            Ok(Message::Close(_)) => return,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    };
    if !login_ok(&login, &ctx.client_id, &ctx.token.read()) {
        ctx.refused_logins.fetch_add(1, Ordering::Relaxed);
        log::debug!(target: "sim", "order-update login refused; resetting the connection");
        thread::sleep(Duration::from_millis(10));
        reset(&raw);
        return;
    }
    ctx.logins.fetch_add(1, Ordering::Relaxed);
    let generation = ctx.faults.socket_generation();
    let (id, rx) = ctx.bus.subscribe();
    serve_logged_in(&mut ws, &raw, &rx, ctx, stop, generation);
    ctx.bus.unsubscribe(id);
}

fn serve_logged_in(
    ws: &mut WebSocket<TcpStream>,
    raw: &TcpStream,
    rx: &Receiver<String>,
    ctx: &SocketCtx,
    stop: &AtomicBool,
    generation: u64,
) {
    let mut last_ping = Instant::now();
    loop {
        if stop.load(Ordering::Acquire) {
            let _ = ws.close(None);
            let _ = ws.flush();
            return;
        }
        if ctx.faults.socket_generation() != generation {
            log::debug!(target: "sim", "dropping an order-update socket on request");
            reset(raw);
            return;
        }
        loop {
            match rx.try_recv() {
                Ok(text) => {
                    if ws.send(Message::text(text)).is_err() {
                        return;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        if last_ping.elapsed() >= ctx.ping_every {
            last_ping = Instant::now();
            if ws.send(Message::Ping(Default::default())).is_err() {
                return;
            }
        }
        match ws.read() {
            Ok(Message::Close(_)) => {
                let _ = ws.flush();
                return;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// `{"LoginReq":{"MsgCode":42,"ClientId":"...","Token":"..."},"UserType":"SELF"}`; `MsgCode`
/// may also arrive as the string `"42"`.
fn login_ok(text: &str, client_id: &str, token: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else { return false };
    let Some(req) = v.get("LoginReq") else { return false };
    let code_ok = match req.get("MsgCode") {
        Some(Value::Number(n)) => n.as_u64() == Some(42),
        Some(Value::String(s)) => s.trim() == "42",
        _ => false,
    };
    code_ok
        && req.get("ClientId").and_then(Value::as_str) == Some(client_id)
        && req.get("Token").and_then(Value::as_str) == Some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_frame_needs_code_42_client_and_token() {
        let ok = r#"{"LoginReq":{"MsgCode":42,"ClientId":"1","Token":"t"},"UserType":"SELF"}"#;
        assert!(login_ok(ok, "1", "t"));
        assert!(login_ok(&ok.replace("42", "\"42\""), "1", "t"));
        assert!(!login_ok(ok, "1", "other"));
        assert!(!login_ok(ok, "2", "t"));
        assert!(!login_ok(&ok.replace("42", "41"), "1", "t"));
        assert!(!login_ok("hello", "1", "t"));
    }
}
