//! Unit tests of the chain core: no process, no socket, no clock; a
//! `MemoryStore`, an index in memory and fixed times.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

use gridshare_ledger::block::{CertifiedBlock, CommitCertificate};
use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::execute::{BlockError, Rejection};
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::state::State;
use gridshare_ledger::store::MemoryStore;
use gridshare_ledger::testkit::{LocalValidator, TestCommunity, test_market, trading_chain};
use gridshare_ledger::tx::{Side, SignedTx};
use libp2p::PeerId;
use libp2p::gossipsub::MessageId;

use super::*;
use crate::consensus::app::Chain;
use crate::mempool::SubmitError;
use crate::network::{
    SYNC_BLOCKS_MAX, SyncRequest, SyncResponse, TX_BYTES_MAX, TransactionsRequest, TransactionsResponse,
};

/// The genesis time of the test communities.
const T0: u64 = 1_000_000;
/// When the tests' first block is made.
const FIRST_BLOCK_MS: u64 = T0 + 100;

fn peer(byte: u8) -> PeerId {
    libp2p::identity::Keypair::ed25519_from_bytes([byte; 32]).unwrap().public().to_peer_id()
}

fn message(number: u8) -> MessageId {
    MessageId(vec![number])
}

fn core(genesis: &Genesis, role: Role) -> ChainCore<MemoryStore> {
    let index = Index::in_memory(&genesis.hash()).unwrap();
    let acknowledged = Acknowledged::in_memory().unwrap();
    ChainCore::new(genesis.clone(), MemoryStore::new(genesis.clone()), index, acknowledged, role).unwrap()
}

fn replica(genesis: &Genesis) -> ChainCore<MemoryStore> {
    core(genesis, Role::Replica)
}

fn validator_key(community: &TestCommunity) -> Keypair {
    Keypair::from_seed(community.validator.seed())
}

/// A community of `households` households, and its first certified block,
/// which registers them.
fn registered(households: u32) -> (TestCommunity, CertifiedBlock) {
    let mut community = TestCommunity::new(7, households, test_market(), T0);
    let validator = LocalValidator { keypair: validator_key(&community) };
    let registrations = community.registrations();
    let (block, _) = validator
        .produce(&community.genesis, &State::genesis(&community.genesis), registrations, FIRST_BLOCK_MS)
        .unwrap();
    (community, block)
}

/// A replica with `block` (the registrations) applied from gossip.
fn replica_at_height_1(community: &TestCommunity, block: &CertifiedBlock) -> ChainCore<MemoryStore> {
    let mut core = replica(&community.genesis);
    let effects = core.handle_gossip(FIRST_BLOCK_MS, Topic::Blocks, message(0), peer(9), &to_bytes(block));
    assert!(matches!(verdicts(&effects)[..], [(_, Verdict::Accept)]), "{effects:?}");
    assert_eq!(core.state().height, 1);
    core
}

/// An offer by household `household` with `nonce` for interval 3 (its gate
/// closes at T0 + 2,500 ms).
fn offer(community: &TestCommunity, household: usize, nonce: u64, price_micro_per_kwh: u64) -> SignedTx {
    let attestation = community.reading(household, 0, 0, 0);
    community.offer_tx(household, nonce, 3, Side::Sell, 100, price_micro_per_kwh, attestation)
}

fn forged(tx: &SignedTx) -> SignedTx {
    let mut forged = tx.clone();
    forged.signature.0[0] ^= 1;
    forged
}

/// The gossip verdicts among `effects`, with the peer each is about.
fn verdicts(effects: &[Effect]) -> Vec<(PeerId, &Verdict)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Verdict { source, verdict, .. } => Some((*source, verdict)),
            _ => None,
        })
        .collect()
}

/// The one verdict a gossiped transaction gets, whether at once or after
/// the batch is verified.
fn gossip_transaction(core: &mut ChainCore<MemoryStore>, from: PeerId, bytes: &[u8]) -> Vec<Effect> {
    let mut effects = core.handle_gossip(FIRST_BLOCK_MS, Topic::Transactions, message(1), from, bytes);
    effects.extend(core.verify_batch(FIRST_BLOCK_MS));
    assert_eq!(verdicts(&effects).len(), 1, "{effects:?}");
    effects
}

