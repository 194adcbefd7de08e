//! Unit tests of the packet codec: the spec §1.10 vectors, every error with its reason, and
//! encode → decode identity.

use proptest::prelude::*;

use super::*;
use crate::domain::{InstrumentKey, Paise, Segment, Timestamp};
use crate::feed::vectors;

const LTT: u32 = 1_763_980_215;
const FNO_52175: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);

fn decode(bytes: &[u8]) -> Packet {
    match decode_packet(bytes) {
        Ok(p) => p,
        Err(e) => panic!("vector must decode: {e}"),
    }
}

#[test]
fn ticker_vector_decodes_to_spec_values() {
    let Packet::Ticker(t) = decode(&vectors::TICKER) else { panic!("not a ticker") };
    assert_eq!(t.instrument, FNO_52175);
    assert_eq!(t.ltp, Paise(12345));
    assert_eq!(t.ltt, LTT);
    assert_eq!(t.exchange_time, Timestamp::from_millis(1_763_960_415_000));
    assert_eq!(t.exchange_time.to_ist_iso(), "2025-11-24T10:30:15.000+05:30");
}

#[test]
fn prev_close_vector_decodes_to_spec_values() {
    let Packet::PrevClose(p) = decode(&vectors::PREV_CLOSE) else { panic!("not prev close") };
    assert_eq!(p.instrument, InstrumentKey::new(Segment::IdxI, 13));
    assert_eq!(p.prev_close, Paise(2_591_005));
    assert_eq!(p.prev_oi, 0);
}

#[test]
fn quote_vector_decodes_to_spec_values() {
    let Packet::Quote(q) = decode(&vectors::QUOTE) else { panic!("not a quote") };
    assert_eq!(q.instrument, InstrumentKey::new(Segment::NseEq, 1333));
    assert_eq!(q.ltp, Paise(100_050));
    assert_eq!(q.ltq, 25);
    assert_eq!(q.ltt, LTT);
    assert_eq!(q.exchange_time, Timestamp::from_feed_ltt(LTT));
    assert_eq!(q.atp, Paise(99_875));
    assert_eq!(q.volume, 1_234_567);
    assert_eq!(q.total_sell_qty, 250_000);
    assert_eq!(q.total_buy_qty, 310_000);
    assert_eq!(
        (q.open, q.close, q.high, q.low),
        (Paise(99_500), Paise(99_025), Paise(100_400), Paise(99_250))
    );
}

#[test]
fn oi_vector_decodes_to_spec_values() {
    assert_eq!(decode(&vectors::OI), Packet::Oi(Oi { instrument: FNO_52175, oi: 1_234_500 }));
}

#[test]
fn market_status_vector_is_header_only() {
    assert_eq!(
        decode(&vectors::MARKET_STATUS),
        Packet::MarketStatus(MarketStatus { segment: 0, security_id: 0 })
    );
}

#[test]
fn disconnect_vectors_carry_their_reason_codes() {
    assert_eq!(
        decode(&vectors::DISCONNECT_805),
        Packet::Disconnect(Disconnect { reason: DisconnectReason::TooManyConnections })
    );
    assert_eq!(
        decode(&vectors::DISCONNECT_807),
        Packet::Disconnect(Disconnect { reason: DisconnectReason::TokenExpired })
    );
}

#[test]
fn full_vector_decodes_every_field_and_five_depth_levels() {
    let Packet::Full(f) = decode(&vectors::FULL) else { panic!("not a full packet") };
    assert_eq!(f.instrument, FNO_52175);
    assert_eq!(f.ltp, Paise(12345));
    assert_eq!(f.ltq, 75);
    assert_eq!(f.ltt, LTT);
    assert_eq!(f.exchange_time, Timestamp::from_feed_ltt(LTT));
    assert_eq!(f.atp, Paise(12180));
    assert_eq!(f.volume, 9_876_525);
    assert_eq!(f.total_sell_qty, 412_500);
    assert_eq!(f.total_buy_qty, 388_725);
    assert_eq!(f.oi, 1_234_500);
    assert_eq!(f.oi_day_high, 1_300_050);
    assert_eq!(f.oi_day_low, 1_150_275);
    assert_eq!(
        (f.open, f.close, f.high, f.low),
        (Paise(11000), Paise(11860), Paise(13125), Paise(10505))
    );
    // (bid price, bid qty, bid orders, ask price, ask qty, ask orders), best level first.
    let expected = [
        (12340, 750, 4, 12350, 525, 3),
        (12335, 1500, 9, 12355, 1125, 7),
        (12330, 225, 2, 12360, 2250, 11),
        (12325, 3000, 15, 12365, 300, 1),
        (12320, 600, 5, 12370, 4500, 19),
    ];
    for (level, (bp, bq, bo, ap, aq, ao)) in f.depth.iter().zip(expected) {
        assert_eq!(
            *level,
            DepthLevel {
                bid_qty: bq,
                ask_qty: aq,
                bid_orders: bo,
                ask_orders: ao,
                bid_price: Paise(bp),
                ask_price: Paise(ap),
            }
        );
    }
}

