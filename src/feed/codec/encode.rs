//! Writing packets: the exact inverse of decoding, used by the simulator and the tests.

use super::{HEADER_LEN, Header, Packet, PacketKind};
use crate::domain::{InstrumentKey, Paise};

/// Paise back to f32 rupees for the wire. Exact round trip (encode → decode gives the same
/// paise) for prices below ₹131072, where adjacent f32 values are less than half a paisa apart;
/// that covers every Indian option and index price.
#[inline]
pub fn rupees_f32(price: Paise) -> f32 {
    (price.0 as f64 / 100.0) as f32
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_price(out: &mut Vec<u8>, p: Paise) {
    out.extend_from_slice(&rupees_f32(p).to_le_bytes());
}

fn header_for(kind: PacketKind, instrument: InstrumentKey) -> Header {
    Header {
        code: kind.code(),
        len: kind.fixed_len() as u16,
        segment: instrument.segment.code(),
        security_id: instrument.security_id.0,
    }
}

/// Appends the wire bytes of `packet` to `out`. An [`Unknown`] packet is written as its header
/// followed by zeros up to its declared length (a declared length below 8 writes the header
/// alone, which is a deliberately malformed packet).
pub fn encode(packet: &Packet, out: &mut Vec<u8>) {
    match packet {
        Packet::Ticker(p) => {
            header_for(PacketKind::Ticker, p.instrument).write(out);
            put_price(out, p.ltp);
            put_u32(out, p.ltt);
        }
        Packet::PrevClose(p) => {
            header_for(PacketKind::PrevClose, p.instrument).write(out);
            put_price(out, p.prev_close);
            put_u32(out, p.prev_oi);
        }
        Packet::Quote(p) => {
            header_for(PacketKind::Quote, p.instrument).write(out);
            put_price(out, p.ltp);
            put_u16(out, p.ltq);
            put_u32(out, p.ltt);
            put_price(out, p.atp);
            put_u32(out, p.volume);
            put_u32(out, p.total_sell_qty);
            put_u32(out, p.total_buy_qty);
            for price in [p.open, p.close, p.high, p.low] {
                put_price(out, price);
            }
        }
        Packet::Oi(p) => {
            header_for(PacketKind::Oi, p.instrument).write(out);
            put_u32(out, p.oi);
        }
        Packet::MarketStatus(p) => {
            Header { code: 7, len: 8, segment: p.segment, security_id: p.security_id }.write(out)
        }
        Packet::Full(p) => {
            header_for(PacketKind::Full, p.instrument).write(out);
            put_price(out, p.ltp);
            put_u16(out, p.ltq);
            put_u32(out, p.ltt);
            put_price(out, p.atp);
            for v in
                [p.volume, p.total_sell_qty, p.total_buy_qty, p.oi, p.oi_day_high, p.oi_day_low]
            {
                put_u32(out, v);
            }
            for price in [p.open, p.close, p.high, p.low] {
                put_price(out, price);
            }
            for level in &p.depth {
                put_u32(out, level.bid_qty);
                put_u32(out, level.ask_qty);
                put_u16(out, level.bid_orders);
                put_u16(out, level.ask_orders);
                put_price(out, level.bid_price);
                put_price(out, level.ask_price);
            }
        }
        Packet::Disconnect(p) => {
            Header { code: 50, len: 10, segment: 0, security_id: 0 }.write(out);
            put_u16(out, p.reason.code());
        }
        Packet::Unknown(u) => {
            Header { code: u.code, len: u.len, segment: u.segment, security_id: u.security_id }
                .write(out);
            let body = usize::from(u.len).saturating_sub(HEADER_LEN);
            out.resize(out.len() + body, 0);
        }
    }
}

/// The wire bytes of one packet in a fresh buffer.
pub fn encode_to_vec(packet: &Packet) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.encoded_len());
    encode(packet, &mut out);
    out
}