#[test]
fn every_kind_of_gossiped_transaction_gets_its_verdict() {
    let (community, block) = registered(2);
    let mut core = replica_at_height_1(&community, &block);
    let sender = peer(1);

    let valid = offer(&community, 0, 1, 50_000);
    let effects = gossip_transaction(&mut core, sender, &to_bytes(&valid));
    assert!(matches!(verdicts(&effects)[..], [(_, Verdict::Accept)]), "{effects:?}");
    assert!(core.mempool().contains(&valid.id(&community.genesis.community_id)));
    assert!(
        !effects.iter().any(|effect| matches!(effect, Effect::Publish { .. })),
        "gossip forwards an accepted message itself: {effects:?}"
    );

    let effects = gossip_transaction(&mut core, sender, &to_bytes(&valid));
    assert!(
        matches!(verdicts(&effects)[..], [(_, Verdict::Ignore(Ignored::Refused(SubmitError::Duplicate(_))))]),
        "{effects:?}"
    );

    // The same nonce again, in another offer: stale against the mempool.
    let stale = offer(&community, 0, 1, 60_000);
    let effects = gossip_transaction(&mut core, sender, &to_bytes(&stale));
    assert!(
        matches!(
            verdicts(&effects)[..],
            [(_, Verdict::Ignore(Ignored::Refused(SubmitError::Rejected(Rejection::StaleNonce { .. }))))]
        ),
        "{effects:?}"
    );

    let gap = offer(&community, 1, 5, 50_000);
    let effects = gossip_transaction(&mut core, sender, &to_bytes(&gap));
    assert!(
        matches!(
            verdicts(&effects)[..],
            [(_, Verdict::Ignore(Ignored::Refused(SubmitError::Rejected(Rejection::NonceGap { .. }))))]
        ),
        "{effects:?}"
    );

    // A registration the first block holds: a replay, or a late copy.
    let committed = &block.block.transactions[0];
    let effects = gossip_transaction(&mut core, sender, &to_bytes(committed));
    assert!(matches!(verdicts(&effects)[..], [(_, Verdict::Ignore(Ignored::Replay))]), "{effects:?}");
    // A forged copy of it is found stale before its signature is checked.
    let effects = gossip_transaction(&mut core, sender, &to_bytes(&forged(committed)));
    assert!(matches!(verdicts(&effects)[..], [(_, Verdict::Ignore(Ignored::Replay))]), "{effects:?}");
    assert_eq!(core.peers().invalid_messages(&sender), 0, "nothing so far is held against the sender");

    let effects = gossip_transaction(&mut core, sender, b"garbage");
    assert!(matches!(verdicts(&effects)[..], [(_, Verdict::Reject(Invalid::Garbage(_)))]), "{effects:?}");
    let effects = gossip_transaction(&mut core, sender, &vec![0; TX_BYTES_MAX + 1]);
    assert!(
        matches!(verdicts(&effects)[..], [(_, Verdict::Reject(Invalid::Oversized { bytes }))] if *bytes == TX_BYTES_MAX + 1),
        "{effects:?}"
    );
    let other = peer(2);
    let effects = gossip_transaction(&mut core, other, &to_bytes(&forged(&offer(&community, 1, 1, 50_000))));
    assert!(
        matches!(verdicts(&effects)[..], [(_, Verdict::Reject(Invalid::BadSignature(_)))]),
        "{effects:?}"
    );
    assert_eq!(core.peers().invalid_messages(&sender), 2);
    assert_eq!(core.peers().invalid_messages(&other), 1);
    assert_eq!(core.mempool().len(), 1, "only the valid offer waits");
}

#[test]
fn a_peer_is_banned_at_its_third_invalid_message_until_the_ban_expires() {
    let (community, _) = registered(1);
    let mut core = replica(&community.genesis);
    let (hostile, honest) = (peer(1), peer(2));
    let now_ms = 5_000_000;
    for (number, at_ms) in [(1, now_ms - 2_000), (2, now_ms - 1_000)] {
        let effects = core.handle_gossip(at_ms, Topic::Transactions, message(number), hostile, b"garbage");
        assert!(!effects.iter().any(|effect| matches!(effect, Effect::Ban { .. })), "{effects:?}");
    }
    let effects = core.handle_gossip(now_ms, Topic::Transactions, message(2), honest, b"garbage");
    assert!(!effects.iter().any(|effect| matches!(effect, Effect::Ban { .. })), "{effects:?}");

    let effects = core.handle_gossip(now_ms, Topic::Transactions, message(3), hostile, b"garbage");
    assert!(matches!(verdicts(&effects)[..], [(_, Verdict::Reject(_))]), "{effects:?}");
    assert!(matches!(effects.last(), Some(Effect::Ban { peer }) if *peer == hostile), "{effects:?}");
    assert_eq!(core.peers().banned_until_ms(&hostile), Some(now_ms + BAN_DURATION_MS));
    assert_eq!(core.peers().banned_until_ms(&honest), None);
    assert_eq!(core.peers().invalid_messages(&hostile), 0, "the count starts again after a ban");

    let effects = core.tick(now_ms + BAN_DURATION_MS - 1);
    assert!(effects.is_empty(), "{effects:?}");
    let effects = core.tick(now_ms + BAN_DURATION_MS);
    assert!(matches!(&effects[..], [Effect::Unban { peer }] if *peer == hostile), "{effects:?}");
    assert_eq!(core.peers().banned_until_ms(&hostile), None);
    assert!(core.tick(now_ms + 2 * BAN_DURATION_MS).is_empty());
}

