//! Deterministic random books for the benchmarks: 32-byte ids as the ledger
//! uses them, and prices with many ties or with few.

use gridshare_matching::{Order, Side};

/// How prices are spread.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ties {
    /// 40 price levels, 1 cent apart: most orders share a level.
    Many,
    /// Prices to the micro-currency over 0.05..0.45 per kWh: few ties.
    Few,
}

/// splitmix64: a tiny, well-known generator, so the books are the same on
/// every machine without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// `count` orders, about half of each side, 0.1 to 10 kWh each.
pub(crate) fn book(count: usize, ties: Ties, seed: u64) -> Vec<Order<[u8; 32]>> {
    let mut random = SplitMix64(seed);
    let mut orders = Vec::with_capacity(count);
    for _ in 0..count {
        let mut id = [0_u8; 32];
        for chunk in id.chunks_exact_mut(8) {
            chunk.copy_from_slice(&random.next().to_le_bytes());
        }
        let side = if random.below(2) == 0 { Side::Buy } else { Side::Sell };
        let energy_wh = 100 + random.below(9_901);
        let price_micro_per_kwh = match ties {
            Ties::Many => 50_000 + 10_000 * random.below(40),
            Ties::Few => 50_000 + random.below(400_001),
        };
        orders.push(Order { id, side, energy_wh, price_micro_per_kwh });
    }
    orders
}
