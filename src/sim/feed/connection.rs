//! One simulated feed connection: the handshake (with the 429 fault and the credential check),
//! then a loop that streams market updates for the client's subscriptions, pings, applies
//! faults, and reads the client's requests. Reads use a 1 ms socket timeout so one thread can
//! both send and receive.

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::{Bytes, Message, WebSocket};

use super::{ConnEvent, HandshakeOutcome, Hub};
use crate::domain::{InstrumentKey, Segment};
use crate::feed::codec::{self, Disconnect, DisconnectReason, Packet};
use crate::feed::subscribe::{FeedMode, FeedRequest, RequestError, parse_request};
use crate::feed::url::query_params;

/// Why a connection ends; the socket is dropped either way.
struct End;

type Flow = Result<(), End>;

fn mode_bit(mode: FeedMode) -> u8 {
    match mode {
        FeedMode::Ticker => 1,
        FeedMode::Quote => 2,
        FeedMode::Full => 4,
    }
}

fn too_many_requests() -> ErrorResponse {
    let mut response = ErrorResponse::new(Some("Too Many Requests".to_string()));
    *response.status_mut() = tungstenite::http::StatusCode::TOO_MANY_REQUESTS;
    response
}

// The handshake callback's error type is tungstenite's own HTTP response.
#[allow(clippy::result_large_err)]
pub(super) fn serve(hub: &Arc<Hub>, stream: TcpStream) {
    let arrived = Instant::now();
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let Ok(raw) = stream.try_clone() else { return };
    let refuse = hub
        .refuse_handshakes
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok();
    // The verdict is recorded inside the handshake, before the client sees the response, so
    // a test that has just connected always finds its attempt on record.
    let mut verdict = None;
    let accepted = tungstenite::accept_hdr(stream, |req: &Request, resp: Response| {
        let params = query_params(&req.uri().to_string());
        let get = |k: &str| params.iter().find(|(key, _)| key == k).map_or("", |(_, v)| v.as_str());
        let (client_id, token) = (get("clientId").to_string(), get("token").to_string());
        let outcome = match (refuse, hub.check_credentials(&params)) {
            (true, _) => HandshakeOutcome::Refused,
            (false, Some(reason)) => HandshakeOutcome::Rejected(reason),
            (false, None) => HandshakeOutcome::Accepted,
        };
        hub.record(arrived, &client_id, &token, outcome.clone());
        verdict = Some((client_id, outcome));
        if refuse { Err(too_many_requests()) } else { Ok(resp) }
    })
    .map_err(|e| log::debug!(target: "sim", "feed: handshake failed: {e}"));
    let (client_id, ws) = match (accepted, verdict) {
        (Ok(ws), Some((client_id, HandshakeOutcome::Accepted))) => (client_id, ws),
        (Ok(mut ws), Some((_, HandshakeOutcome::Rejected(reason)))) => {
            // Without the client id: it is the account's secret identifier.
            log::info!(target: "sim", "feed: rejecting a client with {reason}");
            send_disconnect(&mut ws, reason);
            return;
        }
        (_, None) => {
            hub.record(arrived, "", "", HandshakeOutcome::Failed);
            return;
        }
        _ => return,
    };
    let (id, events) = hub.register(&client_id);
    let _ = raw.set_read_timeout(Some(Duration::from_millis(1)));
    let now = Instant::now();
    let mut conn = Conn {
        hub,
        ws,
        subs: HashMap::new(),
        pending: Vec::new(),
        pending_count: 0,
        sent: 0,
        last_ping: now,
        last_heard: now,
    };
    let _ = conn.run(&events);
    for key in conn.subs.keys() {
        hub.remove_subscriber(*key);
    }
    hub.deregister(id);
}

