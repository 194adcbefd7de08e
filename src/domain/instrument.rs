//! Instruments as Dhan names them: an exchange segment and a numeric security id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Dhan exchange segment (spec dhan-v2 §1.3): a name in JSON/REST/CSV, a number in the binary feed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    IdxI,
    NseEq,
    NseFno,
    NseCurrency,
    BseEq,
    McxComm,
    BseCurrency,
    BseFno,
}

impl Segment {
    pub const ALL: [Segment; 8] = [
        Segment::IdxI,
        Segment::NseEq,
        Segment::NseFno,
        Segment::NseCurrency,
        Segment::BseEq,
        Segment::McxComm,
        Segment::BseCurrency,
        Segment::BseFno,
    ];

    /// The `(exchange, segment letter)` pair Dhan writes for this segment in its order updates
    /// (`Exchange`, `Segment`: spec §3.2) and its instrument master (`EXCH_ID`, `SEGMENT`: §8.1).
    pub const fn exchange_letters(self) -> (&'static str, &'static str) {
        match self {
            Segment::IdxI => ("NSE", "I"),
            Segment::NseEq => ("NSE", "E"),
            Segment::NseFno => ("NSE", "D"),
            Segment::NseCurrency => ("NSE", "C"),
            Segment::BseEq => ("BSE", "E"),
            Segment::BseFno => ("BSE", "D"),
            Segment::BseCurrency => ("BSE", "C"),
            Segment::McxComm => ("MCX", "M"),
        }
    }

    /// The segment of an `(exchange, segment letter)` pair, exactly as
    /// [`Segment::exchange_letters`] writes it.
    pub fn from_exchange_letters(exchange: &str, letter: &str) -> Option<Segment> {
        Segment::ALL.into_iter().find(|s| s.exchange_letters() == (exchange, letter))
    }

    /// The numeric code in the feed's packet header.
    pub const fn code(self) -> u8 {
        match self {
            Segment::IdxI => 0,
            Segment::NseEq => 1,
            Segment::NseFno => 2,
            Segment::NseCurrency => 3,
            Segment::BseEq => 4,
            Segment::McxComm => 5,
            Segment::BseCurrency => 7,
            Segment::BseFno => 8,
        }
    }

    pub const fn from_code(code: u8) -> Option<Segment> {
        Some(match code {
            0 => Segment::IdxI,
            1 => Segment::NseEq,
            2 => Segment::NseFno,
            3 => Segment::NseCurrency,
            4 => Segment::BseEq,
            5 => Segment::McxComm,
            7 => Segment::BseCurrency,
            8 => Segment::BseFno,
            _ => return None,
        })
    }

    /// The name used in JSON, REST and files (`NSE_FNO`).
    pub const fn name(self) -> &'static str {
        match self {
            Segment::IdxI => "IDX_I",
            Segment::NseEq => "NSE_EQ",
            Segment::NseFno => "NSE_FNO",
            Segment::NseCurrency => "NSE_CURRENCY",
            Segment::BseEq => "BSE_EQ",
            Segment::McxComm => "MCX_COMM",
            Segment::BseCurrency => "BSE_CURRENCY",
            Segment::BseFno => "BSE_FNO",
        }
    }

    pub fn from_name(name: &str) -> Option<Segment> {
        Segment::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Index values are not tradable.
    pub const fn is_tradable(self) -> bool {
        !matches!(self, Segment::IdxI)
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Segment {
    type Err = ParseInstrumentError;
    fn from_str(s: &str) -> Result<Segment, ParseInstrumentError> {
        Segment::from_name(s).ok_or_else(|| ParseInstrumentError::UnknownSegment(s.to_string()))
    }
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Segment, D::Error> {
        let name = String::deserialize(d)?;
        Segment::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown exchange segment {name:?}")))
    }
}

/// Dhan security id (always positive, fits u32 on the wire).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecurityId(pub u32);

impl fmt::Display for SecurityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One instrument: segment + security id. Written `NSE_FNO:52175` in config and logs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstrumentKey {
    pub segment: Segment,
    pub security_id: SecurityId,
}

impl InstrumentKey {
    pub const fn new(segment: Segment, security_id: u32) -> InstrumentKey {
        InstrumentKey { segment, security_id: SecurityId(security_id) }
    }
}

impl fmt::Display for InstrumentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.segment, self.security_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseInstrumentError {
    #[error("unknown exchange segment {0:?}")]
    UnknownSegment(String),
    #[error("{0:?} is not a security id (a positive integer)")]
    BadSecurityId(String),
    #[error("{0:?} is not an instrument (expected SEGMENT:SECURITY_ID, e.g. NSE_FNO:52175)")]
    BadFormat(String),
}

impl FromStr for InstrumentKey {
    type Err = ParseInstrumentError;
    fn from_str(s: &str) -> Result<InstrumentKey, ParseInstrumentError> {
        let (seg, id) =
            s.split_once(':').ok_or_else(|| ParseInstrumentError::BadFormat(s.to_string()))?;
        let segment: Segment = seg.trim().parse()?;
        let id: u32 =
            id.trim().parse().map_err(|_| ParseInstrumentError::BadSecurityId(id.to_string()))?;
        Ok(InstrumentKey::new(segment, id))
    }
}

impl Serialize for InstrumentKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InstrumentKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<InstrumentKey, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Long (bought first) or short (sold first).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Side {
    Long,
    Short,
}

impl Side {
    pub const fn name(self) -> &'static str {
        match self {
            Side::Long => "LONG",
            Side::Short => "SHORT",
        }
    }

    /// +1 for long, −1 for short: `move = sign × (L − E)`.
    pub const fn sign(self) -> i64 {
        match self {
            Side::Long => 1,
            Side::Short => -1,
        }
    }

    pub const fn opposite(self) -> Side {
        match self {
            Side::Long => Side::Short,
            Side::Short => Side::Long,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Side, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "LONG" | "BUY" => Ok(Side::Long),
            "SHORT" | "SELL" => Ok(Side::Short),
            _ => Err(format!("{s:?} is not a side (LONG or SHORT)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_codes_and_names_round_trip() {
        for seg in Segment::ALL {
            assert_eq!(Segment::from_code(seg.code()), Some(seg));
            assert_eq!(Segment::from_name(seg.name()), Some(seg));
        }
        assert_eq!(Segment::from_code(6), None);
        assert_eq!(Segment::from_code(9), None);
        assert_eq!(Segment::NseFno.code(), 2);
        assert_eq!(Segment::BseFno.code(), 8);
    }

    #[test]
    fn instrument_key_parses_and_prints() {
        let k: InstrumentKey = "NSE_FNO:52175".parse().unwrap();
        assert_eq!(k, InstrumentKey::new(Segment::NseFno, 52175));
        assert_eq!(k.to_string(), "NSE_FNO:52175");
        assert!(matches!(
            "NSE_XYZ:1".parse::<InstrumentKey>(),
            Err(ParseInstrumentError::UnknownSegment(_))
        ));
        assert!(matches!(
            "NSE_FNO:-1".parse::<InstrumentKey>(),
            Err(ParseInstrumentError::BadSecurityId(_))
        ));
        assert!(matches!(
            "52175".parse::<InstrumentKey>(),
            Err(ParseInstrumentError::BadFormat(_))
        ));
    }
}
