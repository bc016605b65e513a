//! Criterion benchmarks of `clear` on books of 1k to 1M orders, with many
//! price ties and with few, in random order and in id order (as the ledger
//! passes offers, from its id-keyed state); and of `clear_zonal` on the same
//! books in 20 zones, with limits that bind and with none. Cloning the
//! input is not timed.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gridshare_matching::{Params, ZonalOrder, ZoneLimits, clear, clear_zonal};

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

/// Zones in the zonal benchmark.
const ZONES: u32 = 20;

fn bench_zonal(c: &mut Criterion) {
    let params = Params::uniform(500).with_network_fee(30_000);
    // Every other zone's feeder carries at most 100 kWh each way: with
    // orders spread at random over the zones, most of those bind.
    let tight = ZoneLimits { import_wh_max: 100_000, export_wh_max: 100_000 };
    let binding: Vec<ZoneLimits> =
        (0..ZONES).map(|zone| if zone % 2 == 0 { tight } else { ZoneLimits::OPEN }).collect();
    let open: Vec<ZoneLimits> = (0..ZONES).map(|_| ZoneLimits::OPEN).collect();
    for (name, zones) in [("binding_limits", &binding), ("open_limits", &open)] {
        let mut group = c.benchmark_group(format!("clear_zonal/many_ties/random_order/{name}"));
        for count in [100_000, 1_000_000] {
            group.sample_size(10);
            let orders: Vec<ZonalOrder<[u8; 32]>> = book(count, Ties::Many, 42)
                .into_iter()
                .map(|order| ZonalOrder { zone: u32::from(order.id[31]) % ZONES, order })
                .collect();
            group.throughput(Throughput::Elements(count as u64));
            group.bench_with_input(BenchmarkId::from_parameter(count), &orders, |b, orders| {
                b.iter_batched(
                    || orders.clone(),
                    |orders| clear_zonal(orders, zones, &params),
                    BatchSize::LargeInput,
                )
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_clear, bench_zonal);
criterion_main!(benches);
