//! What the ledger's fuzz targets share: a fixed test community to verify
//! against, the canonical round trip every decoded object must pass, and
//! seed inputs (real objects from `testkit`, and the signature vectors of
//! `tests/vectors/signatures.txt`) that start the fuzzer deep inside the
//! formats instead of at their first byte.

use std::sync::LazyLock;

use borsh::{BorshDeserialize, BorshSerialize};
use gridshare_ledger::block::{CertifiedBlock, Vote, VoteKind};
use gridshare_ledger::consensus::{
    Equivocation, Proposal, ProposalEquivocation, StreamedBlock, VoteEquivocation,
};
use gridshare_ledger::encoding::{from_bytes, to_bytes};
use gridshare_ledger::execute::{Signatures, execute};
use gridshare_ledger::export::ExportWriter;
use gridshare_ledger::state::State;
use gridshare_ledger::store::at_rest;
use gridshare_ledger::testkit::{TestCommunity, trading_chain};

/// The seed of the fixed community: the one `trading_chain` below uses too,
/// so that seed blocks verify against [`fixed`]'s genesis.
const SEED: u64 = 7;

/// A fixed community (one validator, one registrar, two households) and its
/// first certified block, built once per process: certificates and evidence
/// are verified against its genesis.
pub fn fixed() -> &'static (TestCommunity, CertifiedBlock) {
    static FIXED: LazyLock<(TestCommunity, CertifiedBlock)> = LazyLock::new(|| {
        let (community, chain) = trading_chain(SEED, 2, 0);
        let first = chain.into_iter().next().expect("a trading chain has a first block");
        (community, first)
    });
    &FIXED
}

