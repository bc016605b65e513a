//! What validators sign besides votes, so that consensus messages have
//! canonical, domain-separated bytes like everything else: a proposal of a
//! block for a height and round, the proposer's signature over a streamed
//! block, and the evidence that a validator signed two conflicting votes or
//! two conflicting proposals, which anyone can check against the genesis.

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

/// Two different proposals of one proposer for one height and round (another
/// block, or the same block under another proof-of-lock round), each with
/// its signature: proof that the proposer equivocated, since a proposer
/// signs one proposal a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProposalEquivocation {
    pub first: Proposal,
    pub first_signature: Signature,
    pub second: Proposal,
    pub second_signature: Signature,
}

/// Evidence that a validator equivocated, of either kind: what a store
/// keeps, an export carries and the audit checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Equivocation {
    Votes(VoteEquivocation),
    Proposals(ProposalEquivocation),
}

/// Why an equivocation claim does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("the two messages are not by one validator for one height and round (and, for votes, one kind)")]
    NotComparable,
    #[error("the two votes are for the same block: no conflict")]
    SameBlock,
    #[error("the two proposals are the same (block and proof-of-lock round): no conflict")]
    SameProposal,
    #[error("{0} is not a validator of this community")]
    NotAValidator(PublicKey),
    #[error("a signature of the evidence does not verify")]
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

impl ProposalEquivocation {
    /// Checks the claim against the genesis: both proposals signed by the
    /// same validator of the genesis, for one height and round, and different.
    pub fn verify(&self, genesis: &Genesis) -> Result<(), EvidenceError> {
        let (first, second) = (&self.first, &self.second);
        if first.proposer != second.proposer || first.height != second.height || first.round != second.round {
            return Err(EvidenceError::NotComparable);
        }
        if first == second {
            return Err(EvidenceError::SameProposal);
        }
        if genesis.voting_power_of(&first.proposer).is_none() {
            return Err(EvidenceError::NotAValidator(first.proposer));
        }
        let community = &genesis.community_id;
        for (proposal, signature) in [(first, &self.first_signature), (second, &self.second_signature)] {
            proposal
                .proposer
                .verify(&proposal.signing_bytes(community), signature)
                .map_err(|_| EvidenceError::BadSignature)?;
        }
        Ok(())
    }
}

impl Equivocation {
    /// What conflicts: `"votes"` or `"proposals"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Equivocation::Votes(_) => "votes",
            Equivocation::Proposals(_) => "proposals",
        }
    }

    /// The validator the evidence is against.
    pub fn validator(&self) -> PublicKey {
        match self {
            Equivocation::Votes(votes) => votes.first.validator,
            Equivocation::Proposals(proposals) => proposals.first.proposer,
        }
    }

    /// The height of the first of the two messages.
    pub fn height(&self) -> u64 {
        match self {
            Equivocation::Votes(votes) => votes.first.height,
            Equivocation::Proposals(proposals) => proposals.first.height,
        }
    }

    /// Checks the claim against the genesis.
    pub fn verify(&self, genesis: &Genesis) -> Result<(), EvidenceError> {
        match self {
            Equivocation::Votes(votes) => votes.verify(genesis),
            Equivocation::Proposals(proposals) => proposals.verify(genesis),
        }
    }
}

impl From<VoteEquivocation> for Equivocation {
    fn from(votes: VoteEquivocation) -> Equivocation {
        Equivocation::Votes(votes)
    }
}

impl From<ProposalEquivocation> for Equivocation {
    fn from(proposals: ProposalEquivocation) -> Equivocation {
        Equivocation::Proposals(proposals)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

    use super::*;
    use crate::block::VoteKind;
    use crate::ids::Keypair;
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
    fn a_double_proposal_is_proven_and_a_false_claim_refused() {
        let community = TestCommunity::new(3, 1, test_market(), 0);
        let genesis = &community.genesis;
        let key = &community.validator;
        let proposal = |hash: u8, pol_round| Proposal {
            height: 7,
            round: 1,
            block_hash: Hash([hash; 32]),
            pol_round,
            proposer: key.public(),
        };
        let sign = |proposal: &Proposal| key.sign(&proposal.signing_bytes(&genesis.community_id));
        let (a, b) = (proposal(1, None), proposal(2, None));
        let evidence = ProposalEquivocation {
            first: a,
            first_signature: sign(&a),
            second: b,
            second_signature: sign(&b),
        };
        assert_eq!(evidence.verify(genesis), Ok(()));
        assert_eq!(Equivocation::from(evidence).verify(genesis), Ok(()));
        assert_eq!(Equivocation::from(evidence).validator(), key.public());
        assert_eq!(Equivocation::from(evidence).height(), 7);
        // The same block under another proof-of-lock round is a second proposal too.
        let relocked = proposal(1, Some(0));
        let relock = ProposalEquivocation { second: relocked, second_signature: sign(&relocked), ..evidence };
        assert_eq!(relock.verify(genesis), Ok(()));
        let same = ProposalEquivocation { second: a, second_signature: sign(&a), ..evidence };
        assert_eq!(same.verify(genesis), Err(EvidenceError::SameProposal));
        let forged = ProposalEquivocation { second_signature: sign(&a), ..evidence };
        assert_eq!(forged.verify(genesis), Err(EvidenceError::BadSignature));
        for apart in [Proposal { round: 2, ..b }, Proposal { height: 8, ..b }] {
            let apart = ProposalEquivocation { second: apart, second_signature: sign(&apart), ..evidence };
            assert_eq!(apart.verify(genesis), Err(EvidenceError::NotComparable));
        }
        // Another signer's proposal is not this proposer's.
        let other = Keypair::from_seed([9; 32]);
        let theirs = Proposal { proposer: other.public(), ..b };
        let signed = other.sign(&theirs.signing_bytes(&genesis.community_id));
        let two_proposers = ProposalEquivocation { second: theirs, second_signature: signed, ..evidence };
        assert_eq!(two_proposers.verify(genesis), Err(EvidenceError::NotComparable));
        // A key outside the genesis proves nothing about its validators.
        let sign_other = |proposal: &Proposal| other.sign(&proposal.signing_bytes(&genesis.community_id));
        let (c, d) = (Proposal { proposer: other.public(), ..a }, Proposal { proposer: other.public(), ..b });
        let outsider = ProposalEquivocation {
            first: c,
            first_signature: sign_other(&c),
            second: d,
            second_signature: sign_other(&d),
        };
        assert_eq!(outsider.verify(genesis), Err(EvidenceError::NotAValidator(other.public())));
        // A proposal's signature is not a vote's: a pair of signed votes
        // relabelled as proposals does not verify.
        let vote = Vote {
            kind: VoteKind::Prevote,
            height: 7,
            round: 1,
            block_hash: Some(Hash([1; 32])),
            validator: key.public(),
        };
        let vote_signature = key.sign(&vote.signing_bytes(&genesis.community_id));
        let relabelled = ProposalEquivocation { first_signature: vote_signature, ..evidence };
        assert_eq!(relabelled.verify(genesis), Err(EvidenceError::BadSignature));
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