#[test]
fn one_bad_signature_in_a_batch_is_rejected_and_the_good_ones_admitted() {
    let (community, block) = registered(4);
    let mut core = replica_at_height_1(&community, &block);
    let good =
        [offer(&community, 0, 1, 50_000), offer(&community, 1, 1, 50_000), offer(&community, 3, 1, 50_000)];
    let bad = forged(&offer(&community, 2, 1, 50_000));
    let arrivals = [(peer(1), &good[0]), (peer(2), &good[1]), (peer(3), &bad), (peer(4), &good[2])];
    for (number, (from, tx)) in (10..).zip(arrivals) {
        let effects =
            core.handle_gossip(FIRST_BLOCK_MS, Topic::Transactions, message(number), from, &to_bytes(tx));
        assert!(effects.is_empty(), "waits for the batch: {effects:?}");
        assert!(core.batch_open());
    }
    // A submission joins the same batch.
    let submitted = offer(&community, 0, 2, 70_000);
    assert!(core.handle_submission(FIRST_BLOCK_MS, Submission(7), submitted.clone()).is_empty());

    let effects = core.verify_batch(FIRST_BLOCK_MS);
    assert!(matches!(effects.first(), Some(Effect::Count(Count::VerifyBatch))), "{effects:?}");
    let got: Vec<(PeerId, &'static str)> =
        verdicts(&effects).into_iter().map(|(from, verdict)| (from, verdict.label())).collect();
    assert_eq!(got, [(peer(1), "accept"), (peer(2), "accept"), (peer(3), "reject"), (peer(4), "accept")]);
    assert!(matches!(verdicts(&effects)[2], (_, Verdict::Reject(Invalid::BadSignature(_)))));
    let id = submitted.id(&community.genesis.community_id);
    assert!(
        effects.iter().any(|effect| matches!(effect,
            Effect::Answer { submission: Submission(7), result: Ok(answered) } if *answered == id)),
        "{effects:?}"
    );
    assert!(
        effects.iter().any(|effect| matches!(effect,
            Effect::Publish { topic: Topic::Transactions, transaction: Some(published), .. } if *published == id)),
        "a submitted transaction is published: {effects:?}"
    );
    assert_eq!(core.mempool().len(), 4);
    assert_eq!(core.peers().invalid_messages(&peer(3)), 1);
    assert_eq!(core.peers().invalid_messages(&peer(1)), 0);
    assert!(!core.batch_open());
}

#[test]
fn a_certified_block_from_a_peer_is_applied_indexed_and_reported() {
    let (community, block) = registered(2);
    let mut core = replica(&community.genesis);
    let effects = core.handle_gossip(FIRST_BLOCK_MS, Topic::Blocks, message(0), peer(1), &to_bytes(&block));
    assert!(matches!(verdicts(&effects)[..], [(_, Verdict::Accept)]), "{effects:?}");
    assert!(
        matches!(effects.first(), Some(Effect::Event(Event::Block { height: 1, transactions: 6, .. }))),
        "{effects:?}"
    );
    assert_eq!(core.state().height, 1);
    assert_eq!(core.state().root(&community.genesis.community_id), block.block.header.state_root);
    assert_eq!(core.store().block(1).unwrap(), Some(block.clone()));
    let first = block.block.transactions[0].id(&community.genesis.community_id);
    assert_eq!(core.index().transaction(&first).unwrap().map(|found| found.height), Some(1));

    // The same block again is old news.
    let effects = core.handle_gossip(FIRST_BLOCK_MS, Topic::Blocks, message(0), peer(2), &to_bytes(&block));
    assert!(matches!(verdicts(&effects)[..], [(_, Verdict::Ignore(Ignored::OldBlock))]), "{effects:?}");
    // A validator gets its blocks through consensus.
    let mut validator = core_with_role(&community, Role::Validator { households: None });
    let effects =
        validator.handle_gossip(FIRST_BLOCK_MS, Topic::Blocks, message(0), peer(1), &to_bytes(&block));
    assert!(matches!(verdicts(&effects)[..], [(_, Verdict::Ignore(Ignored::ByValidator))]), "{effects:?}");
    assert_eq!(validator.state().height, 0);
}

fn core_with_role(community: &TestCommunity, role: Role) -> ChainCore<MemoryStore> {
    core(&community.genesis, role)
}

#[test]
fn an_invalid_certified_block_is_rejected_and_held_against_its_sender() {
    let (community, block) = registered(2);
    let mut core = replica(&community.genesis);
    let sender = peer(1);

    let mut bad_certificate = block.clone();
    bad_certificate.certificate.signatures[0].signature.0[0] ^= 1;
    let effects =
        core.handle_gossip(FIRST_BLOCK_MS, Topic::Blocks, message(1), sender, &to_bytes(&bad_certificate));
    assert!(
        matches!(verdicts(&effects)[..], [(_, Verdict::Reject(Invalid::Block(error)))]
            if matches!(**error, ApplyError::Certificate(CertificateError::BadSignature(_)))),
        "{effects:?}"
    );

    // Certified by the validator, but the state root is not what executing
    // the block gives.
    let mut wrong_root = block.block.clone();
    wrong_root.header.state_root = Hash([7; 32]);
    let certificate = CommitCertificate::sign(&wrong_root.header, 0, &[&validator_key(&community)]);
    let wrong_root = CertifiedBlock { block: wrong_root, certificate };
    let effects =
        core.handle_gossip(FIRST_BLOCK_MS, Topic::Blocks, message(2), sender, &to_bytes(&wrong_root));
    assert!(
        matches!(verdicts(&effects)[..], [(_, Verdict::Reject(Invalid::Block(error)))]
            if matches!(**error, ApplyError::Check(CheckError::Block(BlockError::WrongStateRoot { .. })))),
        "{effects:?}"
    );

    assert_eq!(core.state().height, 0, "nothing was committed");
    assert_eq!(core.store().block(1).unwrap(), None);
    assert_eq!(core.peers().invalid_messages(&sender), 2);
    let effects = core.handle_gossip(FIRST_BLOCK_MS, Topic::Blocks, message(3), sender, b"not a block");
    assert!(matches!(verdicts(&effects)[..], [(_, Verdict::Reject(_))]), "{effects:?}");
    assert!(matches!(effects.last(), Some(Effect::Ban { peer }) if *peer == sender), "{effects:?}");
}

#[test]
fn a_block_beyond_the_next_height_leads_to_a_request_for_the_blocks_between() {
    let (community, blocks) = trading_chain(3, 2, 4);
    let mut core = replica(&community.genesis);
    let sender = peer(1);
    let effects = core.handle_gossip(T0, Topic::Blocks, message(1), sender, &to_bytes(&blocks[2]));
    match &effects[..] {
        [
            Effect::RequestBlocks { peer, request },
            Effect::Verdict { verdict: Verdict::Ignore(Ignored::AheadBlock), .. },
        ] => {
            assert_eq!(*peer, sender);
            assert_eq!(*request, SyncRequest { from_height: 1, max_blocks: SYNC_BLOCKS_MAX });
        }
        _ => panic!("{effects:?}"),
    }
    assert_eq!(core.state().height, 0);
    assert_eq!(core.best_seen_height(), 3, "the peer showed height 3");
}

#[test]
fn a_replica_catches_up_from_sync_responses_and_asks_for_more_while_behind() {
    let (community, blocks) = trading_chain(3, 2, 10);
    let tip_height = blocks.last().unwrap().block.header.height;
    let encoded: Vec<Vec<u8>> = blocks.iter().map(to_bytes).collect();
    let mut core = replica(&community.genesis);
    let server = peer(1);

    let effects = core.handle_peer_connected(server);
    assert!(
        matches!(&effects[..], [Effect::RequestBlocks { request, .. }] if request.from_height == 1),
        "{effects:?}"
    );

    let first = SyncResponse { blocks: encoded[..5].to_vec(), tip_height };
    let effects = core.handle_sync_response(T0, server, first);
    assert_eq!(core.state().height, 5);
    let blocks_reported =
        effects.iter().filter(|effect| matches!(effect, Effect::Event(Event::Block { .. }))).count();
    assert_eq!(blocks_reported, 5);
    assert!(effects.iter().any(|effect| matches!(effect, Effect::Count(Count::SyncBlocksReceived(5)))));
    assert!(
        matches!(effects.last(), Some(Effect::RequestBlocks { peer, request }) if *peer == server && request.from_height == 6),
        "{effects:?}"
    );
    // The height the peer claims is not believed: only certified blocks.
    assert_eq!(core.best_seen_height(), 5);

    let rest = SyncResponse { blocks: encoded[3..].to_vec(), tip_height };
    let effects = core.handle_sync_response(T0, server, rest);
    assert_eq!(core.state().height, tip_height);
    assert!(!effects.iter().any(|effect| matches!(effect, Effect::RequestBlocks { .. })), "{effects:?}");
    let last = &blocks.last().unwrap().block.header;
    assert_eq!(core.state().root(&community.genesis.community_id), last.state_root);
    assert_eq!(core.index().height(), tip_height);
    assert!(
        effects.iter().any(|effect| matches!(effect, Effect::Event(Event::Clearing { .. }))),
        "the trading chain clears intervals: {effects:?}"
    );
}

#[test]
fn a_sync_request_is_served_from_the_store_within_the_bounds() {
    let (community, blocks) = trading_chain(3, 2, 10);
    let tip_height = blocks.last().unwrap().block.header.height;
    let mut core = replica(&community.genesis);
    let response = SyncResponse { blocks: blocks.iter().map(to_bytes).collect(), tip_height };
    core.handle_sync_response(T0, peer(1), response);
    assert_eq!(core.state().height, tip_height);

    let served = core.serve_sync(&SyncRequest { from_height: 3, max_blocks: 4 });
    assert_eq!(served.tip_height, tip_height);
    assert_eq!(served.blocks, blocks[2..6].iter().map(to_bytes).collect::<Vec<_>>());
    let from_zero = core.serve_sync(&SyncRequest { from_height: 0, max_blocks: 1 });
    assert_eq!(from_zero.blocks, vec![to_bytes(&blocks[0])]);
    let to_tip = core.serve_sync(&SyncRequest { from_height: tip_height - 1, max_blocks: u32::MAX });
    assert_eq!(to_tip.blocks.len(), 2);
    let beyond = core.serve_sync(&SyncRequest { from_height: tip_height + 1, max_blocks: 8 });
    assert!(beyond.blocks.is_empty());
}

#[test]
fn a_block_built_checked_and_committed_through_chain_gives_two_cores_the_same_state() {
    let mut community = TestCommunity::new(11, 3, test_market(), T0);
    let genesis = community.genesis.clone();
    let key = validator_key(&community);
    let mut proposer = core(&genesis, Role::Validator { households: None });
    let mut other = core(&genesis, Role::Validator { households: None });
    for (number, tx) in (0..).zip(community.registrations()) {
        let effects = proposer.handle_submission(FIRST_BLOCK_MS, Submission(number), tx);
        assert!(effects.is_empty(), "{effects:?}");
    }
    let effects = proposer.verify_batch(FIRST_BLOCK_MS);
    let admitted =
        effects.iter().filter(|effect| matches!(effect, Effect::Answer { result: Ok(_), .. })).count();
    assert_eq!(admitted, 9, "{effects:?}");

    let now_ms = FIRST_BLOCK_MS;
    let (block, built_state) = {
        let mut chain = proposer.at(now_ms);
        let time_ms = chain.next_block_time_ms();
        assert_eq!(time_ms, now_ms);
        let candidates = chain.candidates(time_ms);
        assert_eq!(candidates.len(), 9);
        chain.build(candidates, time_ms, &key).unwrap()
    };
    // The other validator has none of these transactions: it verifies
    // their signatures itself.
    let checked_state = other.at(now_ms + 30).check(&block).unwrap();
    let community_id = &genesis.community_id;
    assert_eq!(checked_state.root(community_id), built_state.root(community_id));
    let mut tampered = block.clone();
    tampered.transactions[0] = forged(&tampered.transactions[0]);
    assert!(matches!(other.at(now_ms).check(&tampered), Err(CheckError::Signature(_))));

    let certificate = CommitCertificate::sign(&block.header, 0, &[&key]);
    let certified = CertifiedBlock { block, certificate };
    proposer.at(now_ms).commit(certified.clone(), built_state).unwrap();
    other.at(now_ms + 30).commit(certified.clone(), checked_state).unwrap();
    assert_eq!(proposer.state().root(community_id), certified.block.header.state_root);
    assert_eq!(other.state().root(community_id), certified.block.header.state_root);
    assert!(proposer.mempool().is_empty(), "the block took every waiting transaction");

    let effects = proposer.take_effects();
    assert!(matches!(effects.first(), Some(Effect::Event(Event::Block { height: 1, transactions: 9, .. }))));
    assert!(
        matches!(effects.last(), Some(Effect::Publish { topic: Topic::Blocks, transaction: None, .. })),
        "a block made final here is gossiped to the replicas: {effects:?}"
    );
    // Committing the same height twice is the store's to refuse.
    let again = proposer.at(now_ms).commit(certified, other.state().clone());
    assert!(matches!(again, Err(CommitError { height: 1, .. })), "{again:?}");
    assert!(other.at(now_ms).block(1).is_some());
}

#[test]
fn a_submission_no_peer_could_be_sent_is_published_again_while_it_waits() {
    let (community, block) = registered(1);
    let mut core = replica_at_height_1(&community, &block);
    let tx = offer(&community, 0, 1, 50_000);
    let id = tx.id(&community.genesis.community_id);
    assert!(core.handle_submission(FIRST_BLOCK_MS, Submission(1), tx.clone()).is_empty());
    let effects = core.verify_batch(FIRST_BLOCK_MS);
    let bytes = match &effects[..] {
        [
            Effect::Count(Count::VerifyBatch),
            Effect::Publish { bytes, transaction: Some(published), .. },
            Effect::Answer { result: Ok(_), .. },
        ] if *published == id => bytes.clone(),
        _ => panic!("{effects:?}"),
    };
    assert_eq!(bytes, to_bytes(&tx));

    // The driver found no peer subscribed.
    core.publish_failed(id);
    let effects = core.tick(FIRST_BLOCK_MS + 2_000);
    assert!(
        matches!(&effects[..], [Effect::Publish { transaction: Some(again), bytes: resent, .. }] if *again == id && *resent == bytes),
        "{effects:?}"
    );
    // It reached a peer this time: nothing more to publish.
    assert!(core.tick(FIRST_BLOCK_MS + 4_000).is_empty());

    // A peer that subscribes gets what no one could be sent.
    core.publish_failed(id);
    let effects = core.handle_subscribed();
    assert!(matches!(&effects[..], [Effect::Publish { transaction: Some(again), .. }] if *again == id));

    // Once it is in a block, it is not published again.
    core.publish_failed(id);
    let validator = LocalValidator { keypair: validator_key(&community) };
    let (next, _) =
        validator.produce(&community.genesis, core.state(), vec![tx], FIRST_BLOCK_MS + 500).unwrap();
    let effects =
        core.handle_gossip(FIRST_BLOCK_MS + 500, Topic::Blocks, message(5), peer(1), &to_bytes(&next));
    assert!(matches!(verdicts(&effects)[..], [(_, Verdict::Accept)]), "{effects:?}");
    assert!(core.mempool().is_empty());
    assert!(core.tick(FIRST_BLOCK_MS + 6_000).is_empty());
}

#[test]
fn a_waiting_transaction_that_no_longer_fits_after_a_block_is_reported_dropped_with_its_reason() {
    let (community, block) = registered(2);
    let mut core = replica_at_height_1(&community, &block);
    let waiting = offer(&community, 0, 1, 50_000);
    let id = waiting.id(&community.genesis.community_id);
    assert!(core.handle_submission(FIRST_BLOCK_MS, Submission(1), waiting).is_empty());
    core.verify_batch(FIRST_BLOCK_MS);
    assert!(core.mempool().contains(&id));

    // A block before interval 3's gate (T0 + 2,500 ms) leaves it waiting.
    let validator = LocalValidator { keypair: validator_key(&community) };
    let (early, _) = validator.produce(&community.genesis, core.state(), vec![], T0 + 2_000).unwrap();
    let effects = core.handle_gossip(T0 + 2_000, Topic::Blocks, message(2), peer(1), &to_bytes(&early));
    assert!(!effects.iter().any(|effect| matches!(effect, Effect::Dropped { .. })), "{effects:?}");
    assert!(core.mempool().contains(&id));

    // A block after it drops the offer, and says why.
    let (late, _) = validator.produce(&community.genesis, core.state(), vec![], T0 + 2_600).unwrap();
    let effects = core.handle_gossip(T0 + 2_600, Topic::Blocks, message(3), peer(1), &to_bytes(&late));
    let dropped: Vec<_> = effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Dropped { id, dropped } => Some((*id, dropped.reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, [(id, "interval_closed".to_string())]);
    assert!(core.mempool().is_empty());
    // The node remembers it, for whoever asks what became of it.
    let remembered = core.acknowledged().dropped(&id).unwrap().unwrap();
    assert_eq!((remembered.height, remembered.reason.as_str()), (3, "interval_closed"));
    assert!(remembered.message.starts_with("interval 3 closed for offers"), "{}", remembered.message);
    assert!(core.acknowledged().waiting().unwrap().is_empty());
}

/// Submits `tx` at `now_ms` and verifies the batch: the answer.
fn submit(core: &mut ChainCore<MemoryStore>, now_ms: u64, tx: SignedTx) -> Result<Hash, SubmitError> {
    let mut effects = core.handle_submission(now_ms, Submission(0), tx);
    effects.extend(core.verify_batch(now_ms));
    let answers: Vec<_> = effects
        .into_iter()
        .filter_map(|effect| match effect {
            Effect::Answer { result, .. } => Some(result),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    answers.into_iter().next().unwrap()
}

/// Applies an empty certified block made at `time_ms`: its effects.
fn empty_block(community: &TestCommunity, core: &mut ChainCore<MemoryStore>, time_ms: u64) -> Vec<Effect> {
    block_of(community, core, vec![], time_ms)
}

#[test]
fn submissions_are_refused_while_the_node_cannot_get_what_it_admitted_into_blocks_in_time() {
    let (community, block) = registered(3);
    let mut core = replica_at_height_1(&community, &block);
    let attestation = |household| community.reading(household, 0, 0, 0);
    let offer_for = |household: usize, interval: u64| {
        community.offer_tx(household, 1, interval, Side::Sell, 100, 50_000, attestation(household))
    };
    // Nothing waits: an offer whose gate is 100 ms away is admitted.
    assert!(submit(&mut core, T0 + 2_400, offer_for(0, 3)).is_ok());

    // It has waited 1,500 ms at T0 + 3,900 (no block came): an offer whose
    // gate closes within that wait is refused as too late...
    let refused = submit(&mut core, T0 + 3_900, offer_for(1, 5));
    assert!(matches!(refused, Err(SubmitError::TooLate { interval: 5, delay_ms: 1_500 })), "{refused:?}");
    // ...and one whose gate is further away than that is admitted.
    assert!(submit(&mut core, T0 + 3_900, offer_for(1, 6)).is_ok());

    // Past BACKLOG_MAX_MS, nothing is admitted, whatever its interval.
    let refused = submit(&mut core, T0 + 2_400 + BACKLOG_MAX_MS + 1, offer_for(2, 8));
    assert!(
        matches!(refused, Err(SubmitError::Backlog { waited_ms }) if waited_ms == BACKLOG_MAX_MS + 1),
        "{refused:?}"
    );
    // A copy of what waits is told it is one, not to come back later.
    let again = submit(&mut core, T0 + 2_400 + BACKLOG_MAX_MS + 1, offer_for(0, 3));
    assert!(matches!(again, Err(SubmitError::Duplicate(_))), "{again:?}");

    // A block that drops the first (its gate passed) and takes nothing
    // leaves the second, waiting since T0 + 3,900: at T0 + 4,500 the node
    // admits again.
    empty_block(&community, &mut core, T0 + 4_500);
    assert_eq!(core.mempool().len(), 1);
    assert!(submit(&mut core, T0 + 4_500, offer_for(2, 8)).is_ok());
}

#[test]
fn a_nonce_gap_is_fetched_from_the_peer_that_showed_it_and_filled_from_its_answer() {
    let (community, block) = registered(2);
    let mut here = replica_at_height_1(&community, &block);
    let mut there = replica_at_height_1(&community, &block);
    let offers: Vec<SignedTx> = (1..=3).map(|nonce| offer(&community, 0, nonce, 50_000)).collect();
    for tx in &offers {
        submit(&mut there, FIRST_BLOCK_MS, tx.clone()).unwrap();
    }
    let signer = offers[0].tx.signer();
    let sender = peer(1);
    let requests = |effects: &[Effect]| -> Vec<(PeerId, TransactionsRequest)> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::RequestTransactions { peer, request } => Some((*peer, request.clone())),
                _ => None,
            })
            .collect()
    };

    // Nonce 3 arrives first: the gap (nonces 1 and 2) is asked of its sender.
    let effects = gossip_transaction(&mut here, sender, &to_bytes(&offers[2]));
    let wanted = TransactionsRequest { signer: signer.0, from_nonce: 1 };
    assert_eq!(requests(&effects), [(sender, wanted.clone())]);
    // Not again within FETCH_RETRY_MS, even when another copy shows it...
    let effects = gossip_transaction(&mut here, peer(2), &to_bytes(&offers[2]));
    assert!(requests(&effects).is_empty(), "{effects:?}");
    // ...but after it.
    here.tick(FIRST_BLOCK_MS + FETCH_RETRY_MS);
    let mut effects = here.handle_gossip(
        FIRST_BLOCK_MS + FETCH_RETRY_MS,
        Topic::Transactions,
        message(3),
        peer(2),
        &to_bytes(&offers[2]),
    );
    effects.extend(here.verify_batch(FIRST_BLOCK_MS + FETCH_RETRY_MS));
    assert_eq!(requests(&effects), [(peer(2), wanted.clone())]);

    // The peer serves the signer's waiting transactions from the nonce on,
    // in nonce order; they fill the gap here.
    let served = there.serve_transactions(&wanted);
    assert_eq!(served.transactions, offers.iter().map(to_bytes).collect::<Vec<_>>());
    let mut effects = here.handle_transactions(FIRST_BLOCK_MS, sender, served);
    assert!(
        effects.iter().any(|effect| matches!(effect, Effect::Count(Count::TransactionsReceived(3)))),
        "{effects:?}"
    );
    effects.extend(here.verify_batch(FIRST_BLOCK_MS));
    for tx in &offers {
        assert!(here.mempool().contains(&tx.id(&community.genesis.community_id)));
    }
    // A peer asked for a signer with nothing waiting answers nothing.
    let none = here.serve_transactions(&TransactionsRequest { signer: signer.0, from_nonce: 4 });
    assert!(none.transactions.is_empty());

    // Garbage or a forged signature in an answer counts against the peer
    // that sent it: the third time, it is banned.
    let liar = peer(3);
    let garbage = TransactionsResponse { transactions: vec![vec![0xff; 10]] };
    assert!(here.handle_transactions(FIRST_BLOCK_MS, liar, garbage.clone()).is_empty());
    let oversized = TransactionsResponse { transactions: vec![vec![0; TX_BYTES_MAX + 1]] };
    assert!(here.handle_transactions(FIRST_BLOCK_MS, liar, oversized).is_empty());
    let forged =
        TransactionsResponse { transactions: vec![to_bytes(&forged(&offer(&community, 1, 1, 50_000)))] };
    let mut effects = here.handle_transactions(FIRST_BLOCK_MS, liar, forged);
    effects.extend(here.verify_batch(FIRST_BLOCK_MS));
    assert!(
        effects.iter().any(|effect| matches!(effect, Effect::Ban { peer } if *peer == liar)),
        "{effects:?}"
    );
}

#[test]
fn a_submission_still_waiting_is_announced_again_with_doubling_pauses() {
    let (community, block) = registered(1);
    let mut core = replica_at_height_1(&community, &block);
    let attestation = community.reading(0, 0, 0, 0);
    // Interval 9's gate closes at T0 + 8,500 ms.
    let tx = community.offer_tx(0, 1, 9, Side::Sell, 100, 50_000, attestation);
    submit(&mut core, FIRST_BLOCK_MS, tx.clone()).unwrap();
    let announced = |effects: &[Effect]| -> Vec<Vec<Vec<u8>>> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Announce { transactions } => Some(transactions.clone()),
                _ => None,
            })
            .collect()
    };
    // A block less than REANNOUNCE_AFTER_MS after it was published: no.
    let effects = empty_block(&community, &mut core, FIRST_BLOCK_MS + REANNOUNCE_AFTER_MS - 1);
    assert!(announced(&effects).is_empty(), "{effects:?}");
    // The first block after: announced, directly to the peers.
    let effects = empty_block(&community, &mut core, FIRST_BLOCK_MS + REANNOUNCE_AFTER_MS);
    assert_eq!(announced(&effects), [vec![to_bytes(&tx)]]);
    // Then after twice the pause, and twice again: while it waits, it is
    // announced again, ever less often.
    let mut last = FIRST_BLOCK_MS + REANNOUNCE_AFTER_MS;
    for pause in [2 * REANNOUNCE_AFTER_MS, 4 * REANNOUNCE_AFTER_MS] {
        let effects = empty_block(&community, &mut core, last + pause - 1);
        assert!(announced(&effects).is_empty(), "announced before {pause} ms had passed");
        let effects = empty_block(&community, &mut core, last + pause);
        assert_eq!(announced(&effects), [vec![to_bytes(&tx)]], "not announced after {pause} ms");
        last += pause;
    }
    assert!(core.mempool().contains(&tx.id(&community.genesis.community_id)));
    // The pause stops growing at its bound.
    assert_eq!(reannounce_pause_ms(0), REANNOUNCE_AFTER_MS);
    assert_eq!(reannounce_pause_ms(3), 8 * REANNOUNCE_AFTER_MS);
    assert_eq!(reannounce_pause_ms(10), REANNOUNCE_PAUSE_MAX_MS);
    assert_eq!(reannounce_pause_ms(u32::MAX), REANNOUNCE_PAUSE_MAX_MS);
}

