//! Dhan v2 market-feed packets, byte for byte (spec dhan-v2 §1.4–1.5): decode one packet from
//! the start of a byte slice, encode one packet onto a buffer.
//!
//! Pure and allocation-free on the decode path: a packet is a plain `Copy` value. Every
//! multi-byte field is little-endian; prices are f32 rupees on the wire and become exact
//! [`Paise`] here (half away from zero); LTT is kept raw and as a true UTC [`Timestamp`]
//! (LTT − 19800 s). Encoding (for the simulator) is in `encode`. Cutting a WebSocket message
//! into packets, and resynchronising after a bad one, is `splitter`'s job.

use std::fmt;

use crate::domain::{InstrumentKey, Paise, Segment, Timestamp};

mod encode;
pub use encode::{encode, encode_to_vec, rupees_f32};

/// Every packet starts with an 8-byte header: code, total length (header included), segment,
/// security id.
pub const HEADER_LEN: usize = 8;

/// The packet types this codec understands, with their fixed total sizes (spec §1.5).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PacketKind {
    Ticker,
    Quote,
    Oi,
    PrevClose,
    MarketStatus,
    Full,
    Disconnect,
}

impl PacketKind {
    pub const ALL: [PacketKind; 7] = [
        PacketKind::Ticker,
        PacketKind::Quote,
        PacketKind::Oi,
        PacketKind::PrevClose,
        PacketKind::MarketStatus,
        PacketKind::Full,
        PacketKind::Disconnect,
    ];

    pub const fn from_code(code: u8) -> Option<PacketKind> {
        Some(match code {
            2 => PacketKind::Ticker,
            4 => PacketKind::Quote,
            5 => PacketKind::Oi,
            6 => PacketKind::PrevClose,
            7 => PacketKind::MarketStatus,
            8 => PacketKind::Full,
            50 => PacketKind::Disconnect,
            _ => return None,
        })
    }

    /// The feed response code in byte 0 of the header.
    pub const fn code(self) -> u8 {
        match self {
            PacketKind::Ticker => 2,
            PacketKind::Quote => 4,
            PacketKind::Oi => 5,
            PacketKind::PrevClose => 6,
            PacketKind::MarketStatus => 7,
            PacketKind::Full => 8,
            PacketKind::Disconnect => 50,
        }
    }

    /// Total packet size in bytes, header included.
    pub const fn fixed_len(self) -> usize {
        match self {
            PacketKind::Ticker => 16,
            PacketKind::Quote => 50,
            PacketKind::Oi => 12,
            PacketKind::PrevClose => 16,
            PacketKind::MarketStatus => 8,
            PacketKind::Full => 162,
            PacketKind::Disconnect => 10,
        }
    }

    /// Whether the header's segment and security id name an instrument (and must therefore be
    /// a known segment). Market status and disconnect packets carry no instrument.
    pub const fn has_instrument(self) -> bool {
        !matches!(self, PacketKind::MarketStatus | PacketKind::Disconnect)
    }

    /// Lower-case name used in logs and in `scalper decode` output.
    pub const fn name(self) -> &'static str {
        match self {
            PacketKind::Ticker => "ticker",
            PacketKind::Quote => "quote",
            PacketKind::Oi => "oi",
            PacketKind::PrevClose => "prev_close",
            PacketKind::MarketStatus => "market_status",
            PacketKind::Full => "full",
            PacketKind::Disconnect => "disconnect",
        }
    }
}

impl fmt::Display for PacketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The raw 8-byte header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub code: u8,
    /// Total packet length in bytes, header included.
    pub len: u16,
    pub segment: u8,
    pub security_id: u32,
}

impl Header {
    /// Reads the header at the start of `bytes`, if 8 bytes are there.
    pub fn read(bytes: &[u8]) -> Option<Header> {
        let h: &[u8; HEADER_LEN] = bytes.first_chunk()?;
        Some(Header {
            code: h[0],
            len: u16::from_le_bytes([h[1], h[2]]),
            segment: h[3],
            security_id: u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
        })
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.code);
        out.extend_from_slice(&self.len.to_le_bytes());
        out.push(self.segment);
        out.extend_from_slice(&self.security_id.to_le_bytes());
    }
}

