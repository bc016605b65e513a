//! A stable least-significant-digit radix sort of sort keys by price rank.
//!
//! The keys of each side are built in id order, so a *stable* sort by price
//! rank alone leaves them in (price, id) order. Radix sorting one million keys
//! takes a fraction of what a comparison sort does. Only the bits in which the
//! ranks differ are sorted on: realistic prices span about 20 bits, which two
//! passes of 10-bit digits cover.

use crate::auction::Key;

/// The widest digit: the counts of 2¹¹ buckets, and the write positions of as
/// many, stay in the first levels of cache.
const DIGIT_BITS_MAX: u32 = 11;
const BUCKETS_MAX: usize = 1 << DIGIT_BITS_MAX;

/// Sorts `keys` stably by `price_rank`. `varying` has the bits in which some
/// ranks differ (a superset will do); `scratch` is reused between calls.
pub(crate) fn sort_by_price_rank(keys: &mut Vec<Key>, scratch: &mut Vec<Key>, varying: u64) {
    if varying == 0 || keys.len() < 2 {
        return;
    }
    // Digits of equal width cover the bits from the lowest to the highest
    // varying one.
    let low = varying.trailing_zeros();
    let bits = u64::BITS - varying.leading_zeros() - low;
    let passes = bits.div_ceil(DIGIT_BITS_MAX);
    let width = bits.div_ceil(passes);
    let shifts: Vec<u32> = (0..passes).map(|pass| low + pass * width).collect();
    let mask = (1 << width) - 1;
    let digit = |price_rank: u64, shift: u32| {
        let digit = usize::try_from((price_rank >> shift) & mask).expect("digits fit a usize");
        // A no-op that tells the compiler the counts need no bounds checks.
        digit & (BUCKETS_MAX - 1)
    };

    let mut counts = vec![[0_usize; BUCKETS_MAX]; shifts.len()];
    for key in keys.iter() {
        for (count, &shift) in counts.iter_mut().zip(&shifts) {
            count[digit(key.price_rank, shift)] += 1;
        }
    }
    // Every slot of `scratch` is written before it is read: what it holds
    // from an earlier call does not matter, only its length.
    scratch.truncate(keys.len());
    scratch.resize(keys.len(), Key::default());
    for (count, &shift) in counts.iter_mut().zip(&shifts) {
        // A digit that all keys share does not reorder anything.
        if count.contains(&keys.len()) {
            continue;
        }
        // Turn the counts into each bucket's next write position.
        let mut sum = 0;
        for slot in count.iter_mut() {
            let n = *slot;
            *slot = sum;
            sum += n;
        }
        for key in keys.iter() {
            let next = &mut count[digit(key.price_rank, shift)];
            scratch[*next] = *key;
            *next += 1;
        }
        std::mem::swap(keys, scratch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varying(keys: &[Key]) -> u64 {
        let any = keys.iter().fold(0, |any, key| any | key.price_rank);
        let all = keys.iter().fold(u64::MAX, |all, key| all & key.price_rank);
        any & !all
    }

    #[test]
    fn sorts_stably_by_price_rank() {
        let ranks = [7_u64, u64::MAX, 0, 7, 1 << 40, 3, 7, u64::MAX - 1, 256, 255, 0, 1 << 63];
        let mut keys: Vec<Key> = (0..)
            .zip(ranks)
            .map(|(energy_position, price_rank)| Key { price_rank, energy_position })
            .collect();
        let mut expected = keys.clone();
        expected.sort_by_key(|key| key.price_rank); // std's sort_by_key is stable
        let bits = varying(&keys);
        sort_by_price_rank(&mut keys, &mut Vec::new(), bits);
        assert_eq!(keys, expected);
    }

    #[test]
    fn sorts_on_the_varying_bits_only() {
        // Ranks that share their high and low bits, as prices on a grid do.
        let mut keys: Vec<Key> = (0..5_000_u64)
            .map(|energy_position| Key {
                price_rank: (u64::MAX << 40) | ((energy_position * 7_919 % 1_013) << 4) | 0b1010,
                energy_position,
            })
            .collect();
        let mut expected = keys.clone();
        expected.sort_by_key(|key| key.price_rank);
        let bits = varying(&keys);
        sort_by_price_rank(&mut keys, &mut Vec::new(), bits);
        assert_eq!(keys, expected);
    }

    #[test]
    fn reuses_scratch_of_any_length() {
        let keys_of = |count: u64, step: u64| -> Vec<Key> {
            (0..count)
                .map(|energy_position| Key { price_rank: energy_position * step % 997, energy_position })
                .collect()
        };
        let mut scratch = Vec::new();
        // A long side, then a short one, then a long one again, one scratch.
        for (count, step) in [(3_000, 7), (5, 3), (4_000, 11)] {
            let mut keys = keys_of(count, step);
            let mut expected = keys.clone();
            expected.sort_by_key(|key| key.price_rank);
            let bits = varying(&keys);
            sort_by_price_rank(&mut keys, &mut scratch, bits);
            assert_eq!(keys, expected);
        }
    }

    #[test]
    fn handles_empty_and_uniform_input() {
        let mut keys = Vec::new();
        sort_by_price_rank(&mut keys, &mut Vec::new(), 0);
        assert!(keys.is_empty());
        let mut same: Vec<Key> =
            (0..5).map(|energy_position| Key { price_rank: 42, energy_position }).collect();
        let before = same.clone();
        sort_by_price_rank(&mut same, &mut Vec::new(), 0);
        assert_eq!(same, before);
    }
}
