//! The simulated network: which nodes are linked (households' nodes to
//! every validator, validators to each other, as the testnet wires them),
//! and what becomes of each message on a link: a latency drawn for it,
//! and, when those faults are on, loss, duplication, reordering (an extra
//! delay that lets later messages overtake it) and partitions (a group cut
//! off from everyone else while it lasts). A link keeps its messages in
//! order, as a TCP connection does, unless the reordering fault holds one
//! back; messages on different links race. Every draw comes from the run's
//! one seeded PRNG, in the order messages are sent.

use std::collections::{BTreeMap, BTreeSet};

use gridshare_ledger::testkit::SplitMix64;

use crate::scheduler::TimeUs;

/// A node of the run (validators first, then household nodes; extra
/// peers, such as a flooding one, after them).
pub type NodeId = usize;

/// How links behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// One-way latency of a message, drawn uniformly between these.
    pub latency_us_min: u64,
    pub latency_us_max: u64,
    /// Messages lost, per mille.
    pub loss_per_mille: u64,
    /// Messages delivered twice, per mille (the copy a little later).
    pub duplicate_per_mille: u64,
    /// Messages held back by up to `reorder_delay_us_max` more, per mille.
    pub reorder_per_mille: u64,
    pub reorder_delay_us_max: u64,
}

impl Default for LinkConfig {
    /// A community's nodes on one metropolitan network: 1 to 5 ms one way,
    /// nothing lost, duplicated or reordered.
    fn default() -> Self {
        LinkConfig {
            latency_us_min: 1_000,
            latency_us_max: 5_000,
            loss_per_mille: 0,
            duplicate_per_mille: 0,
            reorder_per_mille: 0,
            reorder_delay_us_max: 20_000,
        }
    }
}

/// What happened to the messages sent, over the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Not sent: the two ends were cut apart by a partition.
    pub cut: u64,
}

/// The links, the partitions in force and the link behaviour.
#[derive(Debug, Default)]
pub struct Network {
    pub config: LinkConfig,
    links: BTreeMap<NodeId, BTreeSet<NodeId>>,
    /// Groups cut off from everyone outside them, by partition number.
    partitions: BTreeMap<u64, BTreeSet<NodeId>>,
    next_partition: u64,
    /// When the last in-order message on each link (from, to) arrives.
    last_arrival_us: BTreeMap<(NodeId, NodeId), TimeUs>,
    pub stats: NetworkStats,
}

impl Network {
    pub fn new(config: LinkConfig) -> Network {
        Network { config, ..Network::default() }
    }

    /// Links `a` and `b` both ways.
    pub fn connect(&mut self, a: NodeId, b: NodeId) {
        if a != b {
            self.links.entry(a).or_default().insert(b);
            self.links.entry(b).or_default().insert(a);
        }
    }

    /// The nodes linked to `node`, in order.
    pub fn links(&self, node: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.links.get(&node).into_iter().flatten().copied()
    }

    pub fn linked(&self, a: NodeId, b: NodeId) -> bool {
        self.links.get(&a).is_some_and(|peers| peers.contains(&b))
    }

    /// Cuts `group` off from every node outside it; the partition's number.
    pub fn partition(&mut self, group: BTreeSet<NodeId>) -> u64 {
        let number = self.next_partition;
        self.next_partition += 1;
        self.partitions.insert(number, group);
        number
    }

    /// Ends partition `number`.
    pub fn heal(&mut self, number: u64) {
        self.partitions.remove(&number);
    }

    /// Whether a partition keeps `a` and `b` apart.
    pub fn cut(&self, a: NodeId, b: NodeId) -> bool {
        self.partitions.values().any(|group| group.contains(&a) != group.contains(&b))
    }

    /// Whether `a` can send to `b` now: linked and not cut apart.
    pub fn reachable(&self, a: NodeId, b: NodeId) -> bool {
        self.linked(a, b) && !self.cut(a, b)
    }