/// Code 2: last traded price and time.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Ticker {
    pub instrument: InstrumentKey,
    pub ltp: Paise,
    /// Raw LTT: IST wall clock written as a Unix epoch.
    pub ltt: u32,
    /// The true instant of `ltt`.
    pub exchange_time: Timestamp,
}

impl Ticker {
    pub fn new(instrument: InstrumentKey, ltp: Paise, ltt: u32) -> Ticker {
        Ticker { instrument, ltp, ltt, exchange_time: Timestamp::from_feed_ltt(ltt) }
    }
}

/// Code 6: previous session's close and open interest.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PrevClose {
    pub instrument: InstrumentKey,
    pub prev_close: Paise,
    pub prev_oi: u32,
}

/// Code 4: LTP, LTQ, day statistics.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    pub instrument: InstrumentKey,
    pub ltp: Paise,
    pub ltq: u16,
    pub ltt: u32,
    pub exchange_time: Timestamp,
    /// Average traded price (day VWAP).
    pub atp: Paise,
    pub volume: u32,
    pub total_sell_qty: u32,
    pub total_buy_qty: u32,
    pub open: Paise,
    /// The "day close" field, which carries the previous session's close (spec §1.5, §1.9).
    pub close: Paise,
    pub high: Paise,
    pub low: Paise,
}

/// Code 5: open interest (sent alongside quotes).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Oi {
    pub instrument: InstrumentKey,
    pub oi: u32,
}

/// Code 7: header only; its meaning is undocumented, so the raw header fields are kept.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MarketStatus {
    pub segment: u8,
    pub security_id: u32,
}

/// One price rank of the 5-level book: both sides.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DepthLevel {
    pub bid_qty: u32,
    pub ask_qty: u32,
    pub bid_orders: u16,
    pub ask_orders: u16,
    pub bid_price: Paise,
    pub ask_price: Paise,
}

/// Code 8: quote fields, open interest and 5-level depth (best level first).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Full {
    pub instrument: InstrumentKey,
    pub ltp: Paise,
    pub ltq: u16,
    pub ltt: u32,
    pub exchange_time: Timestamp,
    pub atp: Paise,
    pub volume: u32,
    pub total_sell_qty: u32,
    pub total_buy_qty: u32,
    pub oi: u32,
    pub oi_day_high: u32,
    pub oi_day_low: u32,
    pub open: Paise,
    /// Previous session's close (see [`Quote::close`]).
    pub close: Paise,
    pub high: Paise,
    pub low: Paise,
    pub depth: [DepthLevel; 5],
}

/// Why the server ended the feed (code-50 payload, spec §1.8).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    InternalError,
    InstrumentLimit,
    TooManyConnections,
    DataApiNotSubscribed,
    TokenExpired,
    AuthenticationFailed,
    TokenInvalid,
    ClientIdInvalid,
    Other(u16),
}

impl DisconnectReason {
    pub const fn from_code(code: u16) -> DisconnectReason {
        match code {
            800 => DisconnectReason::InternalError,
            804 => DisconnectReason::InstrumentLimit,
            805 => DisconnectReason::TooManyConnections,
            806 => DisconnectReason::DataApiNotSubscribed,
            807 => DisconnectReason::TokenExpired,
            808 => DisconnectReason::AuthenticationFailed,
            809 => DisconnectReason::TokenInvalid,
            810 => DisconnectReason::ClientIdInvalid,
            other => DisconnectReason::Other(other),
        }
    }

    pub const fn code(self) -> u16 {
        match self {
            DisconnectReason::InternalError => 800,
            DisconnectReason::InstrumentLimit => 804,
            DisconnectReason::TooManyConnections => 805,
            DisconnectReason::DataApiNotSubscribed => 806,
            DisconnectReason::TokenExpired => 807,
            DisconnectReason::AuthenticationFailed => 808,
            DisconnectReason::TokenInvalid => 809,
            DisconnectReason::ClientIdInvalid => 810,
            DisconnectReason::Other(code) => code,
        }
    }

