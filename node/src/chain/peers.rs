//! The peer book: how many invalid messages each peer sent, and which peers
//! are banned until when (times in ms, as the core is handed them). Only
//! invalid data counts, never the gossip score as a whole: its delivery and
//! behaviour penalties also sink an honest peer that is merely overloaded.

use std::collections::BTreeMap;

use libp2p::PeerId;

use crate::network::BANNED_PEERS_MAX;

/// Invalid messages (garbage, oversized, bad signatures, invalid blocks)
/// after which a peer is banned.
pub const INVALID_MESSAGES_BAN: u32 = 3;
/// How long a peer that sent invalid data stays banned.
pub const BAN_DURATION_MS: u64 = 600_000;

/// Invalid-message counts and bans, each bounded by [`BANNED_PEERS_MAX`]
/// peers; ordered maps, so what it returns is in peer order.
#[derive(Debug, Default)]
pub struct PeerBook {
    invalid_messages: BTreeMap<PeerId, u32>,
    banned_until_ms: BTreeMap<PeerId, u64>,
}

impl PeerBook {
    /// Counts an invalid message from `peer` at `now_ms`; the count that
    /// bans it, if this one does. A peer the book has no room for goes
    /// uncounted; a full list of bans bans no one more.
    pub fn count_invalid(&mut self, peer: PeerId, now_ms: u64) -> Option<u32> {
        if !self.invalid_messages.contains_key(&peer) && self.invalid_messages.len() >= BANNED_PEERS_MAX {
            return None;
        }
        let count = self.invalid_messages.entry(peer).or_default();
        *count += 1;
        let count = *count;
        if count >= INVALID_MESSAGES_BAN
            && self.banned_until_ms.len() < BANNED_PEERS_MAX
            && self.banned_until_ms.insert(peer, now_ms.saturating_add(BAN_DURATION_MS)).is_none()
        {
            self.invalid_messages.remove(&peer);
            return Some(count);
        }
        None
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
        self.invalid_messages.get(peer).copied().unwrap_or(0)
    }
}
