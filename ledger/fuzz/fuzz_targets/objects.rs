//! Fuzz target: every other protocol object that arrives as bytes from
//! outside: consensus messages (proposals, streamed blocks, votes,
//! equivocation evidence of votes and of proposals, blocks), the parts of an
//! inclusion proof the wallet gets from a node, and state snapshots (and the
//! meters in them, with their settlement base and estimate) and evidence
//! read from disk. Decoding
//! never panics; what decodes was canonical (the state's maps aside, see
//! below); checking signatures and proofs never panics.
//!
//! Input: a selector byte (`gridshare_ledger_fuzz::object`, modulo their
//! count), then the object's bytes; an inclusion proof is preceded by the
//! 32-byte root it is checked against.

#![no_main]

use gridshare_ledger::Hash;
use gridshare_ledger::block::{Block, BlockHeader, CommitCertificate, Receipt, Vote};
use gridshare_ledger::consensus::{
    Equivocation, Proposal, ProposalEquivocation, StreamedBlock, VoteEquivocation,
};
use gridshare_ledger::encoding::{from_bytes, to_bytes};
use gridshare_ledger::merkle::InclusionProof;
use gridshare_ledger::state::{Meter, State};
use gridshare_ledger::tx::SignedMeterReading;
use gridshare_ledger_fuzz::{decode_canonical, fixed, object};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&selector, bytes)) = input.split_first() else { return };
    let (community, first_block) = fixed();
    let genesis = &community.genesis;
    let id = &genesis.community_id;
    match selector % object::COUNT {
        object::PROPOSAL => {
            let Some(proposal) = decode_canonical::<Proposal>(bytes) else { return };
            let _ = proposal.signing_bytes(id);
        }
        object::STREAMED_BLOCK => {
            let Some(streamed) = decode_canonical::<StreamedBlock>(bytes) else { return };
            let _ = streamed.signing_bytes(id);
        }
        object::VOTE_EQUIVOCATION => {
            let Some(evidence) = decode_canonical::<VoteEquivocation>(bytes) else { return };
            if evidence.verify(genesis).is_ok() {
                // Only the fixed genesis's one validator can have equivocated.
                assert_eq!(evidence.first.validator, community.validator.public());
                assert_ne!(evidence.first.block_hash, evidence.second.block_hash);
            }
        }
        object::PROPOSAL_EQUIVOCATION => {
            let Some(evidence) = decode_canonical::<ProposalEquivocation>(bytes) else { return };
            if evidence.verify(genesis).is_ok() {
                // Only the fixed genesis's one validator can have equivocated,
                // with two different proposals for one height and round.
                assert_eq!(evidence.first.proposer, community.validator.public());
                assert_ne!(evidence.first, evidence.second);
                assert_eq!(
                    (evidence.first.height, evidence.first.round),
                    (evidence.second.height, evidence.second.round)
                );
            }
        }
        object::EQUIVOCATION => {
            let Some(evidence) = decode_canonical::<Equivocation>(bytes) else { return };
            // The stored form verifies exactly when the evidence inside does.
            let inner = match &evidence {
                Equivocation::Votes(votes) => votes.verify(genesis),
                Equivocation::Proposals(proposals) => proposals.verify(genesis),
            };
            assert_eq!(evidence.verify(genesis), inner);
            if inner.is_ok() {
                assert_eq!(evidence.validator(), community.validator.public());
            }
        }
        object::VOTE => {
            let Some(vote) = decode_canonical::<Vote>(bytes) else { return };
            let _ = vote.signing_bytes(id);
        }
        object::BLOCK => {
            let Some(block) = decode_canonical::<Block>(bytes) else { return };
            let _ = first_block.certificate.verify(genesis, &block.header);
            // Proofs made from a decoded block verify against its own roots.
            let header = BlockHeader {
                tx_root: gridshare_ledger::block::tx_root(&block.transactions),
                receipt_root: gridshare_ledger::block::receipt_root(&block.receipts),
                ..block.header
            };
            if let Some(proof) = block.prove_transaction(0)
                && let Ok(count) = u32::try_from(block.transactions.len())
            {
                let header = BlockHeader { tx_count: count, ..header };
                assert_eq!(header.verify_transaction(&block.transactions[0], &proof), Ok(()));
            }
            if let Some(proof) = block.prove_receipt(block.receipts.len().saturating_sub(1))
                && let Ok(count) = u32::try_from(block.receipts.len())
            {
                let header = BlockHeader { receipt_count: count, ..header };
                let last = block.receipts.last().expect("a proof means a receipt");
                assert_eq!(header.verify_receipt(last, &proof), Ok(()));
            }
        }
        object::BLOCK_HEADER => {
            let Some(header) = decode_canonical::<BlockHeader>(bytes) else { return };
            let verdict = first_block.certificate.verify(genesis, &header);
            assert_eq!(verdict.is_ok(), header == first_block.block.header, "a certificate for two headers");
        }
        object::COMMIT_CERTIFICATE => {
            let Some(certificate) = decode_canonical::<CommitCertificate>(bytes) else { return };
            let _ = certificate.verify(genesis, &first_block.block.header);
        }
        object::RECEIPT => {
            let Some(receipt) = decode_canonical::<Receipt>(bytes) else { return };
            let _ = first_block
                .block
                .header
                .verify_receipt(&receipt, &InclusionProof { leaf_index: 0, tree_size: 1, path: Vec::new() });
        }
        object::INCLUSION_PROOF => {
            let Some((root, bytes)) = bytes.split_first_chunk::<32>() else { return };
            let Some(proof) = decode_canonical::<InclusionProof>(bytes) else { return };
            // The leaf is the first transaction of the fixed block; any root,
            // index, size and path are checked without a panic.
            let leaf = first_block.block.transactions.first().map(to_bytes).unwrap_or_default();
            let _ = proof.verify(&leaf, &Hash(*root));
        }
        object::SIGNED_METER_READING => {
            let Some(reading) = decode_canonical::<SignedMeterReading>(bytes) else { return };
            let _ = reading.verify(id);
        }
        object::STATE => {
            // borsh decodes a map from entries in any order (a later
            // duplicate key wins), so a snapshot's bytes are not always
            // canonical; harmless, since a loaded snapshot is checked by its
            // root against the certified header. Decoding is still total and
            // re-encoding is stable.
            let Ok(state) = from_bytes::<State>(bytes) else { return };
            let canonical = to_bytes(&state);
            assert_eq!(from_bytes::<State>(&canonical).as_ref(), Ok(&state));
            let _ = state.root(id);
            let _ = state.check_invariants();
        }
        object::METER => {
            let Some(meter) = decode_canonical::<Meter>(bytes) else { return };
            // The physics bound and the estimate are total on any meter:
            // capacities saturate, they never panic.
            let genesis = &community.genesis;
            let _ = (
                genesis.meter_capacity_wh(meter.max_import_w),
                genesis.meter_capacity_wh(meter.max_export_w),
            );
            let mut state = State::genesis(genesis);
            state.meters.insert(meter.last_reading.map_or(community.validator.public(), |r| r.meter), meter);
            let _ = state.root(id);
            let _ = state.check_invariants();
        }
        _ => unreachable!("the selector is taken modulo the count"),
    }
});
