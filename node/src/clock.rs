//! The node's clock as a value: the system clock plus a configured skew
//! (`run --clock-skew-ms`, for testnets that exercise a node whose clock is
//! wrong). The event loop owns one and reads it once per event; everything
//! below the loop (the chain core, consensus's checks, the API's reads) is
//! handed that reading as `now_ms`, so nothing else in the node reads a
//! clock and a simulator can pass simulated time instead.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch from the system clock, skewed by a
/// fixed amount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    skew_ms: i64,
}

impl Clock {
    /// The system clock as it is.
    pub fn system() -> Clock {
        Clock { skew_ms: 0 }
    }

    /// The system clock `skew_ms` ahead (negative: behind).
    pub fn skewed(skew_ms: i64) -> Clock {
        Clock { skew_ms }
    }

    /// The configured skew.
    pub fn skew_ms(&self) -> i64 {
        self.skew_ms
    }

    /// Milliseconds since the Unix epoch, plus the skew. A system clock
    /// before 1970 reads as 0, and the sum saturates rather than wraps.
    pub fn now_ms(&self) -> u64 {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        system.saturating_add_signed(self.skew_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::Clock;

    #[test]
    fn a_skewed_clock_reads_the_system_clock_moved_by_its_skew() {
        let ahead = Clock::skewed(3_600_000);
        let before = Clock::system().now_ms();
        let skewed = ahead.now_ms();
        let after = Clock::system().now_ms();
        assert!(before + 3_600_000 <= skewed && skewed <= after + 3_600_000, "{before} {skewed} {after}");
        assert_eq!(Clock::skewed(i64::MIN).now_ms(), 0, "saturates at the epoch");
        assert_eq!(ahead.skew_ms(), 3_600_000);
    }
}
