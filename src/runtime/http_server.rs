//! The one HTTP/1.1 server of the project, behind the engine's control surface and the
//! simulator's REST API: requests parsed with `httparse`, `Content-Length` bodies, keep-alive,
//! and hard limits so that no client can grow the process's memory or threads.
//!
//! Threads: the thread that calls [`serve`] owns the listening socket and every connection and
//! multiplexes them with `poll(2)` (accept, read, write, timers); a fixed pool of
//! [`Limits::workers`] threads, fed through a bounded channel, runs the handler on complete
//! requests. A connection that dribbles its request, idles or reads its answer slowly costs a
//! slot and a buffer, never a thread. The limits (each answered, then the connection closed):
//!
//! - header bytes over `max_header_bytes` → 431; a `Content-Length` over `max_body_bytes` →
//!   413; a chunked body → 411; a malformed request → 400;
//! - a request not complete within `request_deadline` of its first byte → 408 (slowloris);
//! - an answer not written within `write_deadline` → closed;
//! - a keep-alive connection idle for `idle_timeout`, or after `max_requests_per_connection`
//!   requests → closed;
//! - at `max_connections`, a new connection evicts the longest-idle one (no request in
//!   progress); if every one is mid-request, the newcomer gets 503 at once and is closed;
//! - every worker busy and `queue` requests waiting → 503.
//!
//! After an error answer the server stops writing, reads and discards what the client still
//! sends for at most `linger`, then closes, so the client reads the answer instead of a reset.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

pub use super::http_message::{Handler, HttpAction, HttpRequest, HttpResponse};
use super::http_message::{Parsed, encode, parse};

/// The hard limits of one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    pub max_connections: usize,
    /// Threads that run the handler.
    pub workers: usize,
    /// Complete requests waiting for a worker.
    pub queue: usize,
    /// From the first byte of a request to its last.
    pub request_deadline: Duration,
    /// From an answer being ready to its last byte written.
    pub write_deadline: Duration,
    /// Between requests on a keep-alive connection (and before the first).
    pub idle_timeout: Duration,
    /// What the idle timeout does to a connection.
    pub on_idle: OnIdle,
    pub max_requests_per_connection: usize,
    /// How long input is drained after an error answer before closing.
    pub linger: Duration,
    /// The longest `poll` wait: how often the loop checks whether to go on.
    pub tick: Duration,
}

impl Limits {
    /// The engine's control server (`/health`, `/metrics`, `/v1/`).
    pub fn control(max_body_bytes: usize) -> Limits {
        Limits {
            max_header_bytes: 8 * 1024,
            max_body_bytes,
            max_connections: 32,
            workers: 4,
            queue: 32,
            request_deadline: Duration::from_secs(5),
            write_deadline: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            on_idle: OnIdle::Close,
            max_requests_per_connection: 1000,
            linger: Duration::from_secs(1),
            tick: Duration::from_millis(250),
        }
    }

    /// The simulator's REST API: a test fixture serving many engines and test threads.
    pub fn simulator() -> Limits {
        Limits {
            max_header_bytes: 64 * 1024,
            max_body_bytes: 1 << 20,
            max_connections: 256,
            workers: 4,
            queue: 256,
            request_deadline: Duration::from_secs(5),
            write_deadline: Duration::from_secs(5),
            // Longer than any client's pooled-connection age (the broker client's is 4 s).
            idle_timeout: Duration::from_secs(120),
            on_idle: OnIdle::Close,
            max_requests_per_connection: usize::MAX,
            linger: Duration::from_secs(1),
            tick: Duration::from_millis(20),
        }
    }
}

/// What happens to a keep-alive connection idle for longer than [`Limits::idle_timeout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnIdle {
    /// Closed (FIN), as a web server's keep-alive timeout does.
    Close,
    /// Forgotten without a word, as a load balancer or NAT dropping an idle flow does (the
    /// simulator plays this): the connection looks open to the client, and the next request on
    /// it is answered with a reset, unprocessed.
    Forget,
}

/// Connection counts of a running server.
#[derive(Debug, Default)]
pub struct HttpStats {
    pub accepted: AtomicU64,
    /// Connections ended by the idle timeout.
    pub expired: AtomicU64,
}

