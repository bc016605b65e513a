//! Criterion benchmarks of `clear` on books of 1k to 1M orders, with many
//! price ties and with few, in random order and in id order (as the ledger
//! passes offers, from its id-keyed state). Cloning the input is not timed.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gridshare_matching::{Params, clear};

mod book;
use book::{Ties, book};

fn bench_clear(c: &mut Criterion) {
    let params = Params::uniform(500).with_network_fee(30_000);
    for ties in [Ties::Many, Ties::Few] {
        for in_id_order in [false, true] {
            let order = if in_id_order { "id_order" } else { "random_order" };
            let mut group = c.benchmark_group(format!("clear/{ties:?}_ties/{order}").to_lowercase());
            for count in [1_000, 10_000, 100_000, 1_000_000] {
                if count >= 100_000 {
                    group.sample_size(10);
                }
                let mut orders = book(count, ties, 42);
                if in_id_order {
                    orders.sort_unstable_by_key(|order| order.id);
                }
                group.throughput(Throughput::Elements(count as u64));
                group.bench_with_input(BenchmarkId::from_parameter(count), &orders, |b, orders| {
                    b.iter_batched(|| orders.clone(), |orders| clear(orders, &params), BatchSize::LargeInput)
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, bench_clear);
criterion_main!(benches);
