//! Golden test vectors: the canonical bytes and hashes of one of each
//! protocol object, checked in (`tests/vectors/objects.txt`), so that no
//! encoding change slips in unnoticed; plus round trips and strict decoding.
//! Regenerate with `UPDATE_EXPECT=1 cargo test -p gridshare-ledger --test vectors`
//! only for a deliberate, versioned format change.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use borsh::{BorshDeserialize, BorshSerialize};
use expect_test::expect_file;
use gridshare_ledger::Hash;
use gridshare_ledger::block::{
    Bill, Block, BlockHeader, ClearingReceipt, CommitCertificate, Receipt, SettlementReceipt, TradeReceipt,
    Vote, VoteKind, ZoneReceipt, ZoneSettlement, receipt_root, tx_root,
};
use gridshare_ledger::consensus::{
    Equivocation, Proposal, ProposalEquivocation, StreamedBlock, VoteEquivocation,
};
use gridshare_ledger::encoding::{Domain, domain_bytes, from_bytes, to_bytes};
use gridshare_ledger::genesis::{Mechanism, ZoneLimits};
use gridshare_ledger::ids::{Keypair, PublicKey};
use gridshare_ledger::state::{Estimate, Meter, State};
use gridshare_ledger::testkit::{TestCommunity, test_market};
use gridshare_ledger::tx::{MeterReading, Offer, Side, SignedMeterReading, SignedTx, Tx};

fn key(byte: u8) -> Keypair {
    Keypair::from_seed([byte; 32])
}

/// One of each object, built from fixed keys (ed25519 signatures are
/// deterministic, so the bytes are too).
fn objects() -> (TestCommunity, Vec<SignedTx>, Block, CommitCertificate) {
    let community = TestCommunity::new(1, 2, test_market(), 1_700_000_000_000);
    let id = community.genesis.community_id;
    let registrar = &community.registrar;
    let (account, meter) = (key(10), key(11));
    let reading =
        MeterReading { meter: meter.public(), interval: 41, import_wh_total: 12_345, export_wh_total: 678 };
    let attestation = SignedMeterReading::sign(reading, &meter, &id);
    let r = registrar.public();
    let bodies_by_registrar = vec![
        Tx::RegisterAccount {
            registrar: r,
            nonce: 1,
            account: account.public(),
            credit_limit_nano: 5_000_000_000,
        },
        Tx::RegisterMeter {
            registrar: r,
            nonce: 2,
            meter: meter.public(),
            owner: account.public(),
            max_import_w: 11_000,
            max_export_w: 7_000,
            zone: "feeder-3".into(),
        },
        Tx::Credit {
            registrar: r,
            nonce: 3,
            account: account.public(),
            amount_nano: 50_000_000_000,
            reference: "SEPA 2026-11-21".into(),
        },
        Tx::Debit {
            registrar: r,
            nonce: 4,
            account: account.public(),
            amount_nano: 1,
            reference: "fee".into(),
        },
        Tx::SetTariffs { registrar: r, nonce: 5, tariffs: community.genesis.tariffs },
    ];
    let mut txs: Vec<SignedTx> =
        bodies_by_registrar.into_iter().map(|tx| SignedTx::sign(tx, registrar, &id)).collect();
    let offer = Offer {
        account: account.public(),
        nonce: 1,
        interval: 42,
        side: Side::Sell,
        energy_wh: 2_500,
        price_micro_per_kwh: 110_000,
        attestation,
    };
    txs.push(SignedTx::sign(Tx::Offer(offer), &account, &id));
    let offer_id = txs[5].id(&id);
    txs.push(SignedTx::sign(
        Tx::CancelOffer { account: account.public(), nonce: 2, offer_id },
        &account,
        &id,
    ));
    txs.push(SignedTx { tx: Tx::MeterReading(reading), signature: attestation.signature });
    txs.push(SignedTx::sign(
        Tx::SetZoneLimits {
            dso: community.dso.public(),
            nonce: 1,
            zone: "main".into(),
            first_interval: 43,
            intervals: 4,
            limits: ZoneLimits { import_wh_max: 20_000, export_wh_max: 5_000 },
        },
        &community.dso,
        &id,
    ));
    txs.push(SignedTx::sign(
        Tx::SetIntervalTariffs {
            signer: community.dso.public(),
            nonce: 2,
            first_interval: 43,
            tariffs: vec![
                gridshare_ledger::genesis::IntervalTariffs {
                    grid_import_micro_per_kwh: Some(310_000),
                    grid_feed_in_micro_per_kwh: None,
                    network_fee_micro_per_kwh: Some(15_000),
                },
                gridshare_ledger::genesis::IntervalTariffs::default(),
            ],
        },
        &community.dso,
        &id,
    ));
    txs.push(SignedTx::sign(
        Tx::RegisterZoneMeter {
            dso: community.dso.public(),
            nonce: 3,
            meter: Keypair::from_seed([71; 32]).public(),
            zone: "main".into(),
            max_import_w: 400_000,
            max_export_w: 250_000,
        },
        &community.dso,
        &id,
    ));

    let receipts = vec![
        Receipt::Clearing(ClearingReceipt {
            interval: 42,
            mechanism: Mechanism::Uniform,
            k_thousandths: 500,
            network_fee_micro_per_kwh: 20_000,
            offers: 2,
            clearing_price_micro_per_kwh: Some(150_000),
            volume_wh: 1_000,
            trades: vec![TradeReceipt {
                buy_offer: Hash([1; 32]),
                sell_offer: offer_id,
                buyer: key(12).public(),
                seller: account.public(),
                energy_wh: 1_000,
                price_micro_per_kwh: 150_000,
                buyer_price_micro_per_kwh: 150_000,
            }],
            zones: vec![ZoneReceipt {
                price_micro_per_kwh: Some(150_000),
                net_export_wh: 0,
                limits: ZoneLimits::OPEN,
                congested: false,
            }],
        }),
        Receipt::Settlement(SettlementReceipt {
            interval: 40,
            tariffs: community.genesis.tariffs,
            bills: vec![Bill {
                account: account.public(),
                sold_wh: 1_000,
                bought_wh: 0,
                sold_nano: 150_000_000,
                bought_nano: 0,
                fees_nano: 0,
                metered_net_export_wh: 1_200,
                deviation_wh: 200,
                grid_import_wh: 0,
                grid_import_nano: 0,
                feed_in_wh: 200,
                feed_in_nano: 16_000_000,
                total_nano: 166_000_000 + 2_400_000,
                estimated_import_wh: 0,
                estimate_refund_wh: 30,
                estimate_refund_nano: 2_400_000,
            }],
            zones: vec![ZoneSettlement {
                measured_net_export_wh: 1_200,
                measured_meters: 1,
                estimated_meters: 0,
                zone_meter_net_export_wh: Some(1_150),
            }],
        }),
    ];
    let header = BlockHeader {
        community_id: id,
        height: 7,
        previous_hash: Hash([2; 32]),
        timestamp_ms: 1_700_000_042_000,
        proposer: community.validator.public(),
        tx_root: tx_root(&txs),
        tx_count: u32::try_from(txs.len()).unwrap(),
        receipt_root: receipt_root(&receipts),
        receipt_count: 2,
        state_root: Hash([3; 32]),
    };
    let certificate = CommitCertificate::sign(&header, 0, &[&community.validator]);
    let block = Block { header, transactions: txs.clone(), receipts };
    (community, txs, block, certificate)
}