/// A bound, non-blocking listening socket; it outlives the loops that serve it (a respawned
/// worker serves the same socket).
pub struct HttpListener {
    listener: TcpListener,
    addr: SocketAddr,
}

/// The listen backlog: connections the kernel completes while the loop has not accepted them
/// yet (capped by `net.core.somaxconn`). The standard library listens with 128; a burst beyond
/// that (hundreds of idle connections opened at once) made the kernel drop the next clients'
/// SYNs and handshake ACKs, so a well-behaved client waited a second or more for the
/// retransmission, and one whose request was dropped with them was accepted without it and
/// evicted as idle. Held in the queue instead, each is accepted with its request.
pub const LISTEN_BACKLOG: i32 = 1024;

impl HttpListener {
    pub fn bind(addr: SocketAddr) -> io::Result<HttpListener> {
        let listener = TcpListener::bind(addr)?;
        // Listening again on a listening socket sets its backlog anew.
        // SAFETY: listen(2) on a socket this function owns.
        if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
            return Err(io::Error::last_os_error());
        }
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        Ok(HttpListener { listener, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Closes with RST instead of FIN (SO_LINGER = 0), as a crashed gateway would.
pub fn reset(stream: &TcpStream) {
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
    let _ = stream.shutdown(Shutdown::Both);
}

/// Serves `listener` until `keep_going` (asked at least every `limits.tick`) says stop; runs
/// `handler` on `limits.workers` threads named `<name>-worker`. Connections end with it.
pub fn serve(
    listener: &HttpListener,
    limits: &Limits,
    name: &str,
    handler: &Handler,
    keep_going: impl FnMut() -> bool,
) -> io::Result<()> {
    serve_counted(listener, limits, name, handler, &HttpStats::default(), keep_going)
}

/// [`serve`], counting connections into `stats`.
pub fn serve_counted(
    listener: &HttpListener,
    limits: &Limits,
    name: &str,
    handler: &Handler,
    stats: &HttpStats,
    mut keep_going: impl FnMut() -> bool,
) -> io::Result<()> {
    let (wake_rx, wake_tx) = UnixStream::pair()?;
    wake_rx.set_nonblocking(true)?;
    wake_tx.set_nonblocking(true)?;
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<Done>();
    std::thread::scope(|scope| -> io::Result<()> {
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded::<Job>(limits.queue.max(1));
        for _ in 0..limits.workers.max(1) {
            let (jobs, done, wake) = (jobs_rx.clone(), done_tx.clone(), &wake_tx);
            std::thread::Builder::new()
                .name(format!("{name}-worker"))
                .spawn_scoped(scope, move || work(&jobs, &done, wake, handler))?;
        }
        drop(jobs_rx);
        let mut server = Server {
            limits,
            stats,
            listener: &listener.listener,
            wake: &wake_rx,
            jobs: jobs_tx,
            done: done_rx,
            conns: Vec::new(),
            next_id: 0,
            accept_after: None,
        };
        while keep_going() {
            server.turn()?;
        }
        Ok(())
        // `server` (and with it the job sender) drops here: the workers finish their request
        // and end, and the scope joins them.
    })
}

struct Job {
    conn: u64,
    request: HttpRequest,
}

struct Done {
    conn: u64,
    action: HttpAction,
}

fn work(jobs: &Receiver<Job>, done: &Sender<Done>, wake: &UnixStream, handler: &Handler) {
    for Job { conn, request } in jobs {
        let (method, path) = (request.method.clone(), request.path.clone());
        let action = std::panic::catch_unwind(AssertUnwindSafe(|| handler(request)))
            .unwrap_or_else(|_| {
                log::error!(target: "http", "The handler of {method} {path} panicked; answered 500");
                HttpAction::Respond(HttpResponse::text(500, "internal error"))
            });
        if done.send(Done { conn, action }).is_err() {
            return;
        }
        let _ = (&*wake).write(&[1]);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    KeepAlive,
    Close,
    /// An error answer: drain the input for `linger`, then close.
    Linger,
}

#[derive(Debug)]
enum State {
    /// No request in progress since `since`.
    Idle {
        since: Instant,
    },
    /// A request started at `since` and is not complete yet.
    Reading {
        since: Instant,
    },
    /// A worker has the request.
    Busy {
        keep_alive: bool,
    },
    /// Waiting to answer (or to reset, without an answer) at `at`.
    Delayed {
        at: Instant,
        answer: Option<HttpResponse>,
        keep_alive: bool,
    },
    Writing {
        until: Instant,
        after: After,
    },
    Lingering {
        until: Instant,
    },
    /// Past the idle timeout under [`OnIdle::Forget`]: whatever arrives is answered with a reset.
    Forgotten,
}

struct Conn {
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    served: usize,
    /// The peer finished sending.
    eof: bool,
    state: State,
    dead: bool,
}

struct Server<'a> {
    limits: &'a Limits,
    stats: &'a HttpStats,
    listener: &'a TcpListener,
    wake: &'a UnixStream,
    jobs: Sender<Job>,
    done: Receiver<Done>,
    conns: Vec<Conn>,
    next_id: u64,
    /// After a failed accept (out of file descriptors), the listener rests until then.
    accept_after: Option<Instant>,
}

/// How long the listener rests after a failed accept, instead of spinning on it.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
const READ_CHUNK: usize = 16 * 1024;
/// Connections accepted per turn, so that a flood cannot starve the others.
const ACCEPTS_PER_TURN: usize = 64;

impl Server<'_> {
    /// One wait for sockets and timers, and everything that is due.
    fn turn(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let mut fds = Vec::with_capacity(self.conns.len() + 2);
        let mut wait = self.limits.tick;
        let accepting = match self.accept_after {
            Some(at) if at > now => {
                wait = wait.min(at - now);
                0
            }
            _ => libc::POLLIN,
        };
        fds.push(pollfd(self.listener.as_raw_fd(), accepting));
        fds.push(pollfd(self.wake.as_raw_fd(), libc::POLLIN));
        for c in &self.conns {
            let events = match c.state {
                State::Idle { .. }
                | State::Reading { .. }
                | State::Lingering { .. }
                | State::Forgotten => libc::POLLIN,
                State::Writing { .. } => libc::POLLOUT,
                State::Busy { .. } | State::Delayed { .. } => 0,
            };
            fds.push(pollfd(c.stream.as_raw_fd(), events));
            if let Some(at) = self.deadline(c) {
                wait = wait.min(at.saturating_duration_since(now));
            }
        }
        let ms = wait.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid, initialised array of `fds.len()` pollfd structs.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(()) } else { Err(e) };
        }
        if fds[1].revents != 0 {
            let mut sink = [0u8; 64];
            while matches!((&*self.wake).read(&mut sink), Ok(n) if n > 0) {}
        }
        for (i, fd) in fds.iter().enumerate().skip(2) {
            if fd.revents != 0 {
                self.ready(i - 2, fd.revents);
            }
        }
        while let Ok(done) = self.done.try_recv() {
            if let Some(i) = self.conns.iter().position(|c| c.id == done.conn && !c.dead) {
                self.answered(i, done.action);
            }
        }
        let now = Instant::now();
        for i in 0..self.conns.len() {
            if self.deadline(&self.conns[i]).is_some_and(|at| at <= now) {
                self.expired(i);
            }
        }
        self.conns.retain(|c| !c.dead);
        if fds[0].revents != 0 {
            self.accept();
        }
        Ok(())
    }

