//! Summary statistics of measurements (latencies in the testnet's report
//! and the throughput benchmark), defined once so that both report the
//! same statistic.

/// The `percent` percentile of `sorted` (ascending) by the nearest-rank
/// method: the smallest sample such that at least `percent` % of the
/// samples are at or below it, i.e. the sample of rank ⌈percent/100 × n⌉
/// (rank 1 for 0 %). `None` without samples; `percent` above 100 is 100.
pub fn percentile(sorted: &[u64], percent: u32) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let percent = usize::try_from(percent.min(100)).unwrap_or(100);
    let rank = (sorted.len().saturating_mul(percent)).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50), Some(50));
        assert_eq!(percentile(&samples, 99), Some(99));
        assert_eq!(percentile(&samples, 100), Some(100));
        assert_eq!(percentile(&samples, 0), Some(1));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[], 50), None);
        // Ten samples: the p99 is the largest, the p50 the fifth.
        let ten: Vec<u64> = (1..=10).map(|sample| sample * 10).collect();
        assert_eq!(percentile(&ten, 99), Some(100));
        assert_eq!(percentile(&ten, 50), Some(50));
        assert_eq!(percentile(&ten, 51), Some(60));
    }
}