/// A proposal, a streamed-block signature and equivocations of the block's
/// validator: two votes, and two proposals (the same block re-proposed under
/// a proof-of-lock round).
fn consensus_objects(
    community: &TestCommunity,
    block: &Block,
) -> (Proposal, StreamedBlock, VoteEquivocation, ProposalEquivocation) {
    let validator = &community.validator;
    let id = community.genesis.community_id;
    let block_hash = block.hash();
    let proposal =
        Proposal { height: 1, round: 0, block_hash, pol_round: None, proposer: validator.public() };
    let streamed = StreamedBlock { height: 1, block_hash, builder: validator.public() };
    let vote = |block_hash| Vote {
        kind: VoteKind::Prevote,
        height: 1,
        round: 0,
        block_hash,
        validator: validator.public(),
    };
    let (first, second) = (vote(Some(block_hash)), vote(None));
    let equivocation = VoteEquivocation {
        first,
        first_signature: validator.sign(&first.signing_bytes(&id)),
        second,
        second_signature: validator.sign(&second.signing_bytes(&id)),
    };
    let relocked = Proposal { pol_round: Some(0), ..proposal };
    let double_proposal = ProposalEquivocation {
        first: proposal,
        first_signature: validator.sign(&proposal.signing_bytes(&id)),
        second: relocked,
        second_signature: validator.sign(&relocked.signing_bytes(&id)),
    };
    (proposal, streamed, equivocation, double_proposal)
}

