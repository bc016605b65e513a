//! Criterion benchmarks of the ledger's hot paths: executing a block of 10k
//! offers whose signatures were verified at admission, and auditing an
//! export (signatures, certificates, re-execution) in transactions per second.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use gridshare_ledger::audit::audit_export;
use gridshare_ledger::block::CertifiedBlock;
use gridshare_ledger::block::CommitCertificate;
use gridshare_ledger::execute::{Signatures, build_block, execute};
use gridshare_ledger::export::ExportWriter;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::state::State;
use gridshare_ledger::testkit::{SplitMix64, TestCommunity, test_market};
use gridshare_ledger::tx::{Side, SignedTx};

const HOUSEHOLDS: u32 = 10_000;
const T0: u64 = 1_000_000;

/// A community of 10k registered households, the state after registering
/// them, and a block in which each offers once for the same interval.
fn setup() -> (Genesis, Vec<CertifiedBlock>, State) {
    let mut community = TestCommunity::new(11, HOUSEHOLDS, test_market(), T0);
    let proposer = community.validator.public();
    let genesis = community.genesis.clone();
    let registrations = community.registrations();
    let first = build_block(
        &genesis,
        &State::genesis(&genesis),
        registrations,
        T0 + 100,
        proposer,
        Signatures::AlreadyVerified,
    )
    .expect("registrations are valid");
    assert!(first.left_out.is_empty());
    let mut random = SplitMix64(5);
    let offers: Vec<SignedTx> = (0..community.households.len())
        .map(|h| {
            let side = if h % 2 == 0 { Side::Sell } else { Side::Buy };
            let attestation = community.reading(h, 0, 0, 0);
            let energy_wh = random.between(100, 1_500);
            let price = random.between(50_000, 400_000);
            community.offer_tx(h, 1, 2, side, energy_wh, price, attestation)
        })
        .collect();
    let second = build_block(&genesis, &first.state, offers, T0 + 200, proposer, Signatures::AlreadyVerified)
        .expect("offers are valid");
    assert!(second.left_out.is_empty(), "{:?}", &second.left_out[..1]);
    let certify = |block: gridshare_ledger::block::Block| {
        let certificate = CommitCertificate::sign(&block.header, 0, &[&community.validator]);
        CertifiedBlock { block, certificate }
    };
    let state = first.state.clone();
    (genesis, vec![certify(first.block), certify(second.block)], state)
}

fn bench(c: &mut Criterion) {
    let (genesis, chain, state_before_offers) = setup();
    let offers_block = &chain[1].block;

    let mut group = c.benchmark_group("execute");
    group.sample_size(20);
    group.throughput(Throughput::Elements(offers_block.transactions.len() as u64));
    group.bench_function("block_of_10k_offers", |b| {
        b.iter(|| {
            execute(&genesis, &state_before_offers, offers_block, Signatures::AlreadyVerified).expect("valid")
        })
    });
    group.finish();

    let mut export = Vec::new();
    let mut writer = ExportWriter::new(&mut export, &genesis).expect("in memory");
    for block in &chain {
        writer.block(block).expect("in memory");
    }
    writer.finish().expect("in memory");
    let transactions: u64 = chain.iter().map(|block| block.block.transactions.len() as u64).sum();
    let mut group = c.benchmark_group("audit");
    group.sample_size(10);
    group.throughput(Throughput::Elements(transactions));
    group.bench_function("export_of_40k_signed_transactions", |b| {
        b.iter_batched(
            || export.clone(),
            |bytes| {
                let report = audit_export(bytes.as_slice(), |_| ()).expect("an export");
                assert!(report.passed());
                report
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
