//! The discrete-event scheduler: a priority queue of (time, sequence number,
//! event). Events at the same simulated time come out in the order they
//! were scheduled, so a run is a function of its inputs alone: no wall
//! clock, no hash order, no thread decides what happens first.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Simulated time in microseconds since the start of a run.
pub type TimeUs = u64;

struct Entry<E> {
    at_us: TimeUs,
    sequence: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.sequence) == (other.at_us, other.sequence)
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    /// Reversed: `BinaryHeap` is a max-heap, and the earliest event (then
    /// the first scheduled) must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at_us, other.sequence).cmp(&(self.at_us, self.sequence))
    }
}

/// Events waiting for their time, and the current time.
pub struct Scheduler<E> {
    queue: BinaryHeap<Entry<E>>,
    next_sequence: u64,
    now_us: TimeUs,
}

impl<E> std::fmt::Debug for Scheduler<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("now_us", &self.now_us).field("waiting", &self.queue.len()).finish()
    }
}

impl<E> Default for Scheduler<E> {
    fn default() -> Self {
        Scheduler { queue: BinaryHeap::new(), next_sequence: 0, now_us: 0 }
    }
}

impl<E> Scheduler<E> {
    /// The time of the event last taken (0 before the first).
    pub fn now_us(&self) -> TimeUs {
        self.now_us
    }

    /// How many events wait.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Schedules `event` at `at_us`; an event in the past happens now, since
    /// time never goes back.
    pub fn at(&mut self, at_us: TimeUs, event: E) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.queue.push(Entry { at_us: at_us.max(self.now_us), sequence, event });
    }

    /// Schedules `event` `delay_us` from now.
    pub fn after(&mut self, delay_us: TimeUs, event: E) {
        self.at(self.now_us.saturating_add(delay_us), event);
    }

    /// The next event and its time, which becomes the current time.
    pub fn pop(&mut self) -> Option<(TimeUs, E)> {
        let Entry { at_us, event, .. } = self.queue.pop()?;
        self.now_us = at_us;
        Some((at_us, event))
    }

    /// The time of the next event, if any.
    pub fn peek_time_us(&self) -> Option<TimeUs> {
        self.queue.peek().map(|entry| entry.at_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_by_time_then_in_the_order_they_were_scheduled() {
        let mut scheduler = Scheduler::default();
        scheduler.at(30, "c");
        scheduler.at(10, "a");
        scheduler.at(30, "d");
        scheduler.at(20, "b");
        scheduler.at(10, "a2");
        let mut seen = Vec::new();
        while let Some((at_us, event)) = scheduler.pop() {
            assert_eq!(scheduler.now_us(), at_us);
            seen.push((at_us, event));
        }
        assert_eq!(seen, [(10, "a"), (10, "a2"), (20, "b"), (30, "c"), (30, "d")]);
        assert!(scheduler.is_empty());
    }

    #[test]
    fn time_never_goes_back() {
        let mut scheduler = Scheduler::default();
        scheduler.at(100, 1);
        assert_eq!(scheduler.pop(), Some((100, 1)));
        // Scheduled in the past: it happens now, after what is already due now.
        scheduler.at(100, 2);
        scheduler.at(50, 3);
        scheduler.after(5, 4);
        assert_eq!(scheduler.peek_time_us(), Some(100));
        assert_eq!(scheduler.pop(), Some((100, 2)));
        assert_eq!(scheduler.pop(), Some((100, 3)));
        assert_eq!(scheduler.pop(), Some((105, 4)));
        assert_eq!(scheduler.pop(), None);
        assert_eq!(scheduler.now_us(), 105);
    }
}
