//! Gridshare's Malachite `Context`: heights, validators from the genesis,
//! values (a block's hash; the block itself is streamed in parts), votes and
//! proposals whose signed bytes are the ledger's (`Vote::signing_bytes`,
//! `consensus::Proposal::signing_bytes`), so a commit certificate Malachite
//! produces is checked by `ledger`'s `CommitCertificate::verify` and the
//! audit. The types are newtypes over ledger types (the traits are
//! Malachite's).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use borsh::{BorshDeserialize, BorshSerialize};
use gridshare_ledger::Hash;
use gridshare_ledger::block::{Vote as LedgerVote, VoteKind};
use gridshare_ledger::consensus::Proposal as LedgerProposal;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::{CommunityId, Keypair, PublicKey, Signature};
use malachitebft_app_channel::app::types::core::{
    self as core, Context, LinearTimeouts, NilOrVal, Round, SignedExtension, SignedMessage, ValidatorProof,
    VoteExtensionScope, VoteType,
};
use malachitebft_signing::{Error as SigningError, Signer, VerificationResult, Verifier};

/// A block height.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Height(pub u64);

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl core::Height for Height {
    const ZERO: Height = Height(0);
    const INITIAL: Height = Height(1);

    fn increment_by(&self, n: u64) -> Height {
        Height(self.0.saturating_add(n))
    }

    fn decrement_by(&self, n: u64) -> Option<Height> {
        self.0.checked_sub(n).map(Height)
    }

    fn as_u64(&self) -> u64 {
        self.0
    }
}

/// A validator's address: its ledger public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Address(pub PublicKey);

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl core::Address for Address {}

/// The value consensus decides: the hash of a block's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct BlockId(pub Hash);

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl core::Value for BlockId {
    type Id = BlockId;

    fn id(&self) -> BlockId {
        *self
    }
}

/// A prevote or precommit. Its signed bytes are the ledger `Vote`'s.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    pub kind: VoteType,
    pub height: Height,
    pub round: Round,
    pub value: NilOrVal<BlockId>,
    pub validator: Address,
}

impl Vote {
    /// The ledger vote this is, or `None` for a vote without a round (which
    /// consensus never signs).
    pub fn ledger(&self) -> Option<LedgerVote> {
        Some(LedgerVote {
            kind: match self.kind {
                VoteType::Prevote => VoteKind::Prevote,
                VoteType::Precommit => VoteKind::Precommit,
            },
            height: self.height.0,
            round: self.round.as_u32()?,
            block_hash: match self.value {
                NilOrVal::Nil => None,
                NilOrVal::Val(BlockId(hash)) => Some(hash),
            },
            validator: self.validator.0,
        })
    }
}

impl core::Vote<GridshareContext> for Vote {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &NilOrVal<BlockId> {
        &self.value
    }

    fn take_value(self) -> NilOrVal<BlockId> {
        self.value
    }

    fn vote_type(&self) -> VoteType {
        self.kind
    }

    fn validator_address(&self) -> &Address {
        &self.validator
    }

    // Vote extensions are disabled (the default policy): none are made.
    fn extension(&self) -> Option<&SignedExtension<GridshareContext>> {
        None
    }

    fn take_extension(&mut self) -> Option<SignedExtension<GridshareContext>> {
        None
    }

    fn extend(self, _extension: SignedExtension<GridshareContext>) -> Vote {
        self
    }
}

/// A proposal of a block for a height and round.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    pub height: Height,
    pub round: Round,
    pub value: BlockId,
    pub pol_round: Round,
    pub proposer: Address,
}

impl Proposal {
    /// The ledger proposal this is, or `None` without a round.
    pub fn ledger(&self) -> Option<LedgerProposal> {
        Some(LedgerProposal {
            height: self.height.0,
            round: self.round.as_u32()?,
            block_hash: self.value.0,
            pol_round: self.pol_round.as_u32(),
            proposer: self.proposer.0,
        })
    }
}

impl core::Proposal<GridshareContext> for Proposal {
    fn height(&self) -> Height {
        self.height
    }

    fn round(&self) -> Round {
        self.round
    }

    fn value(&self) -> &BlockId {
        &self.value
    }

    fn take_value(self) -> BlockId {
        self.value
    }

    fn pol_round(&self) -> Round {
        self.pol_round
    }

    fn validator_address(&self) -> &Address {
        &self.proposer
    }
}

