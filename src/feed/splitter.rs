//! Cuts a WebSocket message (or a file of raw feed bytes) into packets by the header's length
//! field (total length, header included; spec §1.4) and decodes each with `codec`. One message
//! may hold several packets back to back.
//!
//! How it resumes after a bad packet at offset `o` (the "next plausible packet" rule, shared by
//! the tick reader and `scalper decode`):
//!
//! 1. The framing was right but the content was not (unknown segment, NaN / infinite / negative
//!    price): skip the packet by its length, which equals its code's fixed size.
//! 2. A known code whose length field disagrees with its fixed size: try `o + length` (if the
//!    length is at least 8 and within the bytes), then `o + fixed size`; take the first that
//!    lands exactly on the end of the bytes or on a *plausible header*. A plausible header is a
//!    known code with its exact fixed length and, for packets about an instrument, a known
//!    segment. If neither does, scan forward byte by byte from `o + 1` for a plausible header.
//! 3. An unknown code is skipped by its length when that length is at least 8 and within the
//!    bytes (it is reported as [`Packet::Unknown`], not as an error); otherwise it is an error
//!    and the splitter scans forward from `o + 1` as in 2.
//! 4. A known packet cut short by the end of the bytes, or fewer than 8 bytes left: an error,
//!    and the rest of the bytes are consumed.
//!
//! Each bad region yields exactly one error, carrying the offset of the packet that started it.
//! A scan that finds no plausible header consumes the rest of the bytes. Random bytes match a
//! plausible header with odds of about 1 in 2.4 million per position, so a resync rarely locks
//! onto garbage. Never panics and never indexes out of bounds.

use super::codec::{DecodeError, HEADER_LEN, Header, Malformed, Packet, PacketKind, decode_packet};
use crate::domain::Segment;

/// A decoded packet and where it starts.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Framed {
    /// Byte offset of the packet's first byte within the message or file (plus the base
    /// offset given to [`Packets::with_base_offset`]).
    pub offset: usize,
    /// Bytes the packet occupies.
    pub len: usize,
    pub packet: Packet,
}

/// Iterator over the packets of one message: `Ok(Framed)` per packet, `Err(DecodeError)` per
/// malformed region (see the module doc for where it resumes).
#[derive(Clone, Debug)]
pub struct Packets<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Packets<'a> {
    pub fn new(bytes: &'a [u8]) -> Packets<'a> {
        Packets { bytes, pos: 0, base: 0 }
    }

    /// Offsets in items and errors are reported as `base + position in bytes` (for a chunk cut
    /// from a larger file).
    pub fn with_base_offset(bytes: &'a [u8], base: usize) -> Packets<'a> {
        Packets { bytes, pos: 0, base }
    }

    /// Position of the next packet to read, within `bytes`.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for Packets<'_> {
    type Item = Result<Framed, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.pos..).filter(|r| !r.is_empty())?;
        let offset = self.base + self.pos;
        match decode_packet(rest) {
            Ok(packet) => {
                let len = packet.encoded_len();
                self.pos += len;
                Some(Ok(Framed { offset, len, packet }))
            }
            Err(reason) => {
                self.pos += resume_after(rest, &reason);
                Some(Err(DecodeError { offset, reason }))
            }
        }
    }
}

/// How many bytes of `rest` to skip after `reason` was found at its start (always ≥ 1, so the
/// iterator always progresses).
fn resume_after(rest: &[u8], reason: &Malformed) -> usize {
    match *reason {
        Malformed::UnknownSegment { kind, .. } | Malformed::BadPrice { kind, .. } => {
            kind.fixed_len()
        }
        Malformed::LengthMismatch { kind, declared, .. } => {
            let declared = usize::from(declared);
            let candidates = [(declared >= HEADER_LEN).then_some(declared), Some(kind.fixed_len())];
            candidates
                .into_iter()
                .flatten()
                .find(|&c| c == rest.len() || (c < rest.len() && plausible_header(&rest[c..])))
                .unwrap_or_else(|| scan_for_header(rest))
        }
        Malformed::LengthTooShort { .. } | Malformed::LengthBeyondEnd { .. } => {
            scan_for_header(rest)
        }
        Malformed::TruncatedHeader { .. } | Malformed::Truncated { .. } => rest.len(),
    }
}

/// The first position after 0 where a plausible header starts, or the end.
fn scan_for_header(rest: &[u8]) -> usize {
    (1..rest.len()).find(|&p| plausible_header(&rest[p..])).unwrap_or(rest.len())
}

