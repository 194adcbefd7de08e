//! Restart recovery, live mode: the order journal replayed into the recovered state, so that
//! every order the previous run may have sent is settled with Dhan by its own correlation id
//! before anything is decided from the broker's aggregates.
//!
//! The store is write-behind: a process killed a few milliseconds after an order left can
//! restart with a store that never heard of it. The journal (`broker::journal`) was fsynced
//! before the order's first byte went out, so it is the complete list of what may be at the
//! broker. Pure: the recovered state and today's journal lines in, the state changed in place.
//!
//! - An **entry** (`N<a>-<position>`) whose position the store does not know and that is not
//!   pending already becomes a pending entry (replacing an older attempt of the same position):
//!   the startup reconciliation looks it up and its fills open the position at their own price
//!   and quantity (the trade counts in the day's figures), instead of the broker's net position
//!   being adopted later at Dhan's day-average cost price.
//! - An **exit** (`X<n>-<position>`) of an open position the store holds `Active` with fewer
//!   than `n` attempts, or `Exiting` under an earlier attempt, puts the position `Exiting`
//!   under that id with the journaled reason and trigger price: the startup reconciliation
//!   settles it by correlation id, and a traded exit closes the position with its own reason,
//!   price and attempt. Without this the broker reports the position flat and reconciliation
//!   would close it `closed_at_broker` at a made-up price.
//! - A child of a sliced order (`X<n>s<k>-<position>`, `N<n>s<k>-<position>`,
//!   `exec::slicing`) counts as its parent (`X<n>-<position>`, `N<n>-<position>`), whose own
//!   line (written before the first child) carries the whole quantity: the position exits, or
//!   its entry is pending, under the parent's id, and the startup settlement re-derives the
//!   children, settling the journaled ones and sending the others.
//! - A pending entry keeps the journaled line's limit price (also when the store recovered it
//!   from a row without one), so that the children still to send of a sliced LIMIT entry go
//!   at that price, never as MARKET orders.
//! - An order the store never recorded is recorded (`OrderPlaced`) so its fills and status have
//!   a row; every change is audited (`order_from_journal`).
//! - Ids of positions the store already closed, entries of known positions, and exits older
//!   than what the store holds change nothing: the store's record is newer. A line a standby
//!   *presumed* sent ([`presumed_exits`]) changes nothing either: it still keeps its id from
//!   being sent again (the gateway looks it up), but nobody knows it was sent.
//!
//! [`presumed_exits`]: with `instance.lease = "redis"` a standby on another host takes over
//! without the holder's journal. Exit ids are deterministic (`X<attempt>-<position>`), so the
//! next attempt of every open position's exit is an id the dead holder may have sent a moment
//! before it died, possibly still on the wire. The standby records each as *presumed sent*
//! (`OrderJournal::presume`): if its own rules then decide that exit, the gateway does not
//! send it but looks it up, and only after the resolve window (counted from the takeover)
//! proves it absent does the next attempt, under a new id, go out.

use std::collections::BTreeMap;

use super::recover::RestartState;
use crate::broker::journal::Sent;
use crate::domain::{CorrelationId, OrderPurpose, PositionId, Qty, Side, Txn};
use crate::exec::core::PendingEntry;
use crate::risk::correlation::{self, OrderRole};
use crate::risk::position::{Exiting, Lifecycle};
use crate::store::{Actor, EventKind, OrderRecord, OrderStatus};

/// Replays today's journal lines (see the module doc). Returns how many changed the state.
pub fn replay(state: &mut RestartState, journal: &[Sent]) -> usize {
    // The latest attempt of each role per position: an earlier attempt of the same role was
    // answered (rejected or proved absent) before the next one could be placed.
    // A child of a sliced order (`X<a>s<n>-…`, `N<a>s<n>-…`) stands for its parent
    // (`X<a>-…`, `N<a>-…`): the position exits (or enters) under the parent's id, and the
    // startup settlement re-derives the children. The gateway journals the parent's own line
    // (its whole quantity) before the first child; a line made up from a child here only
    // stands in when that line is missing, and the real one, earlier in the journal, wins.
    let parents: Vec<Sent> = journal
        .iter()
        .filter(|s| !s.presumed)
        .filter_map(|s| {
            let parsed = correlation::parse(s.intent.correlation_id.as_str())?;
            parsed.slice?;
            let cid = match parsed.role {
                OrderRole::Exit => correlation::exit_id(&s.intent.position_id, parsed.attempt),
                OrderRole::Entry => correlation::entry_id(&s.intent.position_id, parsed.attempt),
            }
            .ok()?;
            let mut parent = s.clone();
            parent.intent.correlation_id = cid;
            Some(parent)
        })
        .collect();
    let mut latest: BTreeMap<(PositionId, bool), (u32, &Sent)> = BTreeMap::new();
    for s in journal.iter().chain(&parents).filter(|s| !s.presumed) {
        let Some(parsed) = correlation::parse(s.intent.correlation_id.as_str()) else { continue };
        if parsed.slice.is_some() {
            continue;
        }
        if !parsed.refers_to(&s.intent.position_id) {
            continue;
        }
        let key = (s.intent.position_id.clone(), parsed.role == OrderRole::Exit);
        match latest.get(&key) {
            Some((a, _)) if *a >= parsed.attempt => {}
            _ => {
                latest.insert(key, (parsed.attempt, s));
            }
        }
    }
    let mut changed = 0;
    for ((_, is_exit), (attempt, sent)) in latest {
        let applied = if is_exit {
            replay_exit(state, sent, attempt)
        } else {
            replay_entry(state, sent, attempt)
        };
        if let Some(detail) = applied {
            changed += 1;
            let cid = &sent.intent.correlation_id;
            if !state.open_orders.iter().any(|o| &o.correlation_id == cid) {
                state.records.push(EventKind::OrderPlaced(order_record(sent)));
            }
            state.audit(Actor::Reconciliation, "order_from_journal", detail);
        }
    }
    changed
}

