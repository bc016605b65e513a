//! The drop log: the transactions that left this node's mempool without a
//! block lately, each with the height after which it left and why, so that
//! whoever was told a transaction was admitted can ask what became of it
//! (`GET /v1/transactions/{id}`). Bounded: the oldest record goes first.

use std::collections::{BTreeMap, VecDeque};

use gridshare_ledger::Hash;
use gridshare_ledger::execute::Rejection;

/// Dropped transactions remembered at most: two full mempools' worth.
pub const DROPPED_REMEMBERED_MAX: usize = 2 * crate::mempool::MEMPOOL_TRANSACTIONS_MAX;

/// Why a transaction left the mempool without a block, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// The height of the block after which it no longer fitted.
    pub height: u64,
    pub reason: Rejection,
}

/// The last [`DROPPED_REMEMBERED_MAX`] drops, by transaction id.
#[derive(Debug, Default)]
pub struct DropLog {
    /// Each record with the sequence number it was logged under: a
    /// transaction admitted again and dropped again has one record, the
    /// newest.
    by_id: BTreeMap<Hash, (u64, Dropped)>,
    /// Ids in the order they were logged, with their sequence numbers.
    order: VecDeque<(u64, Hash)>,
    next_sequence: u64,
}

impl DropLog {
    /// Logs that `id` was dropped, forgetting the oldest record if the log
    /// is full.
    pub fn record(&mut self, id: Hash, dropped: Dropped) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.by_id.insert(id, (sequence, dropped));
        self.order.push_back((sequence, id));
        while self.order.len() > DROPPED_REMEMBERED_MAX {
            let Some((sequence, id)) = self.order.pop_front() else { break };
            if self.by_id.get(&id).is_some_and(|(newest, _)| *newest == sequence) {
                self.by_id.remove(&id);
            }
        }
    }

    /// Why `id` was dropped, if it was lately.
    pub fn get(&self, id: &Hash) -> Option<&Dropped> {
        self.by_id.get(id).map(|(_, dropped)| dropped)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(interval: u64) -> Rejection {
        Rejection::IntervalClosed { interval, gate_closure_ms: 1_000, time_ms: 1_200 }
    }

    #[test]
    fn the_newest_record_of_an_id_is_kept_and_the_oldest_ids_go_first() {
        let mut log = DropLog::default();
        let first = Hash([1; 32]);
        log.record(first, Dropped { height: 3, reason: closed(1) });
        log.record(first, Dropped { height: 9, reason: closed(2) });
        assert_eq!(log.get(&first).map(|dropped| dropped.height), Some(9));
        assert_eq!(log.len(), 1);
        for n in 0..DROPPED_REMEMBERED_MAX {
            let mut bytes = [0_u8; 32];
            bytes[..8].copy_from_slice(&(n as u64).to_le_bytes());
            bytes[31] = 2;
            log.record(Hash(bytes), Dropped { height: 10, reason: closed(3) });
        }
        // The first id's two records were the two oldest: both are gone.
        assert_eq!(log.get(&first), None);
        assert_eq!(log.len(), DROPPED_REMEMBERED_MAX);
        assert_eq!(log.order.len(), DROPPED_REMEMBERED_MAX);
    }
}