#[test]
fn every_vector_re_encodes_to_its_exact_bytes() {
    let all: [&[u8]; 8] = [
        &vectors::TICKER,
        &vectors::PREV_CLOSE,
        &vectors::QUOTE,
        &vectors::OI,
        &vectors::MARKET_STATUS,
        &vectors::DISCONNECT_805,
        &vectors::DISCONNECT_807,
        &vectors::FULL,
    ];
    for bytes in all {
        let packet = decode(bytes);
        assert_eq!(encode_to_vec(&packet), bytes, "{packet:?}");
        assert_eq!(packet.encoded_len(), bytes.len());
    }
}

#[test]
fn unknown_code_is_kept_as_a_header_and_its_length() {
    let mut bytes = vec![1, 20, 0, 0, 13, 0, 0, 0];
    bytes.resize(20, 0xAA);
    assert_eq!(
        decode_packet(&bytes),
        Ok(Packet::Unknown(Unknown { code: 1, len: 20, segment: 0, security_id: 13 }))
    );
}

fn with_byte(mut bytes: Vec<u8>, at: usize, value: u8) -> Vec<u8> {
    bytes[at] = value;
    bytes
}

fn with_f32(mut bytes: Vec<u8>, at: usize, value: f32) -> Vec<u8> {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    bytes
}

#[test]
fn malformed_packets_are_errors_with_their_reason() {
    let ticker = vectors::TICKER.to_vec();
    let full = vectors::FULL.to_vec();
    let cases: Vec<(&str, Vec<u8>, Malformed)> = vec![
        ("header_cut_short", ticker[..5].to_vec(), Malformed::TruncatedHeader { available: 5 }),
        (
            "ticker_cut_short",
            ticker[..15].to_vec(),
            Malformed::Truncated { kind: PacketKind::Ticker, needed: 16, available: 15 },
        ),
        (
            "ticker_length_17",
            with_byte(ticker.clone(), 1, 17),
            Malformed::LengthMismatch { kind: PacketKind::Ticker, declared: 17, expected: 16 },
        ),
        (
            "full_length_zero",
            with_byte(full.clone(), 1, 0),
            Malformed::LengthMismatch { kind: PacketKind::Full, declared: 0, expected: 162 },
        ),
        (
            "segment_6_is_unused",
            with_byte(ticker.clone(), 3, 6),
            Malformed::UnknownSegment { kind: PacketKind::Ticker, segment: 6 },
        ),
        (
            "segment_9_is_unknown",
            with_byte(vectors::OI.to_vec(), 3, 9),
            Malformed::UnknownSegment { kind: PacketKind::Oi, segment: 9 },
        ),
        (
            "nan_ltp",
            with_f32(ticker.clone(), 8, f32::NAN),
            Malformed::BadPrice {
                kind: PacketKind::Ticker,
                field: "ltp",
                bits: f32::NAN.to_bits(),
            },
        ),
        (
            "infinite_ltp",
            with_f32(ticker.clone(), 8, f32::INFINITY),
            Malformed::BadPrice {
                kind: PacketKind::Ticker,
                field: "ltp",
                bits: f32::INFINITY.to_bits(),
            },
        ),
        (
            "negative_ltp",
            with_f32(ticker.clone(), 8, -1.5),
            Malformed::BadPrice {
                kind: PacketKind::Ticker,
                field: "ltp",
                bits: (-1.5f32).to_bits(),
            },
        ),
        (
            "negative_quote_low",
            with_f32(vectors::QUOTE.to_vec(), 46, -0.05),
            Malformed::BadPrice {
                kind: PacketKind::Quote,
                field: "low",
                bits: (-0.05f32).to_bits(),
            },
        ),
        (
            "nan_in_depth_level_3_ask",
            with_f32(full.clone(), 62 + 20 * 3 + 16, f32::NAN),
            Malformed::BadPrice {
                kind: PacketKind::Full,
                field: "depth[3].ask_price",
                bits: f32::NAN.to_bits(),
            },
        ),
        (
            "unknown_code_length_below_header",
            vec![1, 4, 0, 0, 0, 0, 0, 0],
            Malformed::LengthTooShort { code: 1, declared: 4 },
        ),
        (
            "unknown_code_length_beyond_end",
            vec![1, 40, 0, 0, 0, 0, 0, 0, 0, 0],
            Malformed::LengthBeyondEnd { code: 1, declared: 40, available: 10 },
        ),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(decode_packet(&bytes), Err(expected), "{name}");
    }
}

