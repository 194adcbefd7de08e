//! A small HTTP/1.1 server for the simulated Dhan REST API: a thread per connection,
//! keep-alive, `Content-Length` bodies, requests parsed with `httparse`.
//!
//! Why not `tiny_http`: the simulator must misbehave at the socket level the way a real
//! gateway can (close a connection without answering, answer after the client gave up, reset
//! with RST), and `tiny_http` owns its sockets and always answers (a dropped request becomes a
//! 500). Here the handler returns an [`HttpAction`] that may be any of those.
//!
//! A keep-alive idle timeout ([`KeepAlive`]) ends connections left idle between requests,
//! either as a web server does (closes them) or as a load balancer or NAT that silently drops
//! idle flows does (the next request on one is reset, unprocessed).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::listener::Listener;

/// One parsed request.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

impl HttpResponse {
    pub fn json(status: u16, v: &serde_json::Value) -> HttpResponse {
        HttpResponse { status, body: v.to_string().into_bytes(), content_type: "application/json" }
    }

    pub fn raw(status: u16, body: impl Into<Vec<u8>>, content_type: &'static str) -> HttpResponse {
        HttpResponse { status, body: body.into(), content_type }
    }
}

/// What to do with a request.
#[derive(Clone, Debug)]
pub enum HttpAction {
    Respond(HttpResponse),
    /// Answer after `delay` (simulated latency).
    RespondAfter(HttpResponse, Duration),
    /// Close the connection with a TCP reset and no answer.
    Reset,
    /// Keep the connection open without answering for `hold`, then close it: the client's
    /// timeout fires first.
    Withhold(Duration),
}

pub type Handler = dyn Fn(HttpRequest) -> HttpAction + Send + Sync;

/// What happens to a connection idle (between requests) for longer than `idle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    pub idle: Duration,
    pub on_idle: OnIdle,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnIdle {
    /// Closed (FIN), as a web server's keep-alive timeout does.
    Close,
    /// Forgotten without a word, as a load balancer or NAT dropping an idle flow: the
    /// connection looks open to the client, and the next request on it is answered with a
    /// reset, unprocessed.
    Forget,
}

/// Connection counts of a server.
#[derive(Debug, Default)]
pub struct HttpStats {
    pub accepted: AtomicU64,
    /// Connections ended by the keep-alive idle timeout.
    pub expired: AtomicU64,
}

/// A running server; dropping it shuts it down.
pub struct HttpServer(Listener, Arc<HttpStats>);

/// Poll interval of blocked reads and holds, so that shutdown is prompt.
const TICK: Duration = Duration::from_millis(20);
const MAX_HEADERS: usize = 64;
const MAX_BODY: usize = 1 << 20;

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
        let stats = Arc::new(HttpStats::default());
        let counts = stats.clone();
        let serve = move |stream: TcpStream, stop: &AtomicBool| {
            counts.accepted.fetch_add(1, Ordering::AcqRel);
            serve(stream, &*handler, stop, keep_alive, &counts)
        };
        Listener::start(bind, "sim-http", Arc::new(serve)).map(|l| HttpServer(l, stats))
    }

    pub fn addr(&self) -> SocketAddr {
        self.0.addr()
    }

    /// Connections accepted and ended by the idle timeout so far.
    pub fn connections(&self) -> (u64, u64) {
        (self.1.accepted.load(Ordering::Acquire), self.1.expired.load(Ordering::Acquire))
    }

    /// Stops accepting, closes every connection and joins the threads.
    pub fn shutdown(&mut self) {
        self.0.shutdown();
    }
}