/// The genesis state with one meter that has a last reading, a base and a
/// pending estimate: every field of a meter in the state root.
fn state_with_a_meter(community: &TestCommunity) -> State {
    let mut state = State::genesis(&community.genesis);
    let (account, meter) = (key(10).public(), key(11).public());
    let reading = |interval, import_wh_total, export_wh_total| MeterReading {
        meter,
        interval,
        import_wh_total,
        export_wh_total,
    };
    state.meters.insert(
        meter,
        Meter {
            owner: account,
            max_import_w: 11_000,
            max_export_w: 7_000,
            zone: "feeder-3".into(),
            last_reading: Some(reading(44, 12_352, 684)),
            registered_interval: 40,
            base: Some(reading(41, 12_345, 678)),
            estimate: Some(Estimate { import_wh: 6, rate_micro_per_kwh: 80_000 }),
        },
    );
    state.next_settlement_interval = 44;
    state.zone_limits.insert((45, 0), ZoneLimits { import_wh_max: 20_000, export_wh_max: 5_000 });
    state
}

fn vector<T: BorshSerialize>(out: &mut String, name: &str, value: &T, hash: Option<Hash>) {
    out.push_str(&format!("== {name}\nbytes {}\n", hex::encode(to_bytes(value))));
    if let Some(hash) = hash {
        out.push_str(&format!("hash  {hash}\n"));
    }
}

#[test]
fn golden_vectors() {
    let (community, txs, block, certificate) = objects();
    let id = community.genesis.community_id;
    let mut out = String::new();
    vector(&mut out, "genesis", &community.genesis, Some(community.genesis.hash()));
    for tx in &txs {
        vector(&mut out, &format!("transaction {}", tx.tx.kind()), tx, Some(tx.id(&id)));
        out.push_str(&format!("signed {}\n", hex::encode(tx.tx.signing_bytes(&id))));
    }
    let Tx::Offer(offer) = &txs[5].tx else { panic!() };
    vector(&mut out, "signed meter reading (attestation)", &offer.attestation, None);
    vector(&mut out, "block header", &block.header, Some(block.header.hash()));
    vector(&mut out, "receipt clearing", &block.receipts[0], None);
    vector(&mut out, "receipt settlement", &block.receipts[1], None);
    let vote = certificate.vote(community.validator.public());
    vector(&mut out, "vote (precommit)", &vote, None);
    out.push_str(&format!("signed {}\n", hex::encode(vote.signing_bytes(&id))));
    vector(&mut out, "commit certificate", &certificate, None);
    let (proposal, streamed, equivocation, double_proposal) = consensus_objects(&community, &block);
    vector(&mut out, "proposal", &proposal, None);
    out.push_str(&format!("signed {}\n", hex::encode(proposal.signing_bytes(&id))));
    vector(&mut out, "streamed block", &streamed, None);
    out.push_str(&format!("signed {}\n", hex::encode(streamed.signing_bytes(&id))));
    vector(&mut out, "vote equivocation", &equivocation, None);
    vector(&mut out, "proposal equivocation", &double_proposal, None);
    vector(
        &mut out,
        "equivocation (as stored) of proposals",
        &Equivocation::Proposals(double_proposal),
        None,
    );
    let state = State::genesis(&community.genesis);
    vector(&mut out, "state at genesis", &state, Some(state.root(&id)));
    let state = state_with_a_meter(&community);
    vector(&mut out, "meter (as in the state)", &state.meters.values().next().unwrap(), None);
    vector(&mut out, "state with a meter", &state, Some(state.root(&id)));
    out.push_str(&format!("== block\nhash  {}\n", block.hash()));
    expect_file!["vectors/objects.txt"].assert_eq(&out);
}

