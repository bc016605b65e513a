//! The peer book: how many invalid messages each peer sent, how much
//! useless work it gave this node lately, and which peers are banned until
//! when (times in ms, as the core is handed them). Only invalid data and a
//! flood of useless transactions count, never the gossip score as a whole:
//! its delivery and behaviour penalties also sink an honest peer that is
//! merely overloaded.

use std::collections::BTreeMap;

use libp2p::PeerId;

use crate::network::BANNED_PEERS_MAX;

/// Invalid messages (garbage, oversized, bad signatures, invalid blocks)
/// after which a peer is banned.
pub const INVALID_MESSAGES_BAN: u32 = 3;
/// How long a peer that sent invalid data stays banned.
pub const BAN_DURATION_MS: u64 = 600_000;
/// Transactions a peer may send that this node ignores although it is
/// caught up (replays, unregistered signers, anything the ledger would
/// refuse), beyond those drained at [`WASTED_PER_S`], before that counts as
/// one invalid message; the count then starts again. A stranger that
/// floods such transactions (each costs a decode and a lookup, never a
/// signature check) is banned after [`INVALID_MESSAGES_BAN`] bursts; an
/// honest relay sends them only when its view of the chain briefly
/// differs, far fewer.
pub const WASTED_BURST: u64 = 4_096;
/// How many ignored transactions a peer may send every second without
/// drawing on [`WASTED_BURST`].
pub const WASTED_PER_S: u64 = 256;

/// Invalid-message counts and bans, each bounded by [`BANNED_PEERS_MAX`]
/// peers; ordered maps, so what it returns is in peer order. Peer ids cost
/// nothing to make, so a full book makes room rather than stop counting:
/// the count touched longest ago goes, and the ban that ends first.
#[derive(Debug, Default)]
pub struct PeerBook {
    /// Each peer's count and when it last sent something invalid.
    invalid_messages: BTreeMap<PeerId, (u32, u64)>,
    /// Each peer's ignored transactions not yet drained, in thousandths,
    /// and when it last sent one (a leaky bucket).
    wasted_milli: BTreeMap<PeerId, (u64, u64)>,
    banned_until_ms: BTreeMap<PeerId, u64>,
}

/// A peer the book has just banned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Banned {
    /// The invalid messages that banned it.
    pub count: u32,
    /// A banned peer whose ban was cut short to make room: to be unblocked.
    pub unbanned: Option<PeerId>,
}

impl PeerBook {
    /// Counts an invalid message from `peer` at `now_ms`; the ban, if this
    /// message earns one.
    pub fn count_invalid(&mut self, peer: PeerId, now_ms: u64) -> Option<Banned> {
        if !self.invalid_messages.contains_key(&peer) && self.invalid_messages.len() >= BANNED_PEERS_MAX {
            let stalest = self.invalid_messages.iter().min_by_key(|(id, (_, last_ms))| (*last_ms, **id));
            if let Some(stalest) = stalest.map(|(id, _)| *id) {
                self.invalid_messages.remove(&stalest);
            }
        }
        let (count, last_ms) = self.invalid_messages.entry(peer).or_default();
        *count += 1;
        *last_ms = now_ms;
        let count = *count;
        if count < INVALID_MESSAGES_BAN || self.banned_until_ms.contains_key(&peer) {
            return None;
        }
        let mut unbanned = None;
        if self.banned_until_ms.len() >= BANNED_PEERS_MAX {
            unbanned = self
                .banned_until_ms
                .iter()
                .min_by_key(|(id, until_ms)| (**until_ms, **id))
                .map(|(id, _)| *id);
            if let Some(unbanned) = unbanned {
                self.banned_until_ms.remove(&unbanned);
            }
        }
        self.banned_until_ms.insert(peer, now_ms.saturating_add(BAN_DURATION_MS));
        self.invalid_messages.remove(&peer);
        self.wasted_milli.remove(&peer);
        Some(Banned { count, unbanned })
    }

    /// Counts a transaction from `peer` that this node ignored at `now_ms`
    /// while caught up; whether it overflows [`WASTED_BURST`] (to be
    /// counted as an invalid message, and the bucket emptied).
    pub fn count_wasted(&mut self, peer: PeerId, now_ms: u64) -> bool {
        if !self.wasted_milli.contains_key(&peer) && self.wasted_milli.len() >= BANNED_PEERS_MAX {
            let stalest = self.wasted_milli.iter().min_by_key(|(id, (_, last_ms))| (*last_ms, **id));
            if let Some(stalest) = stalest.map(|(id, _)| *id) {
                self.wasted_milli.remove(&stalest);
            }
        }
        let (level_milli, last_ms) = self.wasted_milli.entry(peer).or_insert((0, now_ms));
        // WASTED_PER_S per second is that many thousandths per ms.
        let drained_milli = now_ms.saturating_sub(*last_ms).saturating_mul(WASTED_PER_S);
        *level_milli = level_milli.saturating_sub(drained_milli).saturating_add(1_000);
        *last_ms = now_ms;
        if *level_milli > WASTED_BURST * 1_000 {
            *level_milli = 0;
            return true;
        }
        false
    }

