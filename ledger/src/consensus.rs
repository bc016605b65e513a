//! What validators sign besides votes, so that consensus messages have
//! canonical, domain-separated bytes like everything else: a proposal of a
//! block for a height and round, the proposer's signature over a streamed
//! block, and the evidence that a validator signed two conflicting votes,
//! which anyone can check against the genesis.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::Hash;
use crate::block::Vote;
use crate::encoding::{Domain, domain_bytes};
use crate::genesis::Genesis;
use crate::ids::{CommunityId, PublicKey, Signature};

/// A proposer's claim that `block_hash` is its block for `height` and
/// `round`; `pol_round` is the round of the proof-of-lock it re-proposes
/// under, if any (Tendermint's valid round).
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    pub height: u64,
    pub round: u32,
    pub block_hash: Hash,
    pub pol_round: Option<u32>,
    pub proposer: PublicKey,
}

impl Proposal {
    pub fn signing_bytes(&self, community: &CommunityId) -> Vec<u8> {
        domain_bytes(Domain::Proposal, community, self)
    }
}

/// What the builder of a block signs at the end of streaming it to the other
/// validators, so that a stream cannot be passed off as another's. It names
/// no round: a block re-proposed in a later round is streamed again with the
/// same signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StreamedBlock {
    pub height: u64,
    pub block_hash: Hash,
    pub builder: PublicKey,
}

impl StreamedBlock {
    pub fn signing_bytes(&self, community: &CommunityId) -> Vec<u8> {
        domain_bytes(Domain::StreamedBlock, community, self)
    }
}

/// Two votes of one validator, of one kind, for one height and round, for
/// different blocks, each with its signature: proof that the validator
/// equivocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct VoteEquivocation {
    pub first: Vote,
    pub first_signature: Signature,
    pub second: Vote,
    pub second_signature: Signature,
}

/// Why an equivocation claim does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("the two votes are not by one validator for one height, round and kind")]
    NotComparable,
    #[error("the two votes are for the same block: no conflict")]
    SameBlock,
    #[error("{0} is not a validator of this community")]
    NotAValidator(PublicKey),
    #[error("a vote's signature does not verify")]
    BadSignature,
}

impl VoteEquivocation {
    /// Checks the claim against the genesis: both votes signed by the same
    /// validator, comparable and conflicting.
    pub fn verify(&self, genesis: &Genesis) -> Result<(), EvidenceError> {
        let (first, second) = (&self.first, &self.second);
        if first.validator != second.validator
            || first.height != second.height
            || first.round != second.round
            || first.kind != second.kind
        {
            return Err(EvidenceError::NotComparable);
        }
        if first.block_hash == second.block_hash {
            return Err(EvidenceError::SameBlock);
        }
        if genesis.voting_power_of(&first.validator).is_none() {
            return Err(EvidenceError::NotAValidator(first.validator));
        }
        let community = &genesis.community_id;
        for (vote, signature) in [(first, &self.first_signature), (second, &self.second_signature)] {
            vote.validator
                .verify(&vote.signing_bytes(community), signature)
                .map_err(|_| EvidenceError::BadSignature)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

    use super::*;
    use crate::block::VoteKind;
    use crate::testkit::{TestCommunity, test_market};

    #[test]
    fn an_equivocation_is_proven_and_a_false_claim_refused() {
        let community = TestCommunity::new(3, 1, test_market(), 0);
        let genesis = &community.genesis;
        let key = &community.validator;
        let vote = |hash: u8| Vote {
            kind: VoteKind::Precommit,
            height: 7,
            round: 1,
            block_hash: Some(Hash([hash; 32])),
            validator: key.public(),
        };
        let sign = |vote: &Vote| key.sign(&vote.signing_bytes(&genesis.community_id));
        let (a, b) = (vote(1), vote(2));
        let evidence =
            VoteEquivocation { first: a, first_signature: sign(&a), second: b, second_signature: sign(&b) };
        assert_eq!(evidence.verify(genesis), Ok(()));
        let same = VoteEquivocation { second: a, second_signature: sign(&a), ..evidence };
        assert_eq!(same.verify(genesis), Err(EvidenceError::SameBlock));
        let forged = VoteEquivocation { second_signature: sign(&a), ..evidence };
        assert_eq!(forged.verify(genesis), Err(EvidenceError::BadSignature));
        let later = Vote { round: 2, ..b };
        let apart = VoteEquivocation { second: later, second_signature: sign(&later), ..evidence };
        assert_eq!(apart.verify(genesis), Err(EvidenceError::NotComparable));
    }

    #[test]
    fn proposals_and_streams_sign_different_bytes() {
        let community = CommunityId([5; 32]);
        let hash = Hash([1; 32]);
        let proposer = PublicKey([2; 32]);
        let proposal = Proposal { height: 1, round: 0, block_hash: hash, pol_round: None, proposer };
        let streamed = StreamedBlock { height: 1, block_hash: hash, builder: proposer };
        assert_ne!(proposal.signing_bytes(&community), streamed.signing_bytes(&community));
        assert!(proposal.signing_bytes(&community)[1..].starts_with(b"gridshare/proposal"));
    }
}
