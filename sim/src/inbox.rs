//! A node's inbound queues and what overload does to it. Everything a node
//! must handle waits here while the node's one simulated CPU is busy, in
//! one queue per source the node's event loop `select!`s over: the market
//! swarm (gossip from each peer, sync, connections), API commands,
//! consensus, the tick. Like tokio's `select!`, which polls its ready
//! branches in a random order, the next item comes from a source drawn
//! among those that have one (the draw is the caller's, from the run's
//! seeded PRNG), then in arrival order. Gossip is bounded per link and by age,
//! as gossipsub bounds its queue to each peer (`connection_handler_queue_len`)
//! and drops what waited longer than its publish or forward timeout: what
//! overflows a link's bound is refused on arrival, and what is too old when
//! its turn comes is dropped unseen. This is where overload shows: when
//! messages arrive faster than the CPU handles them, the queue grows until
//! gossip is dropped.

use std::collections::{BTreeMap, VecDeque};

use crate::network::NodeId;
use crate::scheduler::TimeUs;

/// Gossip from one peer waiting at most (gossipsub's default
/// `connection_handler_queue_len`): half for messages the peer published
/// (its priority queue), half for messages it forwards.
pub const GOSSIP_QUEUE_PER_LINK_MAX: usize = 5_000;
/// A message its sender published waits at most this long
/// (gossipsub's `publish_queue_duration`).
pub const PUBLISH_TIMEOUT_US: TimeUs = 5_000_000;
/// A message its sender forwarded waits at most this long
/// (gossipsub's `forward_queue_duration`).
pub const FORWARD_TIMEOUT_US: TimeUs = 1_000_000;

/// The sources the node's loop selects over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The market swarm: gossip, sync requests and responses, connections.
    Swarm,
    /// API commands (submissions).
    Api,
    /// The consensus engine's messages (here: the sequencer's).
    Consensus,
    /// The tick timer.
    Tick,
}

const SOURCES: [Source; 4] = [Source::Swarm, Source::Api, Source::Consensus, Source::Tick];

/// Why a message did not get into the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the {kind:?} gossip queue from node {link} is full")]
pub struct LinkFull {
    pub link: NodeId,
    pub kind: Gossip,
}

/// How a gossip message left its sender: published by it (gossipsub's
/// priority queue, waiting up to [`PUBLISH_TIMEOUT_US`]) or forwarded
/// (the other queue, [`FORWARD_TIMEOUT_US`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Gossip {
    Published,
    Forwarded,
}

impl Gossip {
    pub fn timeout_us(self) -> TimeUs {
        match self {
            Gossip::Published => PUBLISH_TIMEOUT_US,
            Gossip::Forwarded => FORWARD_TIMEOUT_US,
        }
    }
}

#[derive(Debug)]
struct Queued<T> {
    /// The peer it came from and how, for gossip (bounded per link).
    gossip_link: Option<(NodeId, Gossip)>,
    deadline_us: Option<TimeUs>,
    item: T,
}

/// Items by source in arrival order; gossip bounded per link and by
/// deadline.
#[derive(Debug)]
pub struct Inbox<T> {
    queues: [VecDeque<Queued<T>>; 4],
    gossip_per_link: BTreeMap<(NodeId, Gossip), usize>,
    /// The bound of each of a link's two gossip queues.
    gossip_queue_max: usize,
    /// Gossip refused because its link's queue was full, and dropped
    /// because it waited past its deadline.
    pub refused_full: u64,
    pub expired: u64,
}

fn slot(source: Source) -> usize {
    match source {
        Source::Swarm => 0,
        Source::Api => 1,
        Source::Consensus => 2,
        Source::Tick => 3,
    }
}

