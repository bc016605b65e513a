//! `GET /v1/genesis` and `GET /v1/status`: the community a node serves and
//! where its chain is.

use gridshare_ledger::Hash;
use gridshare_ledger::encoding::{from_bytes, to_bytes};
use gridshare_ledger::genesis::{Genesis, MarketParams};
use gridshare_ledger::ids::{CommunityId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::market::Mechanism;
use crate::text::{community_id, hex, hex_list, limit_wh};

/// Every field of a genesis, units in the names: what `gridshare-node
/// genesis show` prints, and the body of `GET /v1/genesis` without the
/// canonical bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisSummary {
    #[serde(with = "community_id")]
    pub community_id: CommunityId,
    #[serde(with = "hex")]
    pub genesis_hash: Hash,
    pub name: String,
    pub currency: String,
    pub genesis_time_ms: u64,
    pub interval_length_ms: u64,
    pub gate_closure_lead_ms: u64,
    pub settlement_delay_ms: u64,
    pub offer_horizon_intervals: u64,
    pub attestation_max_age_intervals: u64,
    pub mechanism: Mechanism,
    pub k_thousandths: u16,
    pub price_floor_micro_per_kwh: u64,
    pub price_cap_micro_per_kwh: u64,
    pub grid_import_micro_per_kwh: u64,
    pub grid_feed_in_micro_per_kwh: u64,
    pub network_fee_micro_per_kwh: u64,
    pub max_open_offers_per_account: u32,
    pub max_offers_per_interval: u32,
    pub max_transactions_per_block: u32,
    /// How far a meter may exceed its registered power, per mille.
    pub meter_tolerance_permille: u16,
    /// δ: a validator refuses a new proposal whose time is further than
    /// this from its clock.
    pub block_time_tolerance_ms: u64,
    pub validators: Vec<Validator>,
    #[serde(with = "hex_list")]
    pub registrars: Vec<PublicKey>,
    /// The zones, in the order the auction numbers them, with the limits
    /// that hold where the DSO sets none.
    pub zones: Vec<Zone>,
    /// Who may set zone limits.
    #[serde(with = "hex_list")]
    pub dsos: Vec<PublicKey>,
}

/// A zone of the genesis and its default limits on the zone's net import
/// and export per interval, in Wh (`null`: no limit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    pub name: String,
    #[serde(with = "limit_wh")]
    pub import_wh_max: u64,
    #[serde(with = "limit_wh")]
    pub export_wh_max: u64,
}

/// A genesis validator and its voting power.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    #[serde(with = "hex")]
    pub key: PublicKey,
    pub voting_power: u64,
}

impl From<&Genesis> for GenesisSummary {
    fn from(genesis: &Genesis) -> GenesisSummary {
        // Destructured whole: a field added to the market's rules stops the
        // build here until the summary has it.
        let MarketParams {
            interval_length_ms,
            gate_closure_lead_ms,
            settlement_delay_ms,
            offer_horizon_intervals,
            attestation_max_age_intervals,
            price_floor_micro_per_kwh,
            price_cap_micro_per_kwh,
            mechanism,
            k_thousandths,
            max_open_offers_per_account,
            max_offers_per_interval,
            max_transactions_per_block,
            meter_tolerance_permille,
            block_time_tolerance_ms,
        } = genesis.market;
        GenesisSummary {
            community_id: genesis.community_id,
            genesis_hash: genesis.hash(),
            name: genesis.name.clone(),
            currency: genesis.currency.clone(),
            genesis_time_ms: genesis.genesis_time_ms,
            interval_length_ms,
            gate_closure_lead_ms,
            settlement_delay_ms,
            offer_horizon_intervals,
            attestation_max_age_intervals,
            mechanism: mechanism.into(),
            k_thousandths,
            price_floor_micro_per_kwh,
            price_cap_micro_per_kwh,
            grid_import_micro_per_kwh: genesis.tariffs.grid_import_micro_per_kwh,
            grid_feed_in_micro_per_kwh: genesis.tariffs.grid_feed_in_micro_per_kwh,
            network_fee_micro_per_kwh: genesis.tariffs.network_fee_micro_per_kwh,
            max_open_offers_per_account,
            max_offers_per_interval,
            max_transactions_per_block,
            meter_tolerance_permille,
            block_time_tolerance_ms,
            validators: genesis
                .validators
                .iter()
                .map(|validator| Validator { key: validator.key, voting_power: validator.voting_power })
                .collect(),
            registrars: genesis.registrars.clone(),
            zones: genesis
                .zones
                .iter()
                .map(|zone| Zone {
                    name: zone.name.clone(),
                    import_wh_max: zone.limits.import_wh_max,
                    export_wh_max: zone.limits.export_wh_max,
                })
                .collect(),
            dsos: genesis.dsos.clone(),
        }
    }
}

/// `GET /v1/genesis`: the summary and `genesis_hex`, the canonical genesis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisResponse {
    #[serde(flatten)]
    pub summary: GenesisSummary,
    pub genesis_hex: String,
}

