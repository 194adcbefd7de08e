//! One lane per position: the router's placers may have several orders in flight at once, but
//! never two of the same position (an exit's next attempt waits until the previous placement
//! has returned). A placer that takes an order whose position is busy waits for the lane.

use std::collections::HashSet;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::domain::PositionId;

#[derive(Default)]
pub(crate) struct Lanes {
    busy: Mutex<HashSet<PositionId>>,
    freed: Condvar,
}

impl Lanes {
    /// Takes the position's lane, waiting while another placer holds it; `tick` runs every
    /// `every` of waiting (the caller's heartbeat).
    pub(crate) fn claim(&self, position: &PositionId, every: Duration, mut tick: impl FnMut()) {
        let mut busy = self.busy.lock();
        while busy.contains(position) {
            self.freed.wait_for(&mut busy, every);
            tick();
        }
        busy.insert(position.clone());
    }

    /// Gives the position's lane back.
    pub(crate) fn release(&self, position: &PositionId) {
        self.busy.lock().remove(position);
        self.freed.notify_all();
    }

    /// Positions with an order in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.busy.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn different_positions_go_together_the_same_position_waits_for_its_lane() {
        let lanes = Arc::new(Lanes::default());
        let (p, q) = (PositionId::new("P-1"), PositionId::new("P-2"));
        lanes.claim(&p, Duration::from_millis(5), || {});
        lanes.claim(&q, Duration::from_millis(5), || {});
        assert_eq!(lanes.in_flight(), 2, "two positions in flight at once");

        let second_got_it = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (lanes, p, got) = (lanes.clone(), p.clone(), second_got_it.clone());
            std::thread::spawn(move || {
                lanes.claim(&p, Duration::from_millis(5), || {});
                got.store(true, Ordering::SeqCst);
                lanes.release(&p);
            })
        };
        // The waiter cannot have the lane while we hold it: it ticks, it does not take it.
        let mut ticks = 0;
        while ticks < 3 {
            assert!(!second_got_it.load(Ordering::SeqCst), "P-1's second order waited");
            std::thread::sleep(Duration::from_millis(5));
            ticks += 1;
        }
        lanes.release(&p);
        waiter.join().expect("the waiter ends");
        assert!(second_got_it.load(Ordering::SeqCst));
        lanes.release(&q);
        assert_eq!(lanes.in_flight(), 0);
    }
}