/// A part of a streamed block: who built it for which height and round, the
/// block's canonical bytes in chunks, and the builder's signature over a
/// `ledger::consensus::StreamedBlock`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ProposalPart {
    Init { height: Height, round: Round, pol_round: Round, builder: Address },
    Data(Vec<u8>),
    Fin(Signature),
}

impl core::ProposalPart<GridshareContext> for ProposalPart {
    fn is_first(&self) -> bool {
        matches!(self, ProposalPart::Init { .. })
    }

    fn is_last(&self) -> bool {
        matches!(self, ProposalPart::Fin(_))
    }
}

/// A validator and its voting power.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validator {
    pub address: Address,
    pub public_key: PublicKey,
    pub voting_power: u64,
}

impl core::Validator<GridshareContext> for Validator {
    fn address(&self) -> &Address {
        &self.address
    }

    fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    fn voting_power(&self) -> u64 {
        self.voting_power
    }
}

/// The genesis validators, by voting power descending, then address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    pub validators: Vec<Validator>,
}

impl ValidatorSet {
    pub fn from_genesis(genesis: &Genesis) -> ValidatorSet {
        let mut validators: Vec<Validator> = genesis
            .validators
            .iter()
            .map(|validator| Validator {
                address: Address(validator.key),
                public_key: validator.key,
                voting_power: validator.voting_power,
            })
            .collect();
        validators.sort_by(|a, b| b.voting_power.cmp(&a.voting_power).then(a.address.cmp(&b.address)));
        ValidatorSet { validators }
    }
}

impl core::ValidatorSet<GridshareContext> for ValidatorSet {
    fn count(&self) -> usize {
        self.validators.len()
    }

    fn total_voting_power(&self) -> u64 {
        // The genesis caps the total at u64::MAX / 3.
        self.validators.iter().map(|validator| validator.voting_power).fold(0, u64::saturating_add)
    }

    fn get_by_address(&self, address: &Address) -> Option<&Validator> {
        self.validators.iter().find(|validator| validator.address == *address)
    }

    fn get_by_index(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }
}

/// Ed25519 with the ledger's keys and signatures, verified under the one
/// rule of docs/PROTOCOL.md §3 (canonical `A` and `R`, `R` not of small
/// order, `S < ℓ`, the cofactored equation), as the audit verifies them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ed25519;

/// Bytes that are not a key or a signature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} bytes, got {got}")]
pub struct KeyLengthError {
    expected: usize,
    got: usize,
}

impl core::SigningScheme for Ed25519 {
    type DecodingError = KeyLengthError;
    type Signature = Signature;
    type PublicKey = PublicKey;
    type PrivateKey = Arc<Keypair>;

    fn decode_signature(bytes: &[u8]) -> Result<Signature, KeyLengthError> {
        let bytes =
            <[u8; 64]>::try_from(bytes).map_err(|_| KeyLengthError { expected: 64, got: bytes.len() })?;
        Ok(Signature(bytes))
    }

    fn encode_signature(signature: &Signature) -> Vec<u8> {
        signature.0.to_vec()
    }

    fn decode_public_key(bytes: &[u8]) -> Result<PublicKey, KeyLengthError> {
        let bytes =
            <[u8; 32]>::try_from(bytes).map_err(|_| KeyLengthError { expected: 32, got: bytes.len() })?;
        Ok(PublicKey(bytes))
    }

    fn encode_public_key(public_key: &PublicKey) -> Vec<u8> {
        public_key.0.to_vec()
    }
}

/// The community's consensus context.
#[derive(Clone, Debug)]
pub struct GridshareContext {
    pub community: CommunityId,
}

impl Context for GridshareContext {
    type Address = Address;
    type Height = Height;
    type ProposalPart = ProposalPart;
    type Proposal = Proposal;
    type Validator = Validator;
    type ValidatorSet = ValidatorSet;
    type Timeouts = LinearTimeouts;
    type Value = BlockId;
    type Vote = Vote;
    type Extension = bytes::Bytes;
    type SigningScheme = Ed25519;

