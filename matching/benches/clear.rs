//! Criterion benchmarks of `clear` on books of 1k to 1M orders, with many
//! price ties and with few. The input is cloned outside the timed part.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gridshare_matching::{Params, clear};

mod book;
use book::{Ties, book};

fn bench_clear(c: &mut Criterion) {
    let params = Params::uniform(500).with_network_fee(30_000);
    for ties in [Ties::Many, Ties::Few] {
        let mut group = c.benchmark_group(format!("clear/{ties:?}_ties").to_lowercase());
        for count in [1_000, 10_000, 100_000, 1_000_000] {
            if count >= 100_000 {
                group.sample_size(10);
            }
            let orders = book(count, ties, 42);
            group.throughput(Throughput::Elements(count as u64));
            group.bench_with_input(BenchmarkId::from_parameter(count), &orders, |b, orders| {
                b.iter_batched(|| orders.clone(), |orders| clear(orders, &params), BatchSize::LargeInput)
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_clear);
criterion_main!(benches);