#[test]
fn negative_zero_price_is_zero_paise() {
    let Packet::Ticker(t) = decode(&with_f32(vectors::TICKER.to_vec(), 8, -0.0)) else {
        panic!("not a ticker")
    };
    assert_eq!(t.ltp, Paise(0));
}

#[test]
fn error_messages_name_offset_kind_and_field() {
    let e = DecodeError {
        offset: 44,
        reason: Malformed::BadPrice {
            kind: PacketKind::Quote,
            field: "atp",
            bits: f32::NAN.to_bits(),
        },
    };
    assert_eq!(
        e.to_string(),
        "malformed feed packet at byte offset 44: quote packet field atp is NaN, not a finite \
         non-negative price"
    );
    let e = Malformed::LengthMismatch { kind: PacketKind::Ticker, declared: 17, expected: 16 };
    assert_eq!(e.to_string(), "ticker packet (code 2) declares length 17, its fixed size is 16");
}

#[test]
fn disconnect_reason_codes_round_trip() {
    for code in [800, 804, 805, 806, 807, 808, 809, 810, 811, 0, 65535] {
        assert_eq!(DisconnectReason::from_code(code).code(), code);
    }
    assert_eq!(DisconnectReason::from_code(808), DisconnectReason::AuthenticationFailed);
    assert_eq!(DisconnectReason::from_code(809), DisconnectReason::TokenInvalid);
}

// ---- properties -------------------------------------------------------------------------

/// Prices below ₹131071 survive the f32 wire exactly (see `rupees_f32`).
fn price() -> impl Strategy<Value = Paise> {
    (0i64..13_107_100).prop_map(Paise)
}

fn instrument() -> impl Strategy<Value = InstrumentKey> {
    (0..Segment::ALL.len(), any::<u32>())
        .prop_map(|(i, id)| InstrumentKey::new(Segment::ALL[i], id))
}

fn depth_level() -> impl Strategy<Value = DepthLevel> {
    (any::<u32>(), any::<u32>(), any::<u16>(), any::<u16>(), price(), price()).prop_map(
        |(bid_qty, ask_qty, bid_orders, ask_orders, bid_price, ask_price)| DepthLevel {
            bid_qty,
            ask_qty,
            bid_orders,
            ask_orders,
            bid_price,
            ask_price,
        },
    )
}

fn quote() -> impl Strategy<Value = Quote> {
    (
        instrument(),
        (price(), price(), price(), price(), price(), price()),
        any::<u16>(),
        any::<u32>(),
        (any::<u32>(), any::<u32>(), any::<u32>()),
    )
        .prop_map(|(instrument, (ltp, atp, open, close, high, low), ltq, ltt, (v, s, b))| {
            Quote {
                instrument,
                ltp,
                ltq,
                ltt,
                exchange_time: Timestamp::from_feed_ltt(ltt),
                atp,
                volume: v,
                total_sell_qty: s,
                total_buy_qty: b,
                open,
                close,
                high,
                low,
            }
        })
}

fn full() -> impl Strategy<Value = Full> {
    (quote(), (any::<u32>(), any::<u32>(), any::<u32>()), prop::array::uniform5(depth_level()))
        .prop_map(|(q, (oi, oi_day_high, oi_day_low), depth)| Full {
            instrument: q.instrument,
            ltp: q.ltp,
            ltq: q.ltq,
            ltt: q.ltt,
            exchange_time: q.exchange_time,
            atp: q.atp,
            volume: q.volume,
            total_sell_qty: q.total_sell_qty,
            total_buy_qty: q.total_buy_qty,
            oi,
            oi_day_high,
            oi_day_low,
            open: q.open,
            close: q.close,
            high: q.high,
            low: q.low,
            depth,
        })
}