    /// Round robin: height 1 round 0 starts with the first validator of the
    /// ordered set, and each height and each round moves one on.
    fn select_proposer<'a>(&self, set: &'a ValidatorSet, height: Height, round: Round) -> &'a Validator {
        let count = u64::try_from(set.validators.len()).unwrap_or(u64::MAX).max(1);
        let round = u64::from(round.as_u32().unwrap_or(0));
        let index = height.0.saturating_sub(1).wrapping_add(round) % count;
        let index = usize::try_from(index).unwrap_or(0);
        // The genesis has at least one validator, so index 0 exists.
        &set.validators[index]
    }

    fn new_proposal(
        &self,
        height: Height,
        round: Round,
        value: BlockId,
        pol_round: Round,
        address: Address,
    ) -> Proposal {
        Proposal { height, round, value, pol_round, proposer: address }
    }

    fn new_prevote(&self, height: Height, round: Round, value: NilOrVal<BlockId>, address: Address) -> Vote {
        Vote { kind: VoteType::Prevote, height, round, value, validator: address }
    }

    fn new_precommit(
        &self,
        height: Height,
        round: Round,
        value: NilOrVal<BlockId>,
        address: Address,
    ) -> Vote {
        Vote { kind: VoteType::Precommit, height, round, value, validator: address }
    }
}

/// Signs with the node's validator key, over the ledger's bytes.
#[derive(Debug)]
pub struct ValidatorSigner {
    pub key: Arc<Keypair>,
    pub community: CommunityId,
}

fn unsignable(what: &str) -> SigningError {
    SigningError::from_source(format!("cannot sign {what} without a round"))
}

#[async_trait::async_trait]
impl Signer<GridshareContext> for ValidatorSigner {
    async fn sign_vote(&self, vote: Vote) -> Result<SignedMessage<GridshareContext, Vote>, SigningError> {
        let bytes = vote.ledger().ok_or_else(|| unsignable("a vote"))?.signing_bytes(&self.community);
        let signature = self.key.sign(&bytes);
        Ok(SignedMessage::new(vote, signature))
    }

    async fn sign_proposal(
        &self,
        proposal: Proposal,
    ) -> Result<SignedMessage<GridshareContext, Proposal>, SigningError> {
        let bytes = proposal.ledger().ok_or_else(|| unsignable("a proposal"))?.signing_bytes(&self.community);
        let signature = self.key.sign(&bytes);
        Ok(SignedMessage::new(proposal, signature))
    }

    async fn sign_vote_extension(
        &self,
        _scope: VoteExtensionScope<GridshareContext>,
        _extension: bytes::Bytes,
    ) -> Result<SignedMessage<GridshareContext, bytes::Bytes>, SigningError> {
        Err(SigningError::from_source("Gridshare validators do not sign vote extensions"))
    }

    async fn sign_validator_proof(
        &self,
        public_key: Vec<u8>,
        peer_id: Vec<u8>,
    ) -> Result<ValidatorProof<GridshareContext>, SigningError> {
        let signature =
            self.key.sign(&ValidatorProof::<GridshareContext>::signing_bytes(&public_key, &peer_id));
        Ok(ValidatorProof::new(public_key, peer_id, signature))
    }
}

/// Verifies consensus messages under the ledger's one signature rule.
#[derive(Debug)]
pub struct ValidatorVerifier {
    pub community: CommunityId,
    /// The genesis's validator keys: a consensus peer must prove one of
    /// them, or it is disconnected.
    pub validators: BTreeSet<PublicKey>,
}

impl ValidatorVerifier {
    pub fn new(genesis: &Genesis) -> ValidatorVerifier {
        let validators = genesis.validators.iter().map(|validator| validator.key).collect();
        ValidatorVerifier { community: genesis.community_id, validators }
    }
}

fn verdict(key: &PublicKey, bytes: Option<Vec<u8>>, signature: &Signature) -> VerificationResult {
    VerificationResult::from_bool(bytes.is_some_and(|bytes| key.verify(&bytes, signature).is_ok()))
}