    /// Lifts the bans that ended at or before `now_ms`; the peers, in order.
    pub fn lift_expired(&mut self, now_ms: u64) -> Vec<PeerId> {
        let expired: Vec<PeerId> = self
            .banned_until_ms
            .iter()
            .filter(|(_, until_ms)| **until_ms <= now_ms)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in &expired {
            self.banned_until_ms.remove(peer);
        }
        expired
    }

    /// When `peer`'s ban ends, if it is banned.
    pub fn banned_until_ms(&self, peer: &PeerId) -> Option<u64> {
        self.banned_until_ms.get(peer).copied()
    }

    /// How many invalid messages `peer` sent since its last ban.
    pub fn invalid_messages(&self, peer: &PeerId) -> u32 {
        self.invalid_messages.get(peer).map_or(0, |(count, _)| *count)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn peer(n: u32) -> PeerId {
        let mut seed = [0_u8; 32];
        seed[..4].copy_from_slice(&n.to_le_bytes());
        libp2p::identity::Keypair::ed25519_from_bytes(seed).unwrap().public().to_peer_id()
    }

    #[test]
    fn a_flood_of_ignored_transactions_counts_as_invalid_a_trickle_never() {
        let mut book = PeerBook::default();
        let (flooder, relay) = (peer(1), peer(2));
        // The flood: WASTED_BURST at one instant fit, the next overflows.
        for _ in 0..WASTED_BURST {
            assert!(!book.count_wasted(flooder, 1_000));
        }
        assert!(book.count_wasted(flooder, 1_000));
        // Emptied: a new burst fits again.
        assert!(!book.count_wasted(flooder, 1_000));
        // A relay sending them at the drain rate for an hour never overflows.
        let pause_ms = 1_000 / WASTED_PER_S + 1;
        for n in 0..3_600 * WASTED_PER_S {
            assert!(!book.count_wasted(relay, n * pause_ms), "{n}");
        }
        // Twice the rate fills the bucket within 2 × WASTED_BURST / rate s.
        let mut overflowed_at_ms = None;
        for n in 0..4 * WASTED_BURST {
            let at_ms = 10_000_000 + n * pause_ms / 2;
            if book.count_wasted(relay, at_ms) {
                overflowed_at_ms = Some(at_ms - 10_000_000);
                break;
            }
        }
        let overflowed_at_ms = overflowed_at_ms.expect("twice the drain rate overflows");
        assert!(overflowed_at_ms <= 2 * WASTED_BURST * 1_000 / WASTED_PER_S, "{overflowed_at_ms}");
    }

    #[test]
    fn throwaway_peer_ids_cannot_stop_the_book_counting_or_banning() {
        let mut book = PeerBook::default();
        let n = u32::try_from(BANNED_PEERS_MAX).unwrap();
        // A full count of peers that each sent one invalid message...
        for i in 0..n {
            assert_eq!(book.count_invalid(peer(i), u64::from(i)), None);
        }
        // ...still counts a new offender, forgetting the stalest count.
        let offender = peer(n);
        for _ in 1..INVALID_MESSAGES_BAN {
            assert_eq!(book.count_invalid(offender, 10_000), None);
        }
        assert_eq!(book.invalid_messages(&peer(0)), 0, "the stalest count made room");
        assert_eq!(
            book.count_invalid(offender, 10_000),
            Some(Banned { count: INVALID_MESSAGES_BAN, unbanned: None })
        );
        assert_eq!(book.banned_until_ms(&offender), Some(10_000 + BAN_DURATION_MS));

        // A full list of bans bans the next offender too, cutting short the
        // ban that ends first.
        let mut book = PeerBook::default();
        for i in 0..n {
            for _ in 0..INVALID_MESSAGES_BAN {
                book.count_invalid(peer(i), u64::from(i));
            }
        }
        assert!(book.banned_until_ms(&peer(0)).is_some());
        let mut banned = None;
        for _ in 0..INVALID_MESSAGES_BAN {
            banned = book.count_invalid(offender, 20_000);
        }
        assert_eq!(banned, Some(Banned { count: INVALID_MESSAGES_BAN, unbanned: Some(peer(0)) }));
        assert_eq!(book.banned_until_ms(&peer(0)), None);
        assert!(book.banned_until_ms(&offender).is_some());
    }
}