/// A known code with its exact fixed length and, for instrument packets, a known segment.
pub(crate) fn plausible_header(bytes: &[u8]) -> bool {
    let Some(h) = Header::read(bytes) else { return false };
    let Some(kind) = PacketKind::from_code(h.code) else { return false };
    usize::from(h.len) == kind.fixed_len()
        && (!kind.has_instrument() || Segment::from_code(h.segment).is_some())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{InstrumentKey, Paise, Segment};
    use crate::feed::codec::{Oi, Ticker, encode_to_vec};
    use crate::feed::vectors;

    fn split(bytes: &[u8]) -> Vec<Result<(usize, Packet), (usize, Malformed)>> {
        Packets::new(bytes)
            .map(|r| r.map(|f| (f.offset, f.packet)).map_err(|e| (e.offset, e.reason)))
            .collect()
    }

    fn concat(parts: &[&[u8]]) -> Vec<u8> {
        parts.iter().flat_map(|p| p.iter().copied()).collect()
    }

    const FNO_52175: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);

    #[test]
    fn two_packets_in_one_message_vector_splits_into_ticker_and_oi() {
        let got = split(&vectors::TWO_IN_ONE);
        assert_eq!(
            got,
            vec![
                Ok((0, Packet::Ticker(Ticker::new(FNO_52175, Paise(12350), 1_763_980_215)))),
                Ok((16, Packet::Oi(Oi { instrument: FNO_52175, oi: 1_234_575 }))),
            ]
        );
    }

    #[test]
    fn every_vector_back_to_back_splits_at_the_right_offsets() {
        let bytes = concat(&[
            &vectors::TICKER,
            &vectors::QUOTE,
            &vectors::FULL,
            &vectors::OI,
            &vectors::MARKET_STATUS,
            &vectors::PREV_CLOSE,
            &vectors::DISCONNECT_805,
        ]);
        let offsets: Vec<usize> = Packets::new(&bytes).map(|r| r.unwrap().offset).collect();
        assert_eq!(offsets, [0, 16, 66, 228, 240, 248, 264]);
    }

    #[test]
    fn unknown_code_is_skipped_by_its_length() {
        let mut unknown = vec![1, 12, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9];
        unknown.extend_from_slice(&vectors::OI);
        let got = split(&unknown);
        assert_eq!(got.len(), 2);
        assert!(matches!(got[0], Ok((0, Packet::Unknown(_)))));
        assert!(matches!(got[1], Ok((12, Packet::Oi(_)))));
    }

    #[test]
    fn bad_price_is_reported_and_the_next_packet_still_decodes() {
        let mut bad = vectors::TICKER;
        bad[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
        let got = split(&concat(&[&vectors::OI, &bad, &vectors::OI]));
        assert!(matches!(got[0], Ok((0, _))));
        assert!(matches!(got[1], Err((12, Malformed::BadPrice { .. }))));
        assert!(matches!(got[2], Ok((28, Packet::Oi(_)))));
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn corrupted_length_resumes_at_the_fixed_size_when_that_lands_on_a_header() {
        let mut bad = vectors::TICKER;
        bad[1] = 17;
        let got = split(&concat(&[&bad, &vectors::FULL]));
        assert_eq!(got.len(), 2);
        assert!(matches!(got[0], Err((0, Malformed::LengthMismatch { declared: 17, .. }))));
        assert!(matches!(got[1], Ok((16, Packet::Full(_)))));
    }

    #[test]
    fn corrupted_code_resumes_by_the_length_when_that_lands_on_a_header() {
        // A full packet whose code byte says "ticker": length 162 is right, 16 is not.
        let mut bad = vectors::FULL;
        bad[0] = 2;
        let got = split(&concat(&[&bad, &vectors::OI]));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(matches!(got[0], Err((0, Malformed::LengthMismatch { declared: 162, .. }))));
        assert!(matches!(got[1], Ok((162, Packet::Oi(_)))));
    }

    #[test]
    fn garbage_between_packets_is_one_error_then_a_scan_to_the_next_header() {
        let garbage = [0xFFu8, 0xEE, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07];
        let got = split(&concat(&[&vectors::OI, &garbage, &vectors::TICKER]));
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(matches!(got[1], Err((12, Malformed::LengthBeyondEnd { .. }))));
        assert!(matches!(got[2], Ok((21, Packet::Ticker(_)))));
    }

    #[test]
    fn truncated_last_packet_is_an_error_at_its_offset() {
        let bytes = concat(&[&vectors::OI, &vectors::FULL[..100]]);
        let got = split(&bytes);
        assert_eq!(
            got[1],
            Err((12, Malformed::Truncated { kind: PacketKind::Full, needed: 162, available: 100 }))
        );
        assert_eq!(got.len(), 2);
        let got = split(&concat(&[&vectors::OI, &[2, 16, 0]]));
        assert_eq!(got[1], Err((12, Malformed::TruncatedHeader { available: 3 })));
    }

    #[test]
    fn base_offset_is_added_to_reported_offsets() {
        let got: Vec<usize> = Packets::with_base_offset(&vectors::TWO_IN_ONE, 1000)
            .map(|r| r.unwrap().offset)
            .collect();
        assert_eq!(got, [1000, 1016]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn arbitrary_bytes_never_panic_the_splitter_and_it_always_progresses(
            bytes in prop::collection::vec(any::<u8>(), 0..600)
        ) {
            let mut it = Packets::new(&bytes);
            let mut last = 0;
            let mut steps = 0;
            while let Some(item) = it.next() {
                prop_assert!(it.position() > last, "no progress at {}", last);
                if let Ok(f) = item {
                    prop_assert_eq!(f.offset + f.len, it.position());
                }
                last = it.position();
                steps += 1;
            }
            prop_assert!(steps <= bytes.len());
            prop_assert!(it.position() >= bytes.len());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn a_stream_of_valid_packets_splits_back_into_the_same_packets(
            packets in prop::collection::vec(crate::feed::codec::tests::packet(), 0..12)
        ) {
            let mut bytes = Vec::new();
            for p in &packets {
                bytes.extend_from_slice(&encode_to_vec(p));
            }
            let got: Vec<Packet> = Packets::new(&bytes).map(|r| r.unwrap().packet).collect();
            prop_assert_eq!(got, packets);
        }
    }
}