#[test]
fn an_offer_whose_gate_has_passed_is_dropped_not_announced_again() {
    let (community, block) = registered(1);
    let mut core = replica_at_height_1(&community, &block);
    // Interval 3's gate closes at T0 + 2,500 ms.
    submit(&mut core, FIRST_BLOCK_MS, offer(&community, 0, 1, 50_000)).unwrap();
    let effects = empty_block(&community, &mut core, T0 + 2_500);
    assert!(!effects.iter().any(|effect| matches!(effect, Effect::Announce { .. })), "{effects:?}");
}

#[test]
fn a_restarted_core_admits_again_what_it_acknowledged_and_drops_what_no_longer_fits() {
    let (community, block) = registered(2);
    let mut before = replica_at_height_1(&community, &block);
    let attestation = |household| community.reading(household, 0, 0, 0);
    // Interval 3's gate closes at T0 + 2,500 ms, interval 8's at T0 + 7,500.
    let soon = community.offer_tx(0, 1, 3, Side::Sell, 100, 50_000, attestation(0));
    let later = community.offer_tx(1, 1, 8, Side::Sell, 100, 50_000, attestation(1));
    let community_id = community.genesis.community_id;
    let (soon_id, later_id) = (soon.id(&community_id), later.id(&community_id));
    submit(&mut before, FIRST_BLOCK_MS, soon).unwrap();
    submit(&mut before, FIRST_BLOCK_MS, later.clone()).unwrap();
    assert_eq!(before.acknowledged().waiting().unwrap().len(), 2);

    // The node is killed; it restarts after interval 3's gate.
    let (store, acknowledged) = before.into_stores();
    let index = Index::in_memory(&community.genesis.hash()).unwrap();
    let mut after =
        ChainCore::new(community.genesis.clone(), store, index, acknowledged, Role::Replica).unwrap();
    assert!(after.mempool().is_empty());
    let effects = after.restore(T0 + 2_600).unwrap();
    let dropped: Vec<_> = effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Dropped { id, dropped } => Some((*id, dropped.reason.as_str(), dropped.height)),
            _ => None,
        })
        .collect();
    assert_eq!(dropped, [(soon_id, "interval_closed", 1)]);
    assert_eq!(after.acknowledged().dropped(&soon_id).unwrap().map(|dropped| dropped.height), Some(1));
    assert!(after.mempool().contains(&later_id));
    assert_eq!(
        after.acknowledged().waiting().unwrap().iter().map(|waiting| waiting.id).collect::<Vec<_>>(),
        [later_id]
    );
    // It is published as soon as a peer subscribes.
    let effects = after.handle_subscribed();
    assert!(
        matches!(&effects[..], [Effect::Publish { transaction: Some(id), bytes, .. }] if *id == later_id && *bytes == to_bytes(&later)),
        "{effects:?}"
    );
    // Once a block holds it, nothing waits.
    block_of(&community, &mut after, vec![later], T0 + 2_700);
    assert!(after.acknowledged().waiting().unwrap().is_empty());
    assert_eq!(after.acknowledged().dropped(&later_id).unwrap(), None);
}

