//! Identifiers: our position ids, Dhan order ids, and the correlation ids that tie an order we
//! sent to what the broker reports.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Our id of a position (also the `id` column of `positions.csv`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PositionId(pub String);

impl PositionId {
    pub fn new(id: impl Into<String>) -> PositionId {
        PositionId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PositionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Dhan's order id (`orderId` / `OrderNo`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(pub String);

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A correlation id we generate: 1–25 characters of `[A-Za-z0-9_-]` (spec dhan-v2 §6: Dhan
/// rejects 26 and more, and only this set is safe). The text is shared: a copy (an intent handed
/// to the router, the order book, the journal) allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CorrelationId(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorrelationIdError {
    #[error("correlation id {0:?} is empty or longer than 25 characters")]
    Length(String),
    #[error("correlation id {0:?} has a character outside [A-Za-z0-9_-]")]
    Charset(String),
}

impl CorrelationId {
    pub const MAX_LEN: usize = 25;

    pub fn new(text: impl Into<String>) -> Result<CorrelationId, CorrelationIdError> {
        let text = text.into();
        if text.is_empty() || text.len() > Self::MAX_LEN {
            return Err(CorrelationIdError::Length(text));
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(CorrelationIdError::Charset(text));
        }
        Ok(CorrelationId(Arc::from(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CorrelationId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CorrelationId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CorrelationId, D::Error> {
        CorrelationId::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_correlation_id_is_a_json_string_and_its_copies_share_the_text() {
        let cid = CorrelationId::new("X1-p17").unwrap();
        assert_eq!(serde_json::to_string(&cid).unwrap(), "\"X1-p17\"");
        let back: CorrelationId = serde_json::from_str("\"X1-p17\"").unwrap();
        assert_eq!(back, cid);
        assert!(serde_json::from_str::<CorrelationId>("\"a b\"").is_err());
        let copy = cid.clone();
        assert!(std::ptr::eq(copy.as_str(), cid.as_str()));
    }

    #[test]
    fn correlation_ids_are_at_most_25_safe_characters() {
        assert!(CorrelationId::new("X-p17-a1").is_ok());
        assert!(CorrelationId::new("a".repeat(25)).is_ok());
        assert!(matches!(CorrelationId::new("a".repeat(26)), Err(CorrelationIdError::Length(_))));
        assert!(matches!(CorrelationId::new(""), Err(CorrelationIdError::Length(_))));
        assert!(matches!(CorrelationId::new("a b"), Err(CorrelationIdError::Charset(_))));
        assert!(matches!(CorrelationId::new("a.b"), Err(CorrelationIdError::Charset(_))));
    }
}