    /// The annexure's wording (spec §1.8), for logs and health.
    pub const fn description(self) -> &'static str {
        match self {
            DisconnectReason::InternalError => "internal server error",
            DisconnectReason::InstrumentLimit => "requested number of instruments exceeds limit",
            DisconnectReason::TooManyConnections => "too many requests or connections",
            DisconnectReason::DataApiNotSubscribed => "data APIs not subscribed",
            DisconnectReason::TokenExpired => "access token expired",
            DisconnectReason::AuthenticationFailed => {
                "authentication failed: client id or access token invalid"
            }
            DisconnectReason::TokenInvalid => "access token invalid",
            DisconnectReason::ClientIdInvalid => "client id invalid",
            DisconnectReason::Other(_) => "undocumented reason",
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.description())
    }
}

/// Code 50: the server is about to close the socket.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    pub reason: DisconnectReason,
}

/// A packet with a code this codec does not know (e.g. 1 "index", 0 "heartbeat"), skipped by
/// its length field. Only the header is kept.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Unknown {
    pub code: u8,
    pub len: u16,
    pub segment: u8,
    pub security_id: u32,
}

/// One decoded feed packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    Ticker(Ticker),
    Quote(Quote),
    Oi(Oi),
    PrevClose(PrevClose),
    MarketStatus(MarketStatus),
    Full(Full),
    Disconnect(Disconnect),
    Unknown(Unknown),
}

impl Packet {
    pub fn kind(&self) -> Option<PacketKind> {
        Some(match self {
            Packet::Ticker(_) => PacketKind::Ticker,
            Packet::Quote(_) => PacketKind::Quote,
            Packet::Oi(_) => PacketKind::Oi,
            Packet::PrevClose(_) => PacketKind::PrevClose,
            Packet::MarketStatus(_) => PacketKind::MarketStatus,
            Packet::Full(_) => PacketKind::Full,
            Packet::Disconnect(_) => PacketKind::Disconnect,
            Packet::Unknown(_) => return None,
        })
    }

    /// The instrument this packet is about, if any.
    pub fn instrument(&self) -> Option<InstrumentKey> {
        match self {
            Packet::Ticker(p) => Some(p.instrument),
            Packet::Quote(p) => Some(p.instrument),
            Packet::Oi(p) => Some(p.instrument),
            Packet::PrevClose(p) => Some(p.instrument),
            Packet::Full(p) => Some(p.instrument),
            Packet::MarketStatus(_) | Packet::Disconnect(_) | Packet::Unknown(_) => None,
        }
    }

    /// Last traded price with its exchange time, for the packets that carry one.
    pub fn last_trade(&self) -> Option<(InstrumentKey, Paise, Timestamp)> {
        match self {
            Packet::Ticker(p) => Some((p.instrument, p.ltp, p.exchange_time)),
            Packet::Quote(p) => Some((p.instrument, p.ltp, p.exchange_time)),
            Packet::Full(p) => Some((p.instrument, p.ltp, p.exchange_time)),
            _ => None,
        }
    }

    /// Total encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        match (self.kind(), self) {
            (Some(kind), _) => kind.fixed_len(),
            (None, Packet::Unknown(u)) => usize::from(u.len).max(HEADER_LEN),
            (None, _) => HEADER_LEN,
        }
    }
}