/// Applies a certified block of `transactions` made at `time_ms`: its
/// effects.
fn block_of(
    community: &TestCommunity,
    core: &mut ChainCore<MemoryStore>,
    transactions: Vec<SignedTx>,
    time_ms: u64,
) -> Vec<Effect> {
    let validator = LocalValidator { keypair: validator_key(community) };
    let (block, _) = validator.produce(&community.genesis, core.state(), transactions, time_ms).unwrap();
    let effects = core.handle_gossip(time_ms, Topic::Blocks, message(7), peer(1), &to_bytes(&block));
    assert!(matches!(verdicts(&effects)[..], [(_, Verdict::Accept)]), "{effects:?}");
    effects
}

#[test]
fn a_forged_block_far_ahead_is_rejected_and_moves_nothing() {
    let (community, blocks) = trading_chain(3, 2, 4);
    let mut core = replica(&community.genesis);
    let liar = peer(4);
    let mut forged = blocks[2].clone();
    forged.block.header.height = u64::MAX;
    let effects = core.handle_gossip(T0, Topic::Blocks, message(9), liar, &to_bytes(&forged));
    assert!(
        matches!(verdicts(&effects)[..], [(_, Verdict::Reject(Invalid::Block(_)))]),
        "a forged height is checked before it is believed: {effects:?}"
    );
    assert!(!effects.iter().any(|effect| matches!(effect, Effect::RequestBlocks { .. })), "{effects:?}");
    assert_eq!(core.best_seen_height(), 0);

    // A sync response claiming a height it does not show moves nothing
    // either, and an invalid block in one counts against its sender: the
    // third time, it is banned.
    let claim = SyncResponse { blocks: vec![], tip_height: u64::MAX };
    assert!(core.handle_sync_response(T0, liar, claim).is_empty());
    assert_eq!(core.best_seen_height(), 0);
    let mut tampered = blocks[0].clone();
    tampered.block.header.timestamp_ms += 1;
    let invalid = SyncResponse { blocks: vec![to_bytes(&tampered)], tip_height: 4 };
    let mut effects = Vec::new();
    for _ in 0..INVALID_MESSAGES_BAN {
        effects.extend(core.handle_sync_response(T0, liar, invalid.clone()));
    }
    assert!(
        effects.iter().any(|effect| matches!(effect, Effect::Ban { peer } if *peer == liar)),
        "{effects:?}"
    );
    assert_eq!(core.state().height, 0);
}