    fn deadline(&self, c: &Conn) -> Option<Instant> {
        match c.state {
            State::Idle { since } => Some(since + self.limits.idle_timeout),
            State::Reading { since } => Some(since + self.limits.request_deadline),
            State::Busy { .. } | State::Forgotten => None,
            State::Delayed { at, .. } => Some(at),
            State::Writing { until, .. } | State::Lingering { until } => Some(until),
        }
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPTS_PER_TURN {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // Out of file descriptors and the like: the clients wait in the backlog.
                    log::debug!(target: "http", "accept failed: {e}");
                    self.accept_after = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            };
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
            let Ok(peer) = stream.peer_addr() else { continue };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = stream.set_nodelay(true);
            if self.conns.len() >= self.limits.max_connections && !self.evict_one() {
                refuse(stream);
                continue;
            }
            self.next_id += 1;
            let first = self.conns.len();
            self.conns.push(Conn {
                id: self.next_id,
                stream,
                peer,
                input: Vec::new(),
                output: Vec::new(),
                written: 0,
                served: 0,
                eof: false,
                state: State::Idle { since: Instant::now() },
                dead: false,
            });
            // What the client sent with its connect is read now, so that the connection is not
            // taken for an idle one by the next arrival's eviction.
            self.read_idle(first);
        }
    }

    /// Reads what an idle connection has received and acts on it; no-op for any other state.
    fn read_idle(&mut self, i: usize) {
        let cap = self.limits.max_header_bytes + self.limits.max_body_bytes + READ_CHUNK;
        let c = &mut self.conns[i];
        if c.dead || !matches!(c.state, State::Idle { .. }) {
            return;
        }
        if !c.fill(cap) {
            c.dead = true;
        } else if !c.input.is_empty() || c.eof {
            self.advance(i);
        }
    }

    /// Closes the connection idle longest (or one draining after an error); `false` if every
    /// connection has a request in progress.
    fn evict_one(&mut self) -> bool {
        // A connection whose request has arrived but was not read yet is not idle.
        for i in 0..self.conns.len() {
            self.read_idle(i);
        }
        let victim = self
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c.state {
                _ if c.dead => Some((i, None)),
                State::Lingering { .. } | State::Forgotten => Some((i, None)),
                State::Idle { since } => Some((i, Some(since))),
                _ => None,
            })
            .min_by_key(|&(_, since)| since)
            .map(|(i, _)| i);
        match victim {
            Some(i) => {
                self.conns.swap_remove(i);
                true
            }
            None => false,
        }
    }

    fn ready(&mut self, i: usize, revents: libc::c_short) {
        let c = &mut self.conns[i];
        match c.state {
            State::Idle { .. } | State::Reading { .. } => {
                if c.fill(self.limits.max_header_bytes + self.limits.max_body_bytes + READ_CHUNK) {
                    self.advance(i);
                } else {
                    c.dead = true;
                }
            }
            State::Lingering { .. } => {
                let mut sink = [0u8; READ_CHUNK];
                loop {
                    match c.stream.read(&mut sink) {
                        Ok(0) => break c.dead = true,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => break c.dead = true,
                    }
                }
            }
            State::Forgotten => {
                let mut probe = [0u8; 1];
                match c.stream.read(&mut probe) {
                    Ok(0) => c.dead = true,
                    Ok(_) => {
                        reset(&c.stream);
                        c.dead = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => c.dead = true,
                }
            }
            State::Writing { .. } => self.flush(i),
            State::Busy { .. } | State::Delayed { .. } => {
                if revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                    c.dead = true;
                }
            }
        }
    }

    /// Parses what has arrived: dispatches a complete request, answers a bad one.
    fn advance(&mut self, i: usize) {
        let limits = self.limits;
        let c = &mut self.conns[i];
        match parse(&c.input, limits, c.peer) {
            Parsed::Partial if c.eof => c.dead = true,
            Parsed::Partial => {
                if let State::Idle { .. } = c.state
                    && !c.input.is_empty()
                {
                    c.state = State::Reading { since: Instant::now() };
                }
            }
            Parsed::Bad(response) => self.respond(i, response, After::Linger),
            Parsed::Complete { request, used, keep_alive } => {
                c.input.drain(..used);
                c.served += 1;
                let keep_alive =
                    keep_alive && !c.eof && c.served < limits.max_requests_per_connection;
                let job = Job { conn: c.id, request };
                match self.jobs.try_send(job) {
                    Ok(()) => c.state = State::Busy { keep_alive },
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                        let busy = HttpResponse::text(503, "server busy, retry");
                        self.respond(i, busy, After::Close);
                    }
                }
            }
        }
    }

    fn answered(&mut self, i: usize, action: HttpAction) {
        let State::Busy { keep_alive } = self.conns[i].state else { return };
        let after = if keep_alive { After::KeepAlive } else { After::Close };
        match action {
            HttpAction::Respond(r) => self.respond(i, r, after),
            HttpAction::RespondAfter(r, delay) => {
                let at = Instant::now() + delay;
                self.conns[i].state = State::Delayed { at, answer: Some(r), keep_alive };
            }
            HttpAction::Reset => {
                reset(&self.conns[i].stream);
                self.conns[i].dead = true;
            }
            HttpAction::Withhold(hold) => {
                let at = Instant::now() + hold;
                self.conns[i].state = State::Delayed { at, answer: None, keep_alive };
            }
        }
    }

    fn expired(&mut self, i: usize) {
        let c = &mut self.conns[i];
        match std::mem::replace(&mut c.state, State::Busy { keep_alive: false }) {
            State::Reading { .. } => {
                let late = HttpResponse::text(408, "request not complete in time");
                self.respond(i, late, After::Linger);
            }
            State::Delayed { answer: Some(r), keep_alive, .. } => {
                let after = if keep_alive { After::KeepAlive } else { After::Close };
                self.respond(i, r, after);
            }
            State::Delayed { answer: None, .. } => {
                reset(&c.stream);
                c.dead = true;
            }
            State::Idle { .. } => {
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
                match self.limits.on_idle {
                    OnIdle::Close => c.dead = true,
                    OnIdle::Forget => c.state = State::Forgotten,
                }
            }
            _ => c.dead = true,
        }
    }

    fn respond(&mut self, i: usize, r: HttpResponse, after: After) {
        let c = &mut self.conns[i];
        c.output = encode(&r, after == After::KeepAlive);
        c.written = 0;
        c.state = State::Writing { until: Instant::now() + self.limits.write_deadline, after };
        self.flush(i);
    }

    /// Writes what the socket takes; at the end, what the answer said comes next.
    fn flush(&mut self, i: usize) {
        let linger = self.limits.linger;
        let c = &mut self.conns[i];
        let State::Writing { after, .. } = c.state else { return };
        while c.written < c.output.len() {
            match c.stream.write(&c.output[c.written..]) {
                Ok(0) => return c.dead = true,
                Ok(n) => c.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return c.dead = true,
            }
        }
        c.output = Vec::new();
        match after {
            After::KeepAlive => {
                c.state = State::Idle { since: Instant::now() };
                if !c.input.is_empty() || c.eof {
                    self.advance(i);
                }
            }
            After::Close => {
                let _ = c.stream.shutdown(Shutdown::Write);
                c.state = State::Lingering {
                    until: Instant::now() + linger.min(Duration::from_millis(200)),
                };
            }
            After::Linger => {
                let _ = c.stream.shutdown(Shutdown::Write);
                c.state = State::Lingering { until: Instant::now() + linger };
            }
        }
    }
}