/// Why a packet could not be decoded. Always paired with the packet's byte offset in a
/// [`DecodeError`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("only {available} bytes left, a packet header needs 8")]
    TruncatedHeader { available: usize },
    #[error("{kind} packet truncated: needs {needed} bytes, {available} left")]
    Truncated { kind: PacketKind, needed: usize, available: usize },
    #[error("{kind} packet (code {code}) declares length {declared}, its fixed size is {expected}", code = kind.code())]
    LengthMismatch { kind: PacketKind, declared: u16, expected: usize },
    #[error("packet code {code} declares length {declared}, less than its 8-byte header")]
    LengthTooShort { code: u8, declared: u16 },
    #[error("packet code {code} declares length {declared}, but only {available} bytes are left")]
    LengthBeyondEnd { code: u8, declared: u16, available: usize },
    #[error("{kind} packet has unknown exchange segment code {segment}")]
    UnknownSegment { kind: PacketKind, segment: u8 },
    #[error("{kind} packet field {field} is {value}, not a finite non-negative price", value = f32::from_bits(*bits))]
    BadPrice { kind: PacketKind, field: &'static str, bits: u32 },
}

/// A malformed packet and where it starts (byte offset within the message or file).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed feed packet at byte offset {offset}: {reason}")]
pub struct DecodeError {
    pub offset: usize,
    pub reason: Malformed,
}