    /// Sends one message from `from` to `to` at `depart_us`: when its
    /// copies arrive (none if it is lost or the ends are cut apart, two if
    /// it is duplicated).
    pub fn transmit(
        &mut self,
        random: &mut SplitMix64,
        from: NodeId,
        to: NodeId,
        depart_us: TimeUs,
    ) -> Vec<TimeUs> {
        if self.cut(from, to) {
            self.stats.cut += 1;
            return Vec::new();
        }
        self.stats.sent += 1;
        let config = self.config;
        if config.loss_per_mille > 0 && random.next_u64() % 1_000 < config.loss_per_mille {
            self.stats.lost += 1;
            return Vec::new();
        }
        let mut arrival = depart_us
            + random.between(config.latency_us_min, config.latency_us_max.max(config.latency_us_min));
        if config.reorder_per_mille > 0 && random.next_u64() % 1_000 < config.reorder_per_mille {
            self.stats.reordered += 1;
            arrival += random.between(1, config.reorder_delay_us_max.max(1));
        } else {
            // In order behind what the link carries already.
            let last = self.last_arrival_us.entry((from, to)).or_default();
            arrival = arrival.max(*last + 1);
            *last = arrival;
        }
        let mut arrivals = vec![arrival];
        if config.duplicate_per_mille > 0 && random.next_u64() % 1_000 < config.duplicate_per_mille {
            self.stats.duplicated += 1;
            arrivals.push(arrival + random.between(1, config.latency_us_max.max(1)));
        }
        arrivals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrivals(network: &mut Network, seed: u64, messages: u64) -> Vec<Vec<TimeUs>> {
        let mut random = SplitMix64(seed);
        (0..messages).map(|number| network.transmit(&mut random, 0, 1, number * 10)).collect()
    }

    #[test]
    fn latency_stays_within_its_bounds_and_a_seed_repeats_every_draw() {
        let mut network = Network::new(LinkConfig::default());
        network.connect(0, 1);
        let first = arrivals(&mut network, 7, 1_000);
        for (number, copies) in (0..).zip(&first) {
            assert_eq!(copies.len(), 1);
            let latency = copies[0] - number * 10;
            assert!((1_000..=5_000).contains(&latency), "{latency}");
        }
        let mut again = Network::new(LinkConfig::default());
        assert_eq!(arrivals(&mut again, 7, 1_000), first);
        assert_ne!(arrivals(&mut again, 8, 1_000), first);
        assert_eq!(network.stats, NetworkStats { sent: 1_000, ..NetworkStats::default() });
    }

    #[test]
    fn a_link_delivers_in_order_and_different_links_race() {
        let mut network = Network::new(LinkConfig::default());
        network.connect(0, 1);
        network.connect(2, 1);
        let mut random = SplitMix64(11);
        let on_link: Vec<TimeUs> =
            (0..200).map(|number| network.transmit(&mut random, 0, 1, number * 100)[0]).collect();
        assert!(on_link.windows(2).all(|pair| pair[0] < pair[1]), "{on_link:?}");
        // A message sent later on another link may arrive first.
        let raced = (0..200).any(|number| {
            let first = network.transmit(&mut random, 0, 1, 100_000 + number * 10_000)[0];
            let second = network.transmit(&mut random, 2, 1, 100_000 + number * 10_000 + 100)[0];
            second < first
        });
        assert!(raced);
    }

    #[test]
    fn loss_duplication_and_reordering_happen_at_about_their_rates() {
        let config = LinkConfig {
            loss_per_mille: 50,
            duplicate_per_mille: 100,
            reorder_per_mille: 200,
            ..LinkConfig::default()
        };
        let mut network = Network::new(config);
        let copies = arrivals(&mut network, 3, 10_000);
        let lost = copies.iter().filter(|copies| copies.is_empty()).count();
        let doubled = copies.iter().filter(|copies| copies.len() == 2).count();
        assert!((400..600).contains(&lost), "{lost} of 10,000 lost at 5%");
        assert!((800..1_100).contains(&doubled), "{doubled} of ~9,500 duplicated at 10%");
        let stats = network.stats;
        assert_eq!((stats.lost, stats.duplicated), (lost as u64, doubled as u64));
        assert!((1_700..2_100).contains(&stats.reordered), "{stats:?}");
        // Held back messages are overtaken by later ones.
        let firsts: Vec<TimeUs> = copies.iter().filter_map(|copies| copies.first().copied()).collect();
        assert!(firsts.windows(2).any(|pair| pair[1] < pair[0]));
        for copies in copies.iter().filter(|copies| copies.len() == 2) {
            assert!(copies[1] > copies[0], "the copy comes later: {copies:?}");
        }
    }

    #[test]
    fn a_partition_cuts_its_group_off_from_the_rest_until_it_heals() {
        let mut network = Network::new(LinkConfig::default());
        for (a, b) in [(0, 1), (0, 2), (1, 2), (2, 3)] {
            network.connect(a, b);
        }
        assert!(network.reachable(0, 2) && !network.reachable(0, 3), "0 and 3 are not linked");
        let number = network.partition(BTreeSet::from([2, 3]));
        assert!(network.reachable(2, 3), "inside the group");
        assert!(!network.reachable(0, 2) && !network.reachable(2, 1));
        assert!(network.reachable(0, 1), "outside the group");
        let mut random = SplitMix64(1);
        assert!(network.transmit(&mut random, 1, 2, 0).is_empty());
        assert_eq!(network.stats.cut, 1);
        network.heal(number);
        assert!(network.reachable(0, 2));
        assert_eq!(network.transmit(&mut random, 1, 2, 0).len(), 1);
        assert_eq!(network.links(2).collect::<Vec<_>>(), [0, 1, 3]);
    }
}