/// Closes with RST instead of FIN (SO_LINGER = 0), as a crashed gateway would.
pub fn reset(stream: &TcpStream) {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: setsockopt on a socket we own, with a correctly sized `linger` value.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn serve(
    mut stream: TcpStream,
    handler: &Handler,
    stop: &AtomicBool,
    idle: Option<KeepAlive>,
    stats: &HttpStats,
) {
    let Ok(peer) = stream.peer_addr() else { return };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(TICK));
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        if let Some(k) = idle
            && buf.is_empty()
            && !wait_for_request(&mut stream, &mut buf, k, stop, stats)
        {
            return;
        }
        let Some((req, keep_alive)) = read_request(&mut stream, &mut buf, peer, stop) else {
            return;
        };
        let action = handler(req);
        let (response, delay) = match action {
            HttpAction::Respond(r) => (r, Duration::ZERO),
            HttpAction::RespondAfter(r, d) => (r, d),
            HttpAction::Reset => {
                reset(&stream);
                return;
            }
            HttpAction::Withhold(hold) => {
                wait(hold, stop);
                // Close without an answer; with RST so that a pooled client notices at once.
                reset(&stream);
                return;
            }
        };
        if !delay.is_zero() && !wait(delay, stop) {
            return;
        }
        if write_response(&mut stream, &response, keep_alive).is_err() || !keep_alive {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Waits for the first bytes of the next request for at most `k.idle`; `false` when the
/// connection ended (the peer closed, the server stops, or the idle timeout ended it).
fn wait_for_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    k: KeepAlive,
    stop: &AtomicBool,
    stats: &HttpStats,
) -> bool {
    let until = Instant::now() + k.idle;
    let mut chunk = [0u8; 4096];
    while Instant::now() < until {
        if stop.load(Ordering::Acquire) {
            return false;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return false,
        }
    }
    stats.expired.fetch_add(1, Ordering::AcqRel);
    match k.on_idle {
        OnIdle::Close => {
            let _ = stream.shutdown(Shutdown::Both);
        }
        OnIdle::Forget => {
            // The flow is gone: whatever arrives next is refused with a reset, unread.
            while !stop.load(Ordering::Acquire) {
                match stream.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(_) => {
                        reset(stream);
                        break;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => break,
                }
            }
        }
    }
    false
}

/// Sleeps `d` in ticks; `false` if the server stops meanwhile.
fn wait(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::Acquire) {
            return false;
        }
        thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
    }
    true
}

/// Reads one request (headers and body). `None` when the peer closed, the server stops, or
/// the request is malformed (answered with 400 first).
fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    peer: SocketAddr,
    stop: &AtomicBool,
) -> Option<(HttpRequest, bool)> {
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = parsed.method.unwrap_or("").to_string();
                let target = parsed.path.unwrap_or("/").to_string();
                let http10 = parsed.version == Some(0);
                let hdrs: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned())
                    })
                    .collect();
                let find = |n: &str| hdrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
                let len: usize = match find("content-length").map(|v| v.trim().parse()) {
                    None => 0,
                    Some(Ok(n)) if n <= MAX_BODY => n,
                    Some(_) => {
                        let _ = write_response(
                            stream,
                            &HttpResponse::raw(400, "bad Content-Length", "text/plain"),
                            false,
                        );
                        return None;
                    }
                };
                if find("transfer-encoding")
                    .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
                {
                    let _ = write_response(
                        stream,
                        &HttpResponse::raw(411, "Content-Length required", "text/plain"),
                        false,
                    );
                    return None;
                }
                while buf.len() < head_len + len {
                    if !fill(stream, buf, &mut chunk, stop)? {
                        return None;
                    }
                }
                let body = buf[head_len..head_len + len].to_vec();
                buf.drain(..head_len + len);
                let connection = find("connection").unwrap_or_default().to_ascii_lowercase();
                let keep_alive = if http10 {
                    connection.contains("keep-alive")
                } else {
                    !connection.contains("close")
                };
                let (path, query) = split_target(&target);
                return Some((
                    HttpRequest { method, path, query, headers: hdrs, body, peer },
                    keep_alive,
                ));
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > 64 * 1024 {
                    let _ = write_response(
                        stream,
                        &HttpResponse::raw(431, "headers too large", "text/plain"),
                        false,
                    );
                    return None;
                }
                if !fill(stream, buf, &mut chunk, stop)? {
                    return None;
                }
            }
            Err(_) => {
                let _ = write_response(
                    stream,
                    &HttpResponse::raw(400, "malformed request", "text/plain"),
                    false,
                );
                return None;
            }
        }
    }
}

/// Reads more bytes. `Some(false)` at end of stream, `None` on stop or error.
fn fill(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
    stop: &AtomicBool,
) -> Option<bool> {
    loop {
        if stop.load(Ordering::Acquire) {
            return None;
        }
        match stream.read(chunk) {
            Ok(0) => return Some(false),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Some(true);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return None,
        }
    }
}

fn split_target(target: &str) -> (String, Vec<(String, String)>) {
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    (percent_decode(path), query)
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn write_response(stream: &mut TcpStream, r: &HttpResponse, keep_alive: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(&r.body);
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_path_and_decoded_query() {
        let (p, q) = split_target("/v2/killswitch?killSwitchStatus=ACTIVATE&x=a%20b");
        assert_eq!(p, "/v2/killswitch");
        assert_eq!(
            q,
            vec![("killSwitchStatus".into(), "ACTIVATE".into()), ("x".into(), "a b".into())]
        );
        assert_eq!(split_target("/v2/orders/external/A%20B").0, "/v2/orders/external/A B");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("abc%"), "abc%");
    }

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