pub(crate) fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        (instrument(), price(), any::<u32>())
            .prop_map(|(i, ltp, ltt)| Packet::Ticker(Ticker::new(i, ltp, ltt))),
        quote().prop_map(Packet::Quote),
        (instrument(), any::<u32>()).prop_map(|(instrument, oi)| Packet::Oi(Oi { instrument, oi })),
        (instrument(), price(), any::<u32>()).prop_map(|(instrument, prev_close, prev_oi)| {
            Packet::PrevClose(PrevClose { instrument, prev_close, prev_oi })
        }),
        (any::<u8>(), any::<u32>()).prop_map(|(segment, security_id)| {
            Packet::MarketStatus(MarketStatus { segment, security_id })
        }),
        full().prop_map(Packet::Full),
        any::<u16>().prop_map(|c| Packet::Disconnect(Disconnect {
            reason: DisconnectReason::from_code(c)
        })),
        (any::<u8>(), 8u16..400, any::<u8>(), any::<u32>())
            .prop_filter("unknown codes only", |(c, ..)| PacketKind::from_code(*c).is_none())
            .prop_map(|(code, len, segment, security_id)| Packet::Unknown(Unknown {
                code,
                len,
                segment,
                security_id
            })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn encode_then_decode_is_the_identity(p in packet()) {
        let bytes = encode_to_vec(&p);
        prop_assert_eq!(bytes.len(), p.encoded_len());
        prop_assert_eq!(decode_packet(&bytes), Ok(p));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn arbitrary_bytes_never_panic_the_packet_decoder(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_packet(&bytes);
    }
}

// ---- structurally valid headers, random bodies ------------------------------------------
//
// Arbitrary bytes almost never pass the header check (a known code with its exact length and a
// known segment), so the field decoding behind it is exercised here with headers that are
// right and bodies that are not: random bytes, or a valid packet with a few bytes overwritten.

/// A known packet kind's header (exact length, known segment), or an unknown code with a
/// consistent length.
fn valid_header() -> impl Strategy<Value = Header> {
    let known = (0..PacketKind::ALL.len(), 0..Segment::ALL.len(), any::<u32>()).prop_map(
        |(k, s, security_id)| {
            let kind = PacketKind::ALL[k];
            Header {
                code: kind.code(),
                len: kind.fixed_len() as u16,
                segment: Segment::ALL[s].code(),
                security_id,
            }
        },
    );
    let unknown = (any::<u8>(), 8u16..300, any::<u8>(), any::<u32>())
        .prop_filter("unknown codes only", |(c, ..)| PacketKind::from_code(*c).is_none())
        .prop_map(|(code, len, segment, security_id)| Header { code, len, segment, security_id });
    prop_oneof![4 => known, 1 => unknown]
}

/// One packet's bytes with a valid header: a random body, or a valid packet's body with up to
/// eight bytes overwritten (so that most fields decode and a few are wild).
fn framed_packet() -> impl Strategy<Value = Vec<u8>> {
    let random_body =
        (valid_header(), prop::collection::vec(any::<u8>(), 300)).prop_map(|(h, body)| {
            let mut out = Vec::new();
            h.write(&mut out);
            out.extend_from_slice(&body[..usize::from(h.len) - HEADER_LEN]);
            out
        });
    let mutated = (packet(), prop::collection::vec((any::<usize>(), any::<u8>()), 0..8)).prop_map(
        |(p, edits)| {
            let mut bytes = encode_to_vec(&p);
            let body = bytes.len() - HEADER_LEN;
            for (at, value) in edits {
                if body > 0 {
                    bytes[HEADER_LEN + at % body] = value;
                }
            }
            bytes
        },
    );
    prop_oneof![random_body, mutated]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn a_valid_header_with_a_random_body_decodes_or_reports_a_bad_price(bytes in framed_packet()) {
        let header = Header::read(&bytes).unwrap();
        match decode_packet(&bytes) {
            Ok(p) => {
                prop_assert_eq!(p.encoded_len(), bytes.len());
                prop_assert_eq!(p.kind().map(PacketKind::code).unwrap_or(header.code), header.code);
                let _ = p.last_trade().map(|(_, _, at)| at.to_ist_iso());
            }
            Err(Malformed::BadPrice { kind, .. }) => prop_assert_eq!(kind.code(), header.code),
            Err(other) => prop_assert!(false, "a valid header failed with {other}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn stacked_packets_with_random_bodies_split_at_their_boundaries(
        packets in prop::collection::vec(framed_packet(), 0..10)
    ) {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for p in &packets {
            starts.push(bytes.len());
            bytes.extend_from_slice(p);
        }
        let got: Vec<usize> = crate::feed::Packets::new(&bytes)
            .map(|item| match item {
                Ok(f) => f.offset,
                Err(e) => e.offset,
            })
            .collect();
        prop_assert_eq!(got, starts);
    }
}