#[test]
fn a_stranger_s_transactions_are_refused_before_their_signatures_are_checked() {
    let (community, block) = registered(1);
    let mut core = replica_at_height_1(&community, &block);
    let stranger = gridshare_ledger::testkit::derived_key(99, 3, 0);
    let attestation = community.reading(0, 0, 0, 0);
    let mut offer = community.offer_tx(0, 1, 3, Side::Sell, 100, 50_000, attestation);
    if let Tx::Offer(inner) = &mut offer.tx {
        inner.account = stranger.public();
    }
    // Its signature is not even valid: no verification is spent to find it.
    let effects =
        core.handle_gossip(FIRST_BLOCK_MS, Topic::Transactions, message(2), peer(5), &to_bytes(&offer));
    assert!(
        matches!(
            verdicts(&effects)[..],
            [(_, Verdict::Ignore(Ignored::Refused(SubmitError::Rejected(Rejection::UnknownAccount(_)))))]
        ),
        "{effects:?}"
    );
    assert!(!core.batch_open(), "nothing waits for verification");
    let refused = submit(&mut core, FIRST_BLOCK_MS, offer.clone());
    assert!(matches!(refused, Err(SubmitError::Rejected(Rejection::UnknownAccount(_)))), "{refused:?}");

    // A flood of them is useless work: every WASTED_BURST (beyond what
    // drains) counts as one invalid message, and the third bans the peer.
    let flood = |core: &mut ChainCore<MemoryStore>, from: PeerId, count: u64| {
        let mut bans = Vec::new();
        for _ in 0..count {
            let effects =
                core.handle_gossip(FIRST_BLOCK_MS, Topic::Transactions, message(2), from, &to_bytes(&offer));
            bans.extend(effects.into_iter().filter(|effect| matches!(effect, Effect::Ban { .. })));
        }
        bans
    };
    let bursts = u64::from(INVALID_MESSAGES_BAN);
    // The first message above (one) and the flood make `bursts` overflows.
    let bans = flood(&mut core, peer(5), bursts * WASTED_BURST + bursts - 1);
    assert!(matches!(bans[..], [Effect::Ban { peer: banned }] if banned == peer(5)), "{bans:?}");
    // One message short of that is no ban.
    let bans = flood(&mut core, peer(6), bursts * WASTED_BURST + bursts - 1);
    assert!(bans.is_empty(), "{bans:?}");
    // A node catching up ignores much that is valid: it counts none of it.
    let validator = LocalValidator { keypair: validator_key(&community) };
    let (second, _) =
        validator.produce(&community.genesis, core.state(), Vec::new(), FIRST_BLOCK_MS + 100).unwrap();
    let mut behind = replica(&community.genesis);
    behind.handle_gossip(FIRST_BLOCK_MS, Topic::Blocks, message(3), peer(9), &to_bytes(&second));
    assert_eq!((behind.state().height, behind.best_seen_height()), (0, 2));
    assert!(flood(&mut behind, peer(7), bursts * (WASTED_BURST + 1)).is_empty());
}

