//! Deterministic correlation ids for our orders, and their inverse.
//!
//! Dhan echoes the `correlationId` we send (≤ 25 characters of `[A-Za-z0-9_-]`, dhan-v2 §6), so
//! the id is how a fill, a rejection or a line of the broker's order book is tied back to a
//! position and to the attempt that placed it. Ids are derived, never random, so a restarted
//! engine recomputes the id of an exit in flight and reconciliation can scan the order book:
//!
//! - `X<attempt>-<position id>`: exit attempt `attempt` (1, 2, …) of a position whose id is made
//!   of `[A-Za-z0-9_-]` and fits;
//! - `X<attempt>_<16 hex digits>`: the same when the id does not fit or has other characters;
//!   the digits are the 64-bit FNV-1a hash of the id's UTF-8 bytes, lower-case, zero-padded;
//! - `N<attempt>-<id>` / `N<attempt>_<hash>`: the entry order of a position (attempt 1, 2, … if
//!   an entry had to be placed again);
//! - `X<attempt>s<slice>-<id>` / `X<attempt>s<slice>_<hash>` (and `N…` alike): child `slice`
//!   (1, 2, …) of an order above the exchange's freeze quantity, sent as several orders
//!   (`exec::slicing`). The hashed form is used when the direct one does not fit; a child id
//!   that fits neither (attempt and slice together longer than six digits) is refused.
//!
//! The separator after the attempt (`-` or `_`) says which form follows, so parsing is
//! unambiguous whatever the position id looks like. The attempt is at most 999 999 so that the
//! hashed form always fits. Dhan's own ids (`<client id>-<epoch ms>`) start with a digit and
//! never parse as ours.

use crate::domain::{CorrelationId, PositionId};

/// The largest attempt number an id can carry.
pub const MAX_ATTEMPT: u32 = 999_999;

/// Which order of a position an id belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderRole {
    Entry,
    Exit,
}

impl OrderRole {
    const fn letter(self) -> char {
        match self {
            OrderRole::Entry => 'N',
            OrderRole::Exit => 'X',
        }
    }
}

/// The position part of a parsed id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PositionRef {
    /// The position id itself.
    Id(PositionId),
    /// The FNV-1a hash of a position id that did not fit.
    Hash(u64),
}

/// A correlation id read back: role, attempt and position.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParsedCorrelation {
    pub role: OrderRole,
    pub attempt: u32,
    /// The child's number when the order is one slice of a larger one.
    pub slice: Option<u32>,
    pub position: PositionRef,
}