/// Sends a code-50 packet and a close frame without waiting for the client's answer.
fn send_disconnect(ws: &mut WebSocket<TcpStream>, reason: u16) {
    let packet = Packet::Disconnect(Disconnect { reason: DisconnectReason::from_code(reason) });
    let _ = ws.send(Message::binary(codec::encode_to_vec(&packet)));
    let _ = ws.close(None);
    let _ = ws.flush();
}

struct Conn<'a> {
    hub: &'a Hub,
    ws: WebSocket<TcpStream>,
    /// Subscribed modes per instrument (bit per mode).
    subs: HashMap<InstrumentKey, u8>,
    pending: Vec<u8>,
    pending_count: usize,
    sent: u64,
    last_ping: Instant,
    last_heard: Instant,
}

impl Conn<'_> {
    fn run(&mut self, events: &Receiver<ConnEvent>) -> Flow {
        loop {
            if self.hub.shutdown.load(Ordering::Acquire) {
                let _ = self.ws.close(None);
                let _ = self.ws.flush();
                return Err(End);
            }
            self.drain(events)?;
            let silent = self.hub.silent.load(Ordering::Acquire);
            self.flush_pending()?;
            if silent {
                if !self.hub.sleep(Duration::from_millis(2)) {
                    return Err(End);
                }
                continue;
            }
            if self.last_ping.elapsed() >= self.hub.cfg.ping_interval {
                self.ws.send(Message::Ping(Bytes::new())).map_err(|_| End)?;
                self.hub.pings_sent.fetch_add(1, Ordering::Relaxed);
                self.last_ping = Instant::now();
            }
            if self.last_heard.elapsed() > self.hub.cfg.client_timeout {
                log::info!(target: "sim", "feed: dropping a client silent for {:?}", self.hub.cfg.client_timeout);
                return Err(End);
            }
            self.read_client()?;
        }
    }

    fn drain(&mut self, events: &Receiver<ConnEvent>) -> Flow {
        loop {
            let silent = self.hub.silent.load(Ordering::Acquire);
            match events.try_recv() {
                Ok(ConnEvent::Update { key, state, ltt }) => {
                    let Some(&modes) = self.subs.get(&key) else { continue };
                    if silent {
                        continue;
                    }
                    for mode in FeedMode::ALL.into_iter().filter(|m| modes & mode_bit(*m) != 0) {
                        for p in state.packets(key, mode, ltt) {
                            self.queue(&p)?;
                        }
                    }
                }
                Ok(ConnEvent::Disconnect(reason)) => {
                    let _ = self.flush_pending();
                    send_disconnect(&mut self.ws, reason);
                    return Err(End);
                }
                Ok(ConnEvent::Raw(bytes)) if !silent => {
                    self.flush_pending()?;
                    self.send_binary(bytes)?;
                }
                Ok(ConnEvent::Raw(_)) => {}
                Ok(ConnEvent::Firehose(burst)) if !silent => {
                    self.flush_pending()?;
                    self.firehose(&burst)?;
                }
                Ok(ConnEvent::Firehose(_)) => {}
                Ok(ConnEvent::Drop) | Err(TryRecvError::Disconnected) => return Err(End),
                Err(TryRecvError::Empty) => return Ok(()),
            }
        }
    }

    fn read_client(&mut self) -> Flow {
        match self.ws.read() {
            Ok(Message::Text(text)) => {
                self.last_heard = Instant::now();
                self.handle_request(text.as_str())
            }
            Ok(Message::Close(_)) => Err(End),
            Ok(_) => {
                // Pings (answered by tungstenite), pongs, and binary frames (ignored, §1.11).
                self.last_heard = Instant::now();
                Ok(())
            }
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(())
            }
            Err(_) => Err(End),
        }
    }

    fn handle_request(&mut self, text: &str) -> Flow {
        match parse_request(text) {
            Ok(FeedRequest::Subscribe { mode, instruments }) => self.subscribe(mode, &instruments),
            Ok(FeedRequest::Unsubscribe { mode, instruments }) => {
                for key in instruments {
                    if let Some(modes) = self.subs.get_mut(&key) {
                        *modes &= !mode_bit(mode);
                        if *modes == 0 {
                            self.subs.remove(&key);
                            self.hub.remove_subscriber(key);
                        }
                    }
                }
                Ok(())
            }
            Ok(FeedRequest::Disconnect) => {
                let _ = self.ws.close(None);
                let _ = self.ws.flush();
                Err(End)
            }
            Err(RequestError::TooManyInstruments { count }) => {
                log::info!(target: "sim", "feed: request lists {count} instruments; answering 804");
                send_disconnect(&mut self.ws, 804);
                Err(End)
            }
            Err(e) => {
                self.hub.bad_requests.fetch_add(1, Ordering::Relaxed);
                log::warn!(target: "sim", "feed: ignoring a bad client request: {e}");
                Ok(())
            }
        }
    }

    fn subscribe(&mut self, mode: FeedMode, instruments: &[InstrumentKey]) -> Flow {
        let mut fresh: Vec<InstrumentKey> =
            instruments.iter().copied().filter(|k| !self.subs.contains_key(k)).collect();
        fresh.sort();
        fresh.dedup();
        if self.subs.len() + fresh.len() > self.hub.cfg.max_instruments_per_connection {
            log::info!(target: "sim", "feed: subscription over {} instruments; answering 804", self.hub.cfg.max_instruments_per_connection);
            send_disconnect(&mut self.ws, 804);
            return Err(End);
        }
        for key in fresh {
            self.subs.insert(key, 0);
            self.hub.add_subscriber(key);
        }
        for &key in instruments {
            if let Some(modes) = self.subs.get_mut(&key) {
                *modes |= mode_bit(mode);
            }
        }
        let ltt = self.hub.now_ltt();
        for &key in instruments {
            let state = self.hub.state(key);
            if key.segment == Segment::IdxI || self.hub.cfg.prev_close_for_all {
                self.queue(&state.prev_close_packet(key))?;
            }
            if self.hub.cfg.snapshot_on_subscribe {
                for p in state.packets(key, mode, ltt) {
                    self.queue(&p)?;
                }
            }
        }
        self.flush_pending()
    }

    fn queue(&mut self, packet: &Packet) -> Flow {
        codec::encode(packet, &mut self.pending);
        self.pending_count += 1;
        if self.pending_count >= self.hub.cfg.packets_per_message.max(1) {
            self.flush_pending()?;
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> Flow {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.pending_count = 0;
        let bytes = std::mem::take(&mut self.pending);
        self.send_binary(bytes)
    }

    /// Writes the burst through the socket's buffer (flushed whenever it fills, and at the
    /// end): the client's reading is the only brake.
    fn firehose(&mut self, burst: &super::Firehose) -> Flow {
        if self.hub.record_writes.load(Ordering::Acquire) {
            self.hub.writes.lock().push(Instant::now());
        }
        let mut sent = 0u64;
        for _ in 0..burst.rounds {
            for m in &burst.messages {
                self.ws.write(Message::Binary(m.clone())).map_err(|_| End)?;
                sent += 1;
            }
        }
        self.ws.flush().map_err(|_| End)?;
        self.sent += sent;
        self.hub.messages_sent.fetch_add(sent, Ordering::Relaxed);
        Ok(())
    }

    fn send_binary(&mut self, bytes: Vec<u8>) -> Flow {
        if self.hub.record_writes.load(Ordering::Acquire) {
            self.hub.writes.lock().push(Instant::now());
        }
        self.ws.send(Message::binary(bytes)).map_err(|_| End)?;
        self.sent += 1;
        self.hub.messages_sent.fetch_add(1, Ordering::Relaxed);
        if self.sent >= self.hub.drop_after_messages.load(Ordering::Acquire) {
            log::info!(target: "sim", "feed: dropping a connection after {} messages (fault)", self.sent);
            return Err(End);
        }
        Ok(())
    }
}