impl<T> Inbox<T> {
    pub fn new(gossip_per_link_max: usize) -> Inbox<T> {
        Inbox {
            queues: Default::default(),
            gossip_per_link: BTreeMap::new(),
            gossip_queue_max: (gossip_per_link_max / 2).max(1),
            refused_full: 0,
            expired: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.iter().all(VecDeque::is_empty)
    }

    /// Whether the `kind` queue from `link` is full: a sender finds out
    /// when it tries to queue a message (gossipsub's `send_message` fails).
    pub fn gossip_full(&self, link: NodeId, kind: Gossip) -> bool {
        self.gossip_per_link.get(&(link, kind)).copied().unwrap_or(0) >= self.gossip_queue_max
    }

    /// Queues a gossip message from `link` sent as `kind`, that may wait
    /// until `deadline_us`.
    pub fn push_gossip(
        &mut self,
        link: NodeId,
        kind: Gossip,
        deadline_us: TimeUs,
        item: T,
    ) -> Result<(), LinkFull> {
        let count = self.gossip_per_link.entry((link, kind)).or_default();
        if *count >= self.gossip_queue_max {
            self.refused_full += 1;
            return Err(LinkFull { link, kind });
        }
        *count += 1;
        self.queues[slot(Source::Swarm)].push_back(Queued {
            gossip_link: Some((link, kind)),
            deadline_us: Some(deadline_us),
            item,
        });
        Ok(())
    }

    /// Queues anything else from `source`: it waits as long as it takes.
    pub fn push(&mut self, source: Source, item: T) {
        self.queues[slot(source)].push_back(Queued { gossip_link: None, deadline_us: None, item });
    }

    /// The next item still within its deadline at `now_us`, from a source
    /// `draw(n)` picks among the `n` that hold something (older gossip is
    /// dropped on the way, and counted).
    pub fn pop(&mut self, now_us: TimeUs, mut draw: impl FnMut(u64) -> u64) -> Option<(Source, T)> {
        loop {
            let ready: Vec<Source> =
                SOURCES.into_iter().filter(|source| !self.queues[slot(*source)].is_empty()).collect();
            if ready.is_empty() {
                return None;
            }
            let pick = usize::try_from(draw(ready.len() as u64)).unwrap_or(0).min(ready.len() - 1);
            let source = ready[pick];
            if let Some(item) = self.pop_from(source, now_us, |_| true) {
                return Some((source, item));
            }
        }
    }

    /// The next item from `source` if `wanted` accepts it (expired gossip is
    /// dropped on the way).
    pub fn pop_from(&mut self, source: Source, now_us: TimeUs, wanted: impl Fn(&T) -> bool) -> Option<T> {
        loop {
            let queue = &mut self.queues[slot(source)];
            let next = queue.front()?;
            let expired = next.deadline_us.is_some_and(|deadline| deadline < now_us);
            if !expired && !wanted(&next.item) {
                return None;
            }
            let queued = queue.pop_front()?;
            if let Some(link) = queued.gossip_link
                && let Some(count) = self.gossip_per_link.get_mut(&link)
            {
                *count -= 1;
                if *count == 0 {
                    self.gossip_per_link.remove(&link);
                }
            }
            if expired {
                self.expired += 1;
                continue;
            }
            return Some(queued.item);
        }
    }

    /// Empties every queue (a node that crashed loses them).
    pub fn clear(&mut self) {
        for queue in &mut self.queues {
            queue.clear();
        }
        self.gossip_per_link.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Always the first source that holds something.
    fn first(_: u64) -> u64 {
        0
    }

    #[test]
    fn gossip_is_bounded_per_link_and_kind_and_each_source_waits_in_arrival_order() {
        use Gossip::{Forwarded, Published};
        let mut inbox = Inbox::new(4);
        assert!(inbox.push_gossip(1, Published, 100, "a").is_ok());
        inbox.push(Source::Tick, "tick");
        assert!(inbox.push_gossip(1, Published, 100, "b").is_ok());
        assert!(inbox.gossip_full(1, Published) && !inbox.gossip_full(1, Forwarded));
        assert_eq!(inbox.push_gossip(1, Published, 100, "c"), Err(LinkFull { link: 1, kind: Published }));
        assert!(inbox.push_gossip(2, Published, 100, "d").is_ok(), "another link has its own bound");
        assert_eq!(inbox.refused_full, 1);
        assert_eq!(inbox.pop(0, first), Some((Source::Swarm, "a")));
        assert!(inbox.push_gossip(1, Published, 100, "e").is_ok(), "room again");
        let rest: Vec<_> = std::iter::from_fn(|| inbox.pop(0, first).map(|(_, item)| item)).collect();
        assert_eq!(rest, ["b", "d", "e", "tick"]);
        assert!(inbox.is_empty());
    }

    #[test]
    fn the_draw_picks_among_the_sources_that_hold_something() {
        let mut inbox = Inbox::new(10);
        inbox.push_gossip(1, Gossip::Published, 100, 1).unwrap();
        inbox.push(Source::Consensus, 2);
        inbox.push(Source::Api, 3);
        // Three sources ready: Swarm, Api, Consensus; the draw says the last.
        let mut offered = Vec::new();
        let mut last = |ready: u64| {
            offered.push(ready);
            ready - 1
        };
        assert_eq!(inbox.pop(0, &mut last), Some((Source::Consensus, 2)));
        assert_eq!(inbox.pop(0, &mut last), Some((Source::Api, 3)));
        assert_eq!(inbox.pop(0, &mut last), Some((Source::Swarm, 1)));
        assert_eq!(inbox.pop(0, &mut last), None);
        assert_eq!(offered, [3, 2, 1]);
    }

    #[test]
    fn gossip_past_its_deadline_is_dropped_when_its_turn_comes() {
        let mut inbox = Inbox::new(10);
        inbox.push_gossip(1, Gossip::Forwarded, 50, 1).unwrap();
        inbox.push_gossip(1, Gossip::Published, 500, 2).unwrap();
        inbox.push_gossip(2, Gossip::Published, 500, 3).unwrap();
        inbox.push_gossip(2, Gossip::Forwarded, 50, 4).unwrap();
        assert_eq!(inbox.pop(100, first), Some((Source::Swarm, 2)), "1 waited past its deadline");
        assert_eq!(inbox.expired, 1);
        // Only an item the caller wants is taken; an expired one is dropped
        // on the way.
        assert_eq!(inbox.pop_from(Source::Swarm, 100, |item| *item == 4), None);
        assert_eq!(inbox.pop_from(Source::Swarm, 100, |item| *item == 3), Some(3));
        assert_eq!(inbox.pop_from(Source::Swarm, 100, |item| *item == 4), None, "4 expired too");
        assert_eq!(inbox.expired, 2);
        assert!(inbox.is_empty());
    }
}