/// Decodes `bytes` as a `T` and, if that succeeds, asserts that they were
/// the canonical bytes of the value: re-encoding gives them back, so no two
/// byte strings decode to one object (a signature or hash over the bytes
/// then means the object).
pub fn decode_canonical<T>(bytes: &[u8]) -> Option<T>
where
    T: BorshSerialize + BorshDeserialize,
{
    let value = from_bytes::<T>(bytes).ok()?;
    let encoded = to_bytes(&value);
    assert!(
        encoded == bytes,
        "{} decodes from bytes that are not its canonical encoding:\n input   {}\n canonical {}",
        std::any::type_name::<T>(),
        hex(bytes),
        hex(&encoded),
    );
    Some(value)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Selector bytes of the `objects` target: which type the rest decodes as.
pub mod object {
    pub const PROPOSAL: u8 = 0;
    pub const STREAMED_BLOCK: u8 = 1;
    pub const VOTE_EQUIVOCATION: u8 = 2;
    pub const VOTE: u8 = 3;
    pub const BLOCK: u8 = 4;
    pub const BLOCK_HEADER: u8 = 5;
    pub const COMMIT_CERTIFICATE: u8 = 6;
    pub const RECEIPT: u8 = 7;
    pub const INCLUSION_PROOF: u8 = 8;
    pub const SIGNED_METER_READING: u8 = 9;
    pub const STATE: u8 = 10;
    pub const PROPOSAL_EQUIVOCATION: u8 = 11;
    /// Evidence of either kind as a store keeps it (`Equivocation`).
    pub const EQUIVOCATION: u8 = 12;
    /// A meter as a state snapshot holds it: its physics limits, last
    /// reading, registration interval, settlement base and estimate.
    pub const METER: u8 = 13;
    /// How many selectors there are; a selector byte is taken modulo this.
    pub const COUNT: u8 = 14;
}

/// Seed inputs for each target, as (target name, input) pairs: real,
/// validly signed objects of a short trading chain of the fixed community.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let (community, chain) = trading_chain(SEED, 2, 6);
    let genesis = &community.genesis;
    let mut seeds = Vec::new();

    for block in &chain {
        for tx in &block.block.transactions {
            seeds.push(("signed_tx", to_bytes(tx)));
        }
        seeds.push(("certified_block", to_bytes(block)));
        seeds.push(("at_rest", at_rest::encode(&to_bytes(block))));
        seeds.push(("objects", selected(object::BLOCK, &block.block)));
        seeds.push(("objects", selected(object::BLOCK_HEADER, &block.block.header)));
        seeds.push(("objects", selected(object::COMMIT_CERTIFICATE, &block.certificate)));
        for receipt in &block.block.receipts {
            seeds.push(("objects", selected(object::RECEIPT, receipt)));
        }
        if let Some(proof) = block.block.prove_transaction(block.block.transactions.len() / 2) {
            let mut input = vec![object::INCLUSION_PROOF];
            input.extend_from_slice(block.block.header.tx_root.as_bytes());
            input.extend_from_slice(&to_bytes(&proof));
            seeds.push(("objects", input));
        }
    }

    let last = chain.last().expect("the chain has blocks");
    let header = &last.block.header;
    let validator = &community.validator;
    let id = genesis.community_id;
    let proposal = Proposal {
        height: header.height,
        round: 0,
        block_hash: header.hash(),
        pol_round: None,
        proposer: validator.public(),
    };
    seeds.push(("objects", selected(object::PROPOSAL, &proposal)));
    let streamed =
        StreamedBlock { height: header.height, block_hash: header.hash(), builder: validator.public() };
    seeds.push(("objects", selected(object::STREAMED_BLOCK, &streamed)));
    let vote = |hash| Vote {
        kind: VoteKind::Precommit,
        height: header.height,
        round: 0,
        block_hash: hash,
        validator: validator.public(),
    };
    let (first, second) = (vote(Some(header.hash())), vote(None));
    seeds.push(("objects", selected(object::VOTE, &first)));
    let equivocation = VoteEquivocation {
        first,
        first_signature: validator.sign(&first.signing_bytes(&id)),
        second,
        second_signature: validator.sign(&second.signing_bytes(&id)),
    };
    seeds.push(("objects", selected(object::VOTE_EQUIVOCATION, &equivocation)));
    let other = Proposal { block_hash: header.previous_hash, ..proposal };
    let double_proposal = ProposalEquivocation {
        first: proposal,
        first_signature: validator.sign(&proposal.signing_bytes(&id)),
        second: other,
        second_signature: validator.sign(&other.signing_bytes(&id)),
    };
    seeds.push(("objects", selected(object::PROPOSAL_EQUIVOCATION, &double_proposal)));
    let evidence = [Equivocation::Votes(equivocation), Equivocation::Proposals(double_proposal)];
    for stored in &evidence {
        seeds.push(("objects", selected(object::EQUIVOCATION, stored)));
    }
    seeds.push(("objects", selected(object::SIGNED_METER_READING, &community.reading(0, 3, 1_000, 2_000))));
    seeds.push(("objects", selected(object::STATE, &State::genesis(genesis))));
    // The state after the chain: meters with readings, bases and (for the
    // intervals after the last reading) estimates.
    let mut state = State::genesis(genesis);
    for block in &chain {
        state = execute(genesis, &state, &block.block, Signatures::AlreadyVerified)
            .expect("the trading chain is valid")
            .0;
    }
    seeds.push(("objects", selected(object::STATE, &state)));
    for meter in state.meters.values() {
        seeds.push(("objects", selected(object::METER, meter)));
    }

    let mut export = Vec::new();
    let mut writer = ExportWriter::new(&mut export, genesis).expect("writing to memory cannot fail");
    for block in &chain {
        writer.block(block).expect("writing to memory cannot fail");
    }
    for evidence in &evidence {
        writer.evidence(evidence).expect("writing to memory cannot fail");
    }
    writer.finish().expect("writing to memory cannot fail");
    seeds.push(("export", export));

    let mut with_offset = to_bytes(genesis);
    with_offset.extend_from_slice(&2_500_u64.to_le_bytes());
    seeds.push(("genesis", with_offset));

    let message = b"a message".to_vec();
    let mut signed = validator.public().0.to_vec();
    signed.extend_from_slice(&validator.sign(&message).0);
    signed.extend_from_slice(&message);
    seeds.push(("signature", signed));
    seeds.extend(signature_vectors().into_iter().map(|input| ("signature", input)));

    seeds.push(("hex_text", validator.public().to_string().into_bytes()));
    seeds.push(("hex_text", header.hash().to_string().to_uppercase().into_bytes()));
    seeds
}

/// The cases of `ledger/tests/vectors/signatures.txt` as `signature`
/// inputs: `key ‖ signature ‖ message`.
fn signature_vectors() -> Vec<Vec<u8>> {
    let text = include_str!("../../tests/vectors/signatures.txt");
    let field = |case: &str, name: &str| -> Vec<u8> {
        case.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| decode_hex(value.trim()))
            .unwrap_or_else(|| panic!("a signature vector without a valid {name}"))
    };
    text.split("\n== ")
        .skip(1)
        .map(|case| [field(case, "key "), field(case, "signature "), field(case, "message ")].concat())
        .collect()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|index| text.get(index..index + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

fn selected<T: BorshSerialize>(selector: u8, value: &T) -> Vec<u8> {
    let mut input = vec![selector];
    input.extend_from_slice(&to_bytes(value));
    input
}