/// Decodes, re-encodes and compares; then checks that a trailing byte and a
/// missing byte are refused.
fn round_trip<T: BorshSerialize + BorshDeserialize + PartialEq + std::fmt::Debug>(value: &T) {
    let bytes = to_bytes(value);
    assert_eq!(&from_bytes::<T>(&bytes).unwrap(), value);
    let mut longer = bytes.clone();
    longer.push(0);
    let error = from_bytes::<T>(&longer).unwrap_err();
    assert!(error.to_string().contains("Not all bytes read"), "{error}");
    assert!(from_bytes::<T>(&bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn every_object_round_trips_and_decodes_strictly() {
    let (community, txs, block, certificate) = objects();
    round_trip(&community.genesis);
    for tx in &txs {
        round_trip(tx);
        round_trip(&tx.tx);
    }
    round_trip(&block);
    round_trip(&block.header);
    for receipt in &block.receipts {
        round_trip(receipt);
    }
    round_trip(&certificate);
    round_trip(&certificate.vote(community.validator.public()));
    round_trip(&State::genesis(&community.genesis));
    let state = state_with_a_meter(&community);
    round_trip(&state);
    round_trip(state.meters.values().next().unwrap());
    state.check_invariants().unwrap();
    let (proposal, streamed, equivocation, double_proposal) = consensus_objects(&community, &block);
    round_trip(&proposal);
    round_trip(&streamed);
    round_trip(&equivocation);
    round_trip(&double_proposal);
    equivocation.verify(&community.genesis).unwrap();
    double_proposal.verify(&community.genesis).unwrap();
    for evidence in [Equivocation::Votes(equivocation), Equivocation::Proposals(double_proposal)] {
        round_trip(&evidence);
        evidence.verify(&community.genesis).unwrap();
    }
    // Evidence as stored is its kind's tag and then the evidence itself.
    let stored = to_bytes(&Equivocation::Proposals(double_proposal));
    assert_eq!((stored[0], &stored[1..]), (1, to_bytes(&double_proposal).as_slice()));
    let mut unknown = stored.clone();
    unknown[0] = 2;
    assert!(from_bytes::<Equivocation>(&unknown).is_err());
}

#[test]
fn unknown_tags_and_non_canonical_values_are_refused() {
    let (_, txs, block, _) = objects();
    // Transaction kinds are tags 0 to 8.
    let mut bytes = to_bytes(&txs[0].tx);
    bytes[0] = 9;
    let error = from_bytes::<Tx>(&bytes).unwrap_err().to_string();
    assert!(error.contains("Tx") && error.contains("9"), "{error}");
    // Receipts are tags 0 and 1.
    let mut bytes = to_bytes(&block.receipts[0]);
    bytes[0] = 2;
    assert!(from_bytes::<Receipt>(&bytes).is_err());
    // An Option's tag is 0 or 1, nothing else.
    let vote = Vote {
        kind: VoteKind::Precommit,
        height: 1,
        round: 0,
        block_hash: Some(Hash([4; 32])),
        validator: PublicKey([5; 32]),
    };
    let mut bytes = to_bytes(&vote);
    let option_tag = 1 + 8 + 4;
    assert_eq!(bytes[option_tag], 1);
    bytes[option_tag] = 2;
    assert!(from_bytes::<Vote>(&bytes).is_err());
    // Strings are UTF-8.
    let Tx::RegisterMeter { .. } = &txs[1].tx else { panic!() };
    let mut bytes = to_bytes(&txs[1].tx);
    let zone = bytes.windows(8).position(|w| w == b"feeder-3").unwrap();
    bytes[zone] = 0xff;
    assert!(from_bytes::<Tx>(&bytes).is_err());
    // Garbage never panics.
    for length in 0..64_u8 {
        let garbage: Vec<u8> = (0..length).map(|i| i.wrapping_mul(37).wrapping_add(11)).collect();
        let _ = from_bytes::<Block>(&garbage);
        let _ = from_bytes::<SignedTx>(&garbage);
    }
}

#[test]
fn domain_tags_separate_types_and_communities() {
    let (community, txs, _, _) = objects();
    let other = TestCommunity::new(2, 0, test_market(), 0).genesis.community_id;
    let id = community.genesis.community_id;
    assert_ne!(
        domain_bytes(Domain::Transaction, &id, &txs[0].tx),
        domain_bytes(Domain::Transaction, &other, &txs[0].tx)
    );
    assert_ne!(
        domain_bytes(Domain::Transaction, &id, &txs[0].tx),
        domain_bytes(Domain::Vote, &id, &txs[0].tx)
    );
    // A transaction signed for one community does not verify in another.
    assert!(txs[0].verify(&id).is_ok());
    assert!(txs[0].verify(&other).is_err());
}

#[test]
fn genesis_validation_refuses_what_cannot_run() {
    let good = TestCommunity::new(3, 0, test_market(), 1_000).genesis;
    assert_eq!(good.validate(), Ok(()));
    let refused = |change: &dyn Fn(&mut gridshare_ledger::genesis::Genesis), expected: &str| {
        let mut genesis = good.clone();
        change(&mut genesis);
        let error = genesis.validate().unwrap_err().to_string();
        assert!(error.contains(expected), "{error} does not say {expected}");
    };
    refused(&|g| g.market.interval_length_ms = 0, "interval length");
    refused(&|g| g.market.price_floor_micro_per_kwh = g.market.price_cap_micro_per_kwh + 1, "price floor");
    refused(&|g| g.validators.clear(), "validators");
    refused(&|g| g.validators[0].voting_power = u64::MAX / 3 + 1, "third of 2^64");
    refused(&|g| g.validators.push(g.validators[0]), "listed twice");
    refused(&|g| g.registrars.clear(), "registrar");
    refused(&|g| g.currency = "euro".into(), "currency");
    refused(&|g| g.market.max_offers_per_interval = u32::MAX, "clearing work");
}
