//! Criterion benchmarks of the signature rule (docs/PROTOCOL.md §3): a
//! single verification, a batch per signature, the encoding checks added
//! before either, the key check at registration, and what a torsion check
//! of `R` on every signature would add (decoding `R`, then
//! `EdwardsPoint::is_torsion_free`), each against ed25519-zebra's bare
//! verification in the same run.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use curve25519_dalek::edwards::CompressedEdwardsY;
use gridshare_ledger::ids::{PublicKey, Signature};
use gridshare_ledger::testkit::{TestCommunity, derived_key, test_market};
use gridshare_ledger::tx::{SignatureCheck, verify_batch};

/// Signed offers of 256 households: the signatures a node batches.
fn checks() -> Vec<SignatureCheck> {
    let community = TestCommunity::new(17, 256, test_market(), 1_000_000);
    (0..community.households.len())
        .map(|h| {
            let attestation = community.reading(h, 0, 0, 0);
            let offer =
                community.offer_tx(h, 1, 2, gridshare_ledger::tx::Side::Sell, 1_000, 100_000, attestation);
            offer.signature_checks(&community.genesis.community_id).swap_remove(0)
        })
        .collect()
}

fn r_of(signature: &Signature) -> CompressedEdwardsY {
    CompressedEdwardsY(signature.0[..32].try_into().expect("32 bytes"))
}

fn bench(c: &mut Criterion) {
    let checks = checks();
    let one = &checks[0];
    let zebra_key = ed25519_zebra::VerificationKey::try_from(one.key.0).expect("a valid key");
    let zebra_signature = ed25519_zebra::Signature::from(one.signature.0);

    let mut group = c.benchmark_group("signature");
    group.bench_function("zebra_single_verify", |b| {
        b.iter(|| zebra_key.verify(&zebra_signature, &one.message).expect("valid"))
    });
    group.bench_function("single_verify", |b| {
        b.iter(|| one.key.verify(&one.message, &one.signature).expect("valid"))
    });
    group.bench_function("encoding_checks", |b| {
        b.iter(|| one.key.check_encodings(&one.signature).expect("valid"))
    });
    let r = r_of(&one.signature);
    group.bench_function("decode_r", |b| b.iter(|| r.decompress().expect("a point")));
    let r_point = r.decompress().expect("a point");
    group.bench_function("is_torsion_free_r", |b| b.iter(|| r_point.is_torsion_free()));
    // The same check in variable time: [ℓ − 1]R = −R.
    let minus_one = -curve25519_dalek::Scalar::ONE;
    group.bench_function("vartime_torsion_free_r", |b| {
        b.iter(|| {
            curve25519_dalek::EdwardsPoint::vartime_double_scalar_mul_basepoint(
                &minus_one,
                &r_point,
                &curve25519_dalek::Scalar::ZERO,
            ) == -r_point
        })
    });
    let keys: Vec<PublicKey> = (0..64).map(|index| derived_key(5, 3, index).public()).collect();
    let mut next = 0;
    group.bench_function("key_validate", |b| {
        b.iter(|| {
            next = (next + 1) % keys.len();
            keys[next].validate().expect("valid")
        })
    });
    group.finish();

    for size in [64, 256] {
        let batch = &checks[..size];
        let mut group = c.benchmark_group(format!("batch_of_{size}"));
        group.throughput(Throughput::Elements(size as u64));
        group.bench_function("zebra_batch", |b| {
            b.iter(|| {
                let mut verifier = ed25519_zebra::batch::Verifier::new();
                for check in batch {
                    verifier.queue((
                        ed25519_zebra::VerificationKeyBytes::from(check.key.0),
                        ed25519_zebra::Signature::from(check.signature.0),
                        &check.message,
                    ));
                }
                verifier.verify(rand_core::OsRng).expect("valid")
            })
        });
        group.bench_function("verify_batch", |b| b.iter(|| verify_batch(batch).expect("valid")));
        group.bench_function("verify_batch_and_torsion_of_r", |b| {
            b.iter(|| {
                for check in batch {
                    assert!(r_of(&check.signature).decompress().expect("a point").is_torsion_free());
                }
                verify_batch(batch).expect("valid")
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