/// The next exit attempt of every open position (see the module doc), as intents to presume
/// sent; ids `journal` already holds are left out.
pub fn presumed_exits(state: &RestartState, journal: &[Sent]) -> Vec<crate::domain::OrderIntent> {
    let mut out = Vec::new();
    for p in &state.core.positions {
        let (attempt, reason) = match &p.lifecycle {
            Lifecycle::Active { attempts, .. } => (attempts + 1, None),
            Lifecycle::Exiting(x) => (x.attempt + 1, Some(x.reason)),
            Lifecycle::Exited(_) => continue,
        };
        let Ok(cid) = correlation::exit_id(&p.id, attempt) else { continue };
        if journal.iter().any(|s| s.intent.correlation_id == cid) {
            continue;
        }
        out.push(crate::domain::OrderIntent {
            correlation_id: cid,
            position_id: p.id.clone(),
            instrument: p.instrument,
            txn: Txn::closing(p.side),
            quantity: p.open_quantity(),
            // Unknown for an active position: whatever the holder decided. The line is
            // marked presumed; nothing reads its reason.
            purpose: OrderPurpose::Exit(reason.unwrap_or(crate::domain::ExitReason::SquareOff)),
            reference_price: p.last_price,
            price_is_stale: false,
            created_at: state.now,
            limit_price: None,
        });
    }
    out
}

fn replay_entry(state: &mut RestartState, sent: &Sent, attempt: u32) -> Option<String> {
    let i = &sent.intent;
    if i.purpose != OrderPurpose::Entry || state.known_positions.contains(&i.position_id) {
        return None;
    }
    let core = &mut state.core;
    // The store does not hold an order's limit price: an entry it recovered pending takes it
    // from the journal, so that its children still to send go at it, never as MARKET.
    if let Some(e) = core.pending_entries.iter_mut().find(|e| e.correlation_id == i.correlation_id)
        && e.limit_price.is_none()
    {
        e.limit_price = i.limit_price;
    }
    if core.pending_entries.iter().any(|e| e.position_id == i.position_id && e.attempt >= attempt) {
        return None;
    }
    core.pending_entries.retain(|e| e.position_id != i.position_id);
    core.entry_attempts.retain(|(id, _)| id != &i.position_id);
    core.pending_entries.push(PendingEntry {
        position_id: i.position_id.clone(),
        instrument: i.instrument,
        side: if i.txn == Txn::Buy { Side::Long } else { Side::Short },
        quantity: i.quantity,
        correlation_id: i.correlation_id.clone(),
        attempt,
        reference_price: i.reference_price,
        placed_at: sent.at,
        limit_price: i.limit_price,
    });
    core.entry_attempts.push((i.position_id.clone(), attempt));
    Some(format!(
        "entry {} of {} ({} {} of {}) was journaled but not stored: settled with Dhan by correlation id before trading starts",
        i.correlation_id, i.position_id, i.txn, i.quantity, i.instrument
    ))
}

fn replay_exit(state: &mut RestartState, sent: &Sent, attempt: u32) -> Option<String> {
    let i = &sent.intent;
    let OrderPurpose::Exit(reason) = i.purpose else { return None };
    let p = state.core.positions.iter_mut().find(|p| p.id == i.position_id)?;
    let stored = match &p.lifecycle {
        Lifecycle::Active { attempts, .. } if *attempts < attempt => {
            format!("active after {attempts} exit attempts")
        }
        Lifecycle::Exiting(x) if x.attempt < attempt => {
            format!("exiting under {}", x.correlation_id)
        }
        _ => return None,
    };
    p.lifecycle = Lifecycle::Exiting(Exiting {
        reason,
        trigger_price: i.reference_price,
        triggered_at: i.created_at,
        correlation_id: i.correlation_id.clone(),
        attempt,
        price_was_stale: i.price_is_stale,
        filled: Qty(0),
        turnover: crate::domain::Paise::ZERO,
    });
    let cid: CorrelationId = i.correlation_id.clone();
    state.exit_fills.entry(cid).or_default();
    Some(format!(
        "exit {} of {} ({reason}) was journaled while the store held the position {stored}: exiting under it, settled with Dhan by correlation id before trading starts",
        i.correlation_id, i.position_id
    ))
}

fn order_record(sent: &Sent) -> OrderRecord {
    let i = &sent.intent;
    OrderRecord {
        correlation_id: i.correlation_id.clone(),
        broker_order_id: None,
        position_id: i.position_id.clone(),
        instrument: i.instrument,
        txn: i.txn,
        quantity: i.quantity,
        purpose: i.purpose,
        status: OrderStatus::Unknown,
        created_at: sent.at,
        updated_at: sent.at,
        limit_price: i.limit_price,
    }
}

#[cfg(test)]
mod tests;