impl ParsedCorrelation {
    /// Whether this id was generated for `position`.
    pub fn refers_to(&self, position: &PositionId) -> bool {
        match &self.position {
            PositionRef::Id(id) => id == position,
            PositionRef::Hash(h) => *h == position_hash(position),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorrelationError {
    #[error("attempt {attempt} for position {position:?} is outside 1..={MAX_ATTEMPT}")]
    Attempt { position: String, attempt: u32 },
    #[error(
        "slice {slice} of attempt {attempt} for position {position:?} has no id of 25 characters"
    )]
    Slice { position: String, attempt: u32, slice: u32 },
}

/// The id of entry attempt `attempt` of `position`.
pub fn entry_id(position: &PositionId, attempt: u32) -> Result<CorrelationId, CorrelationError> {
    make(OrderRole::Entry, position, attempt)
}

/// The id of exit attempt `attempt` of `position`.
pub fn exit_id(position: &PositionId, attempt: u32) -> Result<CorrelationId, CorrelationError> {
    make(OrderRole::Exit, position, attempt)
}

/// The id of child `slice` (1, 2, …) of the order `role`/`attempt` of `position`.
pub fn slice_id(
    role: OrderRole,
    position: &PositionId,
    attempt: u32,
    slice: u32,
) -> Result<CorrelationId, CorrelationError> {
    if attempt == 0 || attempt > MAX_ATTEMPT {
        return Err(CorrelationError::Attempt { position: position.0.clone(), attempt });
    }
    let head = format!("{}{attempt}s{slice}", role.letter());
    let direct = format!("{head}-{}", position.as_str());
    let text = if direct.len() <= CorrelationId::MAX_LEN && is_safe(position.as_str()) {
        direct
    } else {
        format!("{head}_{:016x}", position_hash(position))
    };
    if slice == 0 || text.len() > CorrelationId::MAX_LEN {
        return Err(CorrelationError::Slice { position: position.0.clone(), attempt, slice });
    }
    Ok(CorrelationId::new(text).expect("checked: at most 25 safe characters"))
}

/// 64-bit FNV-1a of the id's bytes: stable across builds and platforms, unlike `std`'s hasher.
pub fn position_hash(position: &PositionId) -> u64 {
    position.as_str().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn is_safe(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn make(
    role: OrderRole,
    position: &PositionId,
    attempt: u32,
) -> Result<CorrelationId, CorrelationError> {
    if attempt == 0 || attempt > MAX_ATTEMPT {
        return Err(CorrelationError::Attempt { position: position.0.clone(), attempt });
    }
    let direct = format!("{}{attempt}-{}", role.letter(), position.as_str());
    let text = if direct.len() <= CorrelationId::MAX_LEN && is_safe(position.as_str()) {
        direct
    } else {
        format!("{}{attempt}_{:016x}", role.letter(), position_hash(position))
    };
    Ok(CorrelationId::new(text).expect("both forms are at most 25 safe characters"))
}

/// Reads one of our ids back; `None` for anything we did not generate.
pub fn parse(text: &str) -> Option<ParsedCorrelation> {
    let role = match text.as_bytes().first()? {
        b'N' => OrderRole::Entry,
        b'X' => OrderRole::Exit,
        _ => return None,
    };
    let rest = &text[1..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || rest.starts_with('0') || digits > 6 {
        return None;
    }
    let attempt: u32 = rest[..digits].parse().ok()?;
    let mut tail = &rest[digits..];
    let mut slice = None;
    if let Some(after) = tail.strip_prefix('s') {
        let n = after.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || after.starts_with('0') || n > 6 {
            return None;
        }
        slice = Some(after[..n].parse().ok()?);
        tail = &after[n..];
    }
    let position = if let Some(id) = tail.strip_prefix('-') {
        if !is_safe(id) || text.len() > CorrelationId::MAX_LEN {
            return None;
        }
        PositionRef::Id(PositionId::new(id))
    } else if let Some(hex) = tail.strip_prefix('_') {
        if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        PositionRef::Hash(u64::from_str_radix(hex, 16).ok()?)
    } else {
        return None;
    };
    Some(ParsedCorrelation { role, attempt, slice, position })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(s: &str) -> PositionId {
        PositionId::new(s)
    }

    #[test]
    fn short_safe_ids_are_used_directly() {
        assert_eq!(exit_id(&pid("p17"), 1).unwrap().as_str(), "X1-p17");
        assert_eq!(exit_id(&pid("p17"), 12).unwrap().as_str(), "X12-p17");
        assert_eq!(entry_id(&pid("p17"), 1).unwrap().as_str(), "N1-p17");
        let longest = "a".repeat(22); // "X1-" + 22 = 25
        assert_eq!(exit_id(&pid(&longest), 1).unwrap().as_str().len(), 25);
    }

    #[test]
    fn long_or_unsafe_ids_are_hashed_to_a_fixed_width() {
        let long = "a".repeat(23);
        for id in [long.as_str(), "pos 1", "pos.1", "पद"] {
            let cid = exit_id(&pid(id), 3).unwrap();
            assert!(cid.as_str().starts_with("X3_"), "{cid}");
            assert_eq!(cid.as_str().len(), 3 + 16);
        }
        let cid = exit_id(&pid(&long), MAX_ATTEMPT).unwrap();
        assert_eq!(cid.as_str().len(), 24);
    }

    #[test]
    fn ids_are_deterministic_and_distinct_per_attempt_and_role() {
        let p = pid("NIFTY-24500-CE-1");
        assert_eq!(exit_id(&p, 2), exit_id(&p, 2));
        assert_ne!(exit_id(&p, 1), exit_id(&p, 2));
        assert_ne!(exit_id(&p, 1), entry_id(&p, 1));
    }

    #[test]
    fn attempt_zero_and_too_large_are_refused() {
        assert!(exit_id(&pid("p"), 0).is_err());
        assert!(exit_id(&pid("p"), MAX_ATTEMPT + 1).is_err());
    }

    #[test]
    fn parse_inverts_both_forms() {
        let ids = ["p17", "X1-p17", "H0123456789abcdef", "a-b_c", &"z".repeat(40), "with space"];
        for id in ids {
            for attempt in [1, 7, 1234] {
                for (role, cid) in [
                    (OrderRole::Exit, exit_id(&pid(id), attempt).unwrap()),
                    (OrderRole::Entry, entry_id(&pid(id), attempt).unwrap()),
                ] {
                    let parsed = parse(cid.as_str()).unwrap_or_else(|| panic!("{cid}"));
                    assert_eq!(parsed.role, role);
                    assert_eq!(parsed.attempt, attempt);
                    assert!(parsed.refers_to(&pid(id)), "{cid} → {id}");
                    assert!(!parsed.refers_to(&pid("other")), "{cid}");
                }
            }
        }
        assert_eq!(
            parse("X2-p17"),
            Some(ParsedCorrelation {
                role: OrderRole::Exit,
                attempt: 2,
                slice: None,
                position: PositionRef::Id(pid("p17"))
            })
        );
    }

    #[test]
    fn slice_ids_are_derived_distinct_and_parse_back() {
        let p = pid("p17");
        assert_eq!(slice_id(OrderRole::Exit, &p, 1, 1).unwrap().as_str(), "X1s1-p17");
        assert_eq!(slice_id(OrderRole::Exit, &p, 2, 12).unwrap().as_str(), "X2s12-p17");
        assert_eq!(slice_id(OrderRole::Entry, &p, 1, 3).unwrap().as_str(), "N1s3-p17");
        assert_ne!(slice_id(OrderRole::Exit, &p, 1, 1).unwrap(), exit_id(&p, 1).unwrap());
        for id in ["p17", "a-b_c", &"z".repeat(40), "with space", &"a".repeat(20)] {
            for (attempt, slice) in [(1, 1), (1, 2), (7, 30), (99, 999), (999, 999)] {
                let cid = slice_id(OrderRole::Exit, &pid(id), attempt, slice).unwrap();
                assert!(cid.as_str().len() <= CorrelationId::MAX_LEN, "{cid}");
                let parsed = parse(cid.as_str()).unwrap_or_else(|| panic!("{cid}"));
                assert_eq!(parsed.role, OrderRole::Exit);
                assert_eq!(parsed.attempt, attempt);
                assert_eq!(parsed.slice, Some(slice));
                assert!(parsed.refers_to(&pid(id)), "{cid} → {id}");
            }
        }
        // Long ids fall back to the hash; seven digits of attempt and slice do not fit.
        let long = "a".repeat(23);
        assert!(
            slice_id(OrderRole::Exit, &pid(&long), 1, 1).unwrap().as_str().starts_with("X1s1_")
        );
        assert!(slice_id(OrderRole::Exit, &pid(&long), 9999, 999).is_err());
        assert!(slice_id(OrderRole::Exit, &p, 1, 0).is_err());
        assert!(slice_id(OrderRole::Exit, &p, 0, 1).is_err());
    }

    #[test]
    fn foreign_ids_do_not_parse() {
        for text in [
            "1000000001-1788847935148",
            "AS-N-52175-30215",
            "X-p17",
            "X0-p17",
            "X01-p17",
            "X1p17",
            "X1-",
            "X1_0123",
            "X1_0123456789ABCDEF",
            "Y1-p17",
            "X1s-p17",
            "X1s0-p17",
            "X1s01-p17",
            "X1sa-p17",
            "",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }
}