#[inline]
fn u16_at<const N: usize>(b: &[u8; N], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

#[inline]
fn u32_at<const N: usize>(b: &[u8; N], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn price_at<const N: usize>(
    b: &[u8; N],
    at: usize,
    kind: PacketKind,
    field: &'static str,
) -> Result<Paise, Malformed> {
    let bits = u32_at(b, at);
    Paise::from_rupees_f32(f32::from_bits(bits)).map_err(|_| Malformed::BadPrice {
        kind,
        field,
        bits,
    })
}

/// Decodes the packet that starts at `bytes[0]`. `bytes` may extend past the packet. The
/// header's length must equal the fixed size of a known code; an unknown code is returned as
/// [`Packet::Unknown`] when its length is plausible (≥ 8 and within `bytes`).
pub fn decode_packet(bytes: &[u8]) -> Result<Packet, Malformed> {
    let header =
        Header::read(bytes).ok_or(Malformed::TruncatedHeader { available: bytes.len() })?;
    let Some(kind) = PacketKind::from_code(header.code) else {
        let declared = header.len;
        if usize::from(declared) < HEADER_LEN {
            return Err(Malformed::LengthTooShort { code: header.code, declared });
        }
        if usize::from(declared) > bytes.len() {
            return Err(Malformed::LengthBeyondEnd {
                code: header.code,
                declared,
                available: bytes.len(),
            });
        }
        return Ok(Packet::Unknown(Unknown {
            code: header.code,
            len: declared,
            segment: header.segment,
            security_id: header.security_id,
        }));
    };
    let expected = kind.fixed_len();
    if usize::from(header.len) != expected {
        return Err(Malformed::LengthMismatch { kind, declared: header.len, expected });
    }
    if bytes.len() < expected {
        return Err(Malformed::Truncated { kind, needed: expected, available: bytes.len() });
    }
    let instrument = || {
        Segment::from_code(header.segment)
            .map(|segment| InstrumentKey::new(segment, header.security_id))
            .ok_or(Malformed::UnknownSegment { kind, segment: header.segment })
    };
    match kind {
        PacketKind::Ticker => decode_ticker(chunk(bytes)?, instrument()?).map(Packet::Ticker),
        PacketKind::PrevClose => {
            decode_prev_close(chunk(bytes)?, instrument()?).map(Packet::PrevClose)
        }
        PacketKind::Quote => decode_quote(chunk(bytes)?, instrument()?).map(Packet::Quote),
        PacketKind::Oi => {
            let b: &[u8; 12] = chunk(bytes)?;
            Ok(Packet::Oi(Oi { instrument: instrument()?, oi: u32_at(b, 8) }))
        }
        PacketKind::MarketStatus => Ok(Packet::MarketStatus(MarketStatus {
            segment: header.segment,
            security_id: header.security_id,
        })),
        PacketKind::Full => decode_full(chunk(bytes)?, instrument()?).map(Packet::Full),
        PacketKind::Disconnect => {
            let b: &[u8; 10] = chunk(bytes)?;
            let reason = DisconnectReason::from_code(u16_at(b, 8));
            Ok(Packet::Disconnect(Disconnect { reason }))
        }
    }
}

/// The first `N` bytes as an array; the caller has already checked the length, so the error
/// arm is unreachable in practice but keeps this function total.
#[inline]
fn chunk<const N: usize>(bytes: &[u8]) -> Result<&[u8; N], Malformed> {
    bytes.first_chunk::<N>().ok_or(Malformed::TruncatedHeader { available: bytes.len() })
}

fn decode_ticker(b: &[u8; 16], instrument: InstrumentKey) -> Result<Ticker, Malformed> {
    let ltp = price_at(b, 8, PacketKind::Ticker, "ltp")?;
    Ok(Ticker::new(instrument, ltp, u32_at(b, 12)))
}

fn decode_prev_close(b: &[u8; 16], instrument: InstrumentKey) -> Result<PrevClose, Malformed> {
    let prev_close = price_at(b, 8, PacketKind::PrevClose, "prev_close")?;
    Ok(PrevClose { instrument, prev_close, prev_oi: u32_at(b, 12) })
}

fn decode_quote(b: &[u8; 50], instrument: InstrumentKey) -> Result<Quote, Malformed> {
    const K: PacketKind = PacketKind::Quote;
    let ltt = u32_at(b, 14);
    Ok(Quote {
        instrument,
        ltp: price_at(b, 8, K, "ltp")?,
        ltq: u16_at(b, 12),
        ltt,
        exchange_time: Timestamp::from_feed_ltt(ltt),
        atp: price_at(b, 18, K, "atp")?,
        volume: u32_at(b, 22),
        total_sell_qty: u32_at(b, 26),
        total_buy_qty: u32_at(b, 30),
        open: price_at(b, 34, K, "open")?,
        close: price_at(b, 38, K, "close")?,
        high: price_at(b, 42, K, "high")?,
        low: price_at(b, 46, K, "low")?,
    })
}

const DEPTH_FIELDS: [(&str, &str); 5] = [
    ("depth[0].bid_price", "depth[0].ask_price"),
    ("depth[1].bid_price", "depth[1].ask_price"),
    ("depth[2].bid_price", "depth[2].ask_price"),
    ("depth[3].bid_price", "depth[3].ask_price"),
    ("depth[4].bid_price", "depth[4].ask_price"),
];

fn decode_full(b: &[u8; 162], instrument: InstrumentKey) -> Result<Full, Malformed> {
    const K: PacketKind = PacketKind::Full;
    let ltt = u32_at(b, 14);
    let mut depth = [DepthLevel::default(); 5];
    for (i, level) in depth.iter_mut().enumerate() {
        let at = 62 + 20 * i;
        let (bid_field, ask_field) = DEPTH_FIELDS[i];
        *level = DepthLevel {
            bid_qty: u32_at(b, at),
            ask_qty: u32_at(b, at + 4),
            bid_orders: u16_at(b, at + 8),
            ask_orders: u16_at(b, at + 10),
            bid_price: price_at(b, at + 12, K, bid_field)?,
            ask_price: price_at(b, at + 16, K, ask_field)?,
        };
    }
    Ok(Full {
        instrument,
        ltp: price_at(b, 8, K, "ltp")?,
        ltq: u16_at(b, 12),
        ltt,
        exchange_time: Timestamp::from_feed_ltt(ltt),
        atp: price_at(b, 18, K, "atp")?,
        volume: u32_at(b, 22),
        total_sell_qty: u32_at(b, 26),
        total_buy_qty: u32_at(b, 30),
        oi: u32_at(b, 34),
        oi_day_high: u32_at(b, 38),
        oi_day_low: u32_at(b, 42),
        open: price_at(b, 46, K, "open")?,
        close: price_at(b, 50, K, "close")?,
        high: price_at(b, 54, K, "high")?,
        low: price_at(b, 58, K, "low")?,
        depth,
    })
}

#[cfg(test)]
pub(crate) mod tests;