#[async_trait::async_trait]
impl Verifier<GridshareContext> for ValidatorVerifier {
    async fn verify_signed_vote(
        &self,
        vote: &Vote,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, SigningError> {
        let bytes = vote.ledger().map(|vote| vote.signing_bytes(&self.community));
        Ok(verdict(public_key, bytes, signature))
    }

    async fn verify_signed_proposal(
        &self,
        proposal: &Proposal,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResult, SigningError> {
        let bytes = proposal.ledger().map(|proposal| proposal.signing_bytes(&self.community));
        Ok(verdict(public_key, bytes, signature))
    }

    async fn verify_signed_vote_extension(
        &self,
        _scope: &VoteExtensionScope<GridshareContext>,
        _extension: &bytes::Bytes,
        _signature: &Signature,
        _public_key: &PublicKey,
    ) -> Result<VerificationResult, SigningError> {
        Ok(VerificationResult::Invalid)
    }

    async fn verify_validator_proof(
        &self,
        proof: &ValidatorProof<GridshareContext>,
    ) -> Result<VerificationResult, SigningError> {
        // The engine disconnects a peer whose proof is invalid: a peer the
        // operator listed still has to hold a genesis validator's key (and
        // prove it for its own peer id, which the network layer checks).
        let Ok(key) = proof.decoded_public_key() else { return Ok(VerificationResult::Invalid) };
        if !self.validators.contains(&key) {
            tracing::warn!(%key, "a consensus peer proves a key that is no validator of the genesis");
            return Ok(VerificationResult::Invalid);
        }
        Ok(verdict(&key, Some(proof.preimage()), &proof.signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridshare_ledger::block::CommitCertificate;
    use gridshare_ledger::testkit::{TestCommunity, test_market};
    use malachitebft_app_channel::app::types::core::ValidatorSet as _;

    #[tokio::test]
    async fn votes_are_signed_as_ledger_votes_so_the_ledger_checks_certificates() {
        let community = TestCommunity::new(4, 0, test_market(), 0);
        let genesis = &community.genesis;
        let key = Arc::new(Keypair::from_seed(community.validator.seed()));
        let signer = ValidatorSigner { key: key.clone(), community: genesis.community_id };
        let verifier = ValidatorVerifier::new(genesis);
        let context = GridshareContext { community: genesis.community_id };
        let block = BlockId(Hash([7; 32]));
        let precommit =
            context.new_precommit(Height(1), Round::new(2), NilOrVal::Val(block), Address(key.public()));
        let signed = signer.sign_vote(precommit.clone()).await.unwrap();
        let verdict =
            verifier.verify_signed_vote(&precommit, &signed.signature, &key.public()).await.unwrap();
        assert!(verdict.is_valid());
        // The same signature is a ledger commit signature for that block.
        let certificate = CommitCertificate {
            height: 1,
            round: 2,
            block_hash: block.0,
            signatures: vec![gridshare_ledger::block::CommitSignature {
                validator: key.public(),
                signature: signed.signature,
            }],
        };
        let vote = precommit.ledger().unwrap();
        assert_eq!(vote, certificate.vote(key.public()));
        // A prevote's signature is not a precommit's.
        let prevote =
            context.new_prevote(Height(1), Round::new(2), NilOrVal::Val(block), Address(key.public()));
        let verdict = verifier.verify_signed_vote(&prevote, &signed.signature, &key.public()).await.unwrap();
        assert!(verdict.is_invalid());
    }

    #[tokio::test]
    async fn a_consensus_peer_must_prove_a_genesis_validators_key() {
        let community = TestCommunity::new(4, 0, test_market(), 0);
        let genesis = &community.genesis;
        let verifier = ValidatorVerifier::new(genesis);
        let peer_id = b"a peer id".to_vec();
        let prove = |key: Keypair| {
            let signer = ValidatorSigner { key: Arc::new(key), community: genesis.community_id };
            let public = signer.key.public().0.to_vec();
            let peer_id = peer_id.clone();
            async move { signer.sign_validator_proof(public, peer_id).await.unwrap() }
        };
        let validator = prove(Keypair::from_seed(community.validator.seed())).await;
        assert!(verifier.verify_validator_proof(&validator).await.unwrap().is_valid());
        // A valid proof of a key the genesis does not name.
        let stranger = prove(Keypair::from_seed([9; 32])).await;
        assert!(verifier.verify_validator_proof(&stranger).await.unwrap().is_invalid());
        // A validator's key with another's signature.
        let mut forged = validator.clone();
        forged.signature = stranger.signature;
        assert!(verifier.verify_validator_proof(&forged).await.unwrap().is_invalid());
    }

    #[test]
    fn proposers_rotate_over_the_ordered_validators() {
        let mut community = TestCommunity::new(4, 0, test_market(), 0);
        community.genesis.validators = (1..=4_u8)
            .map(|byte| gridshare_ledger::genesis::Validator { key: PublicKey([byte; 32]), voting_power: 1 })
            .collect();
        let set = ValidatorSet::from_genesis(&community.genesis);
        assert_eq!(set.count(), 4);
        let context = GridshareContext { community: community.genesis.community_id };
        let proposer =
            |height, round| context.select_proposer(&set, Height(height), Round::new(round)).address;
        assert_eq!(proposer(1, 0), Address(PublicKey([1; 32])));
        assert_eq!(proposer(2, 0), Address(PublicKey([2; 32])));
        assert_eq!(proposer(1, 1), Address(PublicKey([2; 32])));
        assert_eq!(proposer(4, 1), Address(PublicKey([1; 32])));
    }
}