impl Conn {
    /// Reads what has arrived, up to `cap` buffered bytes; `false` on a socket error.
    fn fill(&mut self, cap: usize) -> bool {
        let mut chunk = [0u8; READ_CHUNK];
        while self.input.len() < cap && !self.eof {
            match self.stream.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

/// Refuses a connection over the cap: 503 if the socket takes it at once, then close.
fn refuse(mut stream: TcpStream) {
    let busy = HttpResponse::text(503, "too many connections");
    let _ = stream.write(&encode(&busy, false));
    let _ = stream.shutdown(Shutdown::Write);
}

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `net.core.somaxconn`, the kernel's cap on any backlog (128 before Linux 5.4).
    fn somaxconn() -> usize {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(128)
    }

    #[test]
    fn a_burst_of_connections_beyond_128_waits_in_the_backlog_instead_of_having_its_syns_dropped() {
        let listener = HttpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        // Nobody accepts: every connection must be completed by the kernel and held in the
        // queue, which holds the backlog (capped by somaxconn) plus one. With a backlog of 128
        // the 130th handshake never completes while nothing accepts.
        let burst = somaxconn().min(LISTEN_BACKLOG as usize).min(300);
        let mut held = Vec::with_capacity(burst);
        for n in 0..burst {
            match TcpStream::connect_timeout(&listener.addr(), Duration::from_secs(10)) {
                Ok(s) => held.push(s),
                Err(e) => panic!("connection {} of {burst} not completed: {e}", n + 1),
            }
        }
        assert_eq!(held.len(), burst);
    }
}