/// Why a node's genesis is not to be trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis_hex does not decode as a genesis: {0}")]
    Decode(String),
    #[error(
        "the genesis does not hash to the genesis hash the node names ({claimed}): do not trust this node"
    )]
    HashMismatch { claimed: Hash },
    #[error("community_id {claimed} is not the genesis's {actual}")]
    CommunityMismatch { claimed: CommunityId, actual: CommunityId },
    #[error("the genesis is not valid: {0}")]
    Invalid(String),
}

impl GenesisResponse {
    pub fn of(genesis: &Genesis) -> GenesisResponse {
        GenesisResponse { summary: genesis.into(), genesis_hex: ::hex::encode(to_bytes(genesis)) }
    }

    /// The canonical genesis, checked against the hash and community id
    /// the node names and validated, so that what a wallet signs is for
    /// the community it means.
    pub fn genesis(&self) -> Result<Genesis, GenesisError> {
        let bytes =
            ::hex::decode(&self.genesis_hex).map_err(|error| GenesisError::Decode(error.to_string()))?;
        let genesis: Genesis = from_bytes(&bytes).map_err(|error| GenesisError::Decode(error.to_string()))?;
        if genesis.hash() != self.summary.genesis_hash {
            return Err(GenesisError::HashMismatch { claimed: self.summary.genesis_hash });
        }
        if genesis.community_id != self.summary.community_id {
            return Err(GenesisError::CommunityMismatch {
                claimed: self.summary.community_id,
                actual: genesis.community_id,
            });
        }
        genesis.validate().map_err(|error| GenesisError::Invalid(error.to_string()))?;
        Ok(genesis)
    }
}

/// A node's role in its community.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// One of the genesis validators: it votes on blocks.
    Validator,
    /// Any other node: it verifies and re-executes every block.
    Replica,
}

/// Whether a node has every block a peer has shown it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    Synced,
    CatchingUp,
}

impl SyncStatus {
    /// A node is behind while a peer has shown it a higher block.
    pub fn of(height: u64, best_seen_height: u64) -> SyncStatus {
        if best_seen_height > height { SyncStatus::CatchingUp } else { SyncStatus::Synced }
    }
}

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    #[serde(with = "community_id")]
    pub community_id: CommunityId,
    pub name: String,
    /// The node's release (`gridshare-node --version`).
    pub version: String,
    /// The version of the canonical encoding it speaks (docs/PROTOCOL.md).
    pub protocol_version: u16,
    pub height: u64,
    /// The highest block a peer has shown the node.
    pub best_seen_height: u64,
    #[serde(with = "hex")]
    pub last_block_hash: Hash,
    pub last_block_time_ms: u64,
    /// The interval the node's clock is in.
    pub current_interval: u64,
    pub next_clearing_interval: u64,
    pub next_settlement_interval: u64,
    pub role: Role,
    pub sync: SyncStatus,
    pub peers: u64,
    pub mempool_transactions: u64,
    pub accounts: u64,
    /// Counted since the node started.
    pub intervals_cleared: u64,
    pub trades: u64,
    pub settlements: u64,
    /// The threads that run the node.
    pub worker_threads: u64,
}

/// `GET /health` (the node's event loop answers) and `GET /ready` (it can
/// serve its community's current state): 200 with this body, or 503 with it
/// when not ready.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub ready: bool,
    /// Why it is not ready: `catching_up` (a peer has shown it a higher
    /// block) or `no_peers` (a replica that knows no peer cannot tell
    /// whether it is behind); `null` when ready.
    pub reason: Option<NotReady>,
    pub height: u64,
    pub best_seen_height: u64,
    pub peers: u64,
    pub version: String,
}

/// Why a node is not ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotReady {
    CatchingUp,
    NoPeers,
}

impl NotReady {
    /// Why a node at `height` that has seen `best_seen_height` from its
    /// `peers` is not ready, if it is not: behind a peer, or a replica with
    /// no peer (a validator may stand alone, as a dev node does).
    pub fn of(height: u64, best_seen_height: u64, peers: u64, validator: bool) -> Option<NotReady> {
        if best_seen_height > height {
            Some(NotReady::CatchingUp)
        } else if peers == 0 && !validator {
            Some(NotReady::NoPeers)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod readiness_tests {
    use super::*;

    #[test]
    fn a_node_is_ready_unless_behind_or_a_replica_alone() {
        assert_eq!(NotReady::of(10, 10, 3, false), None);
        assert_eq!(NotReady::of(10, 12, 3, false), Some(NotReady::CatchingUp));
        assert_eq!(NotReady::of(10, 12, 3, true), Some(NotReady::CatchingUp));
        assert_eq!(NotReady::of(10, 10, 0, false), Some(NotReady::NoPeers));
        assert_eq!(NotReady::of(10, 10, 0, true), None);
        assert_eq!(SyncStatus::of(10, 12), SyncStatus::CatchingUp);
        assert_eq!(SyncStatus::of(12, 12), SyncStatus::Synced);
    }
}
