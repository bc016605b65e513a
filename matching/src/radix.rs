//! A stable least-significant-digit radix sort of sort keys by price rank.
//!
//! The keys of each side are built in id order, so a *stable* sort by price
//! rank alone leaves them in (price, id) order. Radix sorting one million keys
//! takes a fraction of what a comparison sort does, and digits that every key
//! shares (the high bytes of realistic prices) cost one counting pass only.

use crate::auction::Key;

/// Sorts `keys` stably by `price_rank`. `scratch` is reused between calls.
pub(crate) fn sort_by_price_rank(keys: &mut Vec<Key>, scratch: &mut Vec<Key>) {
    const DIGITS: usize = size_of::<u64>();
    let mut counts = [[0_usize; 256]; DIGITS];
    for key in keys.iter() {
        for (digit, byte) in key.price_rank.to_le_bytes().into_iter().enumerate() {
            counts[digit][usize::from(byte)] += 1;
        }
    }
    scratch.clear();
    scratch.resize(keys.len(), Key::default());
    for (digit, count) in counts.iter().enumerate() {
        // A digit that all keys share does not reorder anything.
        if count.contains(&keys.len()) {
            continue;
        }
        let mut next = [0_usize; 256];
        let mut sum = 0;
        for (slot, n) in next.iter_mut().zip(count) {
            *slot = sum;
            sum += n;
        }
        for key in keys.iter() {
            let bucket = usize::from(key.price_rank.to_le_bytes()[digit]);
            scratch[next[bucket]] = *key;
            next[bucket] += 1;
        }
        std::mem::swap(keys, scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_stably_by_price_rank() {
        let ranks = [7_u64, u64::MAX, 0, 7, 1 << 40, 3, 7, u64::MAX - 1, 256, 255, 0, 1 << 63];
        let mut keys: Vec<Key> = ranks
            .iter()
            .enumerate()
            .map(|(position, &price_rank)| Key { price_rank, energy_wh: 1, position })
            .collect();
        let mut expected = keys.clone();
        expected.sort_by_key(|key| key.price_rank); // std's sort_by_key is stable
        sort_by_price_rank(&mut keys, &mut Vec::new());
        assert_eq!(keys, expected);
    }

    #[test]
    fn handles_empty_and_uniform_input() {
        let mut keys = Vec::new();
        sort_by_price_rank(&mut keys, &mut Vec::new());
        assert!(keys.is_empty());
        let mut same: Vec<Key> =
            (0..5).map(|position| Key { price_rank: 42, energy_wh: 1, position }).collect();
        let before = same.clone();
        sort_by_price_rank(&mut same, &mut Vec::new());
        assert_eq!(same, before);
    }
}