#[test]
fn a_sync_response_stays_within_its_byte_budget_and_a_failed_request_is_retried_while_behind() {
    let (community, blocks) = trading_chain(3, 2, 6);
    let mut server = replica(&community.genesis);
    let sizes: Vec<usize> = blocks.iter().map(|block| to_bytes(block).len()).collect();
    let tip_height = blocks.last().unwrap().block.header.height;
    let response = SyncResponse { blocks: blocks.iter().map(to_bytes).collect(), tip_height };
    server.handle_sync_response(T0, peer(1), response);
    assert_eq!(server.state().height, tip_height);
    // Every block fits the budget here: all of them, in one response.
    let served = server.serve_sync(&SyncRequest { from_height: 1, max_blocks: SYNC_BLOCKS_MAX });
    assert_eq!(served.blocks.len(), blocks.len());
    assert!(sizes.iter().sum::<usize>() <= SYNC_RESPONSE_BYTES_MAX);
    // A smaller budget cuts the response at a block, one block at least.
    let encoded = || blocks.iter().map(to_bytes);
    assert_eq!(within_bytes(encoded(), sizes[0] + sizes[1]).len(), 2);
    assert_eq!(within_bytes(encoded(), sizes[0] + sizes[1] - 1).len(), 1);
    assert_eq!(within_bytes(encoded(), 0).len(), 1);

    // A replica behind (a certified block ahead showed it) asks again
    // after a failed request, of the peer the driver names, at most every
    // SYNC_RETRY_MS.
    let mut behind = replica(&community.genesis);
    let effects = behind.handle_gossip(T0, Topic::Blocks, message(4), peer(1), &to_bytes(&blocks[4]));
    assert!(matches!(verdicts(&effects)[..], [(_, Verdict::Ignore(Ignored::AheadBlock))]), "{effects:?}");
    let asked = |effects: &[Effect]| -> Vec<PeerId> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::RequestBlocks { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect()
    };
    assert_eq!(asked(&behind.handle_sync_failed(T0, peer(2))), [peer(2)]);
    assert!(asked(&behind.handle_sync_failed(T0 + SYNC_RETRY_MS - 1, peer(3))).is_empty());
    assert_eq!(asked(&behind.handle_sync_failed(T0 + SYNC_RETRY_MS, peer(3))), [peer(3)]);
    // Not behind: nothing to ask for.
    assert!(asked(&server.handle_sync_failed(T0 + 10 * SYNC_RETRY_MS, peer(2))).is_empty());
}
