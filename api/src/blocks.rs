//! `GET /v1/blocks/{height}` and `GET /v1/evidence`: blocks with their
//! transactions and receipts (clearings with their trades, settlements with
//! their bills), and the evidence of validators that equivocated.
//!
//! Each type converts from the ledger's by destructuring it whole, so that a
//! field added to the ledger's type stops the build here until the wire
//! has it too: one line in the struct and its name in the conversion.

use gridshare_ledger::Hash;
use gridshare_ledger::block::{
    Bill as LedgerBill, CertifiedBlock, ClearingReceipt as LedgerClearingReceipt, Receipt as LedgerReceipt,
    SettlementReceipt as LedgerSettlementReceipt, TradeReceipt as LedgerTradeReceipt, Vote as LedgerVote,
    ZoneReceipt as LedgerZoneReceipt, ZoneSettlement as LedgerZoneSettlement,
};
use gridshare_ledger::consensus::{Equivocation as LedgerEquivocation, Proposal as LedgerProposal};
use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::ids::PublicKey;
use serde::{Deserialize, Serialize};

use crate::market::{Mechanism, TxKind, VoteKind};
use crate::text::{hex, hex_option, limit_wh, nano};

/// `GET /v1/blocks/{height}` and `GET /v1/blocks/latest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub height: u64,
    #[serde(with = "hex")]
    pub hash: Hash,
    #[serde(with = "hex")]
    pub previous_hash: Hash,
    pub timestamp_ms: u64,
    #[serde(with = "hex")]
    pub proposer: PublicKey,
    #[serde(with = "hex")]
    pub state_root: Hash,
    pub transactions: Vec<BlockTransaction>,
    pub receipts: Vec<Receipt>,
    /// How many validators' signatures the block's certificate holds.
    pub certificate_signatures: u64,
    /// The canonical `CertifiedBlock`, in hex.
    pub certified_block_hex: String,
}

/// A transaction as a block lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockTransaction {
    #[serde(with = "hex")]
    pub id: Hash,
    pub kind: TxKind,
    #[serde(with = "hex")]
    pub signer: PublicKey,
}

impl From<&CertifiedBlock> for Block {
    fn from(certified: &CertifiedBlock) -> Block {
        let block = &certified.block;
        let header = &block.header;
        let community = &header.community_id;
        Block {
            height: header.height,
            hash: header.hash(),
            previous_hash: header.previous_hash,
            timestamp_ms: header.timestamp_ms,
            proposer: header.proposer,
            state_root: header.state_root,
            transactions: block
                .transactions
                .iter()
                .map(|tx| BlockTransaction {
                    id: tx.id(community),
                    kind: TxKind::from(&tx.tx),
                    signer: tx.tx.signer(),
                })
                .collect(),
            receipts: block.receipts.iter().map(Receipt::from).collect(),
            certificate_signatures: u64::try_from(certified.certificate.signatures.len()).unwrap_or(u64::MAX),
            certified_block_hex: ::hex::encode(to_bytes(certified)),
        }
    }
}

/// A receipt of a block, with its `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Receipt {
    Clearing(ClearingReceipt),
    Settlement(SettlementReceipt),
}

impl From<&LedgerReceipt> for Receipt {
    fn from(receipt: &LedgerReceipt) -> Receipt {
        match receipt {
            LedgerReceipt::Clearing(clearing) => Receipt::Clearing(clearing.into()),
            LedgerReceipt::Settlement(settlement) => Receipt::Settlement(settlement.into()),
        }
    }
}

/// An interval's clearing: the auction's parameters and result, and every
/// trade.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearingReceipt {
    pub interval: u64,
    pub mechanism: Mechanism,
    pub k_thousandths: u16,
    pub network_fee_micro_per_kwh: u64,
    /// The offers that took part.
    pub offers: u32,
    /// `null` under pay-as-bid, or when nothing traded.
    pub clearing_price_micro_per_kwh: Option<u64>,
    pub volume_wh: u64,
    pub trades: Vec<TradeReceipt>,
    /// Every zone of the genesis, in its order.
    pub zones: Vec<ZoneReceipt>,
}

/// One zone's outcome in a clearing (docs/AUCTION.md §6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneReceipt {
    /// The zone's uniform price; `null` under pay-as-bid or when nothing
    /// traded.
    pub price_micro_per_kwh: Option<u64>,
    /// Sold out of the zone less bought into it.
    pub net_export_wh: i64,
    #[serde(with = "limit_wh")]
    pub import_wh_max: u64,
    #[serde(with = "limit_wh")]
    pub export_wh_max: u64,
    /// A limit bound and the zone's price differs from the clearing price.
    pub congested: bool,
}

impl From<&LedgerZoneReceipt> for ZoneReceipt {
    fn from(zone: &LedgerZoneReceipt) -> ZoneReceipt {
        let LedgerZoneReceipt { price_micro_per_kwh, net_export_wh, limits, congested } = *zone;
        ZoneReceipt {
            price_micro_per_kwh,
            net_export_wh,
            import_wh_max: limits.import_wh_max,
            export_wh_max: limits.export_wh_max,
            congested,
        }
    }
}

impl From<&LedgerClearingReceipt> for ClearingReceipt {
    fn from(clearing: &LedgerClearingReceipt) -> ClearingReceipt {
        let LedgerClearingReceipt {
            interval,
            mechanism,
            k_thousandths,
            network_fee_micro_per_kwh,
            offers,
            clearing_price_micro_per_kwh,
            volume_wh,
            trades,
            zones,
        } = clearing;
        ClearingReceipt {
            interval: *interval,
            mechanism: (*mechanism).into(),
            k_thousandths: *k_thousandths,
            network_fee_micro_per_kwh: *network_fee_micro_per_kwh,
            offers: *offers,
            clearing_price_micro_per_kwh: *clearing_price_micro_per_kwh,
            volume_wh: *volume_wh,
            trades: trades.iter().map(TradeReceipt::from).collect(),
            zones: zones.iter().map(ZoneReceipt::from).collect(),
        }
    }
}

/// One trade of a clearing: the two offers, their accounts, the energy and
/// the price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeReceipt {
    #[serde(with = "hex")]
    pub buy_offer: Hash,
    #[serde(with = "hex")]
    pub sell_offer: Hash,
    #[serde(with = "hex")]
    pub buyer: PublicKey,
    #[serde(with = "hex")]
    pub seller: PublicKey,
    pub energy_wh: u64,
    /// What the seller receives per kWh.
    pub price_micro_per_kwh: u64,
    /// What the buyer pays per kWh before the fee: more than the seller
    /// receives only across a congested zone's limit.
    pub buyer_price_micro_per_kwh: u64,
}

impl From<&LedgerTradeReceipt> for TradeReceipt {
    fn from(trade: &LedgerTradeReceipt) -> TradeReceipt {
        let LedgerTradeReceipt {
            buy_offer,
            sell_offer,
            buyer,
            seller,
            energy_wh,
            price_micro_per_kwh,
            buyer_price_micro_per_kwh,
        } = *trade;
        TradeReceipt {
            buy_offer,
            sell_offer,
            buyer,
            seller,
            energy_wh,
            price_micro_per_kwh,
            buyer_price_micro_per_kwh,
        }
    }
}

/// An interval's settlement as a block holds it: every bill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementReceipt {
    pub interval: u64,
    pub bills: Vec<Bill>,
    /// What each zone's meters measured, in genesis zone order.
    pub zones: Vec<ZoneSettlement>,
}

/// What a zone's meters measured in a settled interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneSettlement {
    /// Σ of the net export of the zone's meters measured in the interval.
    pub measured_net_export_wh: i64,
    pub measured_meters: u32,
    /// Meters billed at an estimate: their energy is not in the sum.
    pub estimated_meters: u32,
    /// The zone's own meter's net export, when it measured the interval.
    pub zone_meter_net_export_wh: Option<i64>,
    /// The zone's losses: the measured net export less the zone meter's,
    /// when both are complete (docs/PROTOCOL.md §4, `ZoneSettlement`).
    pub losses_wh: Option<i64>,
}

impl From<&LedgerZoneSettlement> for ZoneSettlement {
    fn from(zone: &LedgerZoneSettlement) -> ZoneSettlement {
        let LedgerZoneSettlement {
            measured_net_export_wh,
            measured_meters,
            estimated_meters,
            zone_meter_net_export_wh,
        } = *zone;
        ZoneSettlement {
            measured_net_export_wh,
            measured_meters,
            estimated_meters,
            zone_meter_net_export_wh,
            losses_wh: zone.losses_wh(),
        }
    }
}

impl From<&LedgerSettlementReceipt> for SettlementReceipt {
    fn from(settlement: &LedgerSettlementReceipt) -> SettlementReceipt {
        // The tariffs are in `GET /v1/intervals/{n}` and in the canonical
        // bytes; a block's JSON lists the bills.
        let LedgerSettlementReceipt { interval, tariffs: _, bills, zones } = settlement;
        SettlementReceipt {
            interval: *interval,
            bills: bills.iter().map(Bill::from).collect(),
            zones: zones.iter().map(ZoneSettlement::from).collect(),
        }
    }
}

/// An account's itemised bill for one interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bill {
    #[serde(with = "hex")]
    pub account: PublicKey,
    pub sold_wh: u64,
    pub bought_wh: u64,
    #[serde(with = "nano")]
    pub sold_nano: i128,
    #[serde(with = "nano")]
    pub bought_nano: i128,
    #[serde(with = "nano")]
    pub fees_nano: i128,
    pub metered_net_export_wh: i64,
    pub deviation_wh: i64,
    pub grid_import_wh: u64,
    #[serde(with = "nano")]
    pub grid_import_nano: i128,
    pub feed_in_wh: u64,
    #[serde(with = "nano")]
    pub feed_in_nano: i128,
    #[serde(with = "nano")]
    pub total_nano: i128,
    /// The part of the metered net export estimated at the meters' import
    /// capacity, for intervals without the readings to measure them.
    pub estimated_import_wh: u64,
    /// Energy estimated earlier that a later reading showed was not
    /// imported, and the grid's refund for it.
    pub estimate_refund_wh: u64,
    #[serde(with = "nano")]
    pub estimate_refund_nano: i128,
}

impl From<&LedgerBill> for Bill {
    fn from(bill: &LedgerBill) -> Bill {
        let LedgerBill {
            account,
            sold_wh,
            bought_wh,
            sold_nano,
            bought_nano,
            fees_nano,
            metered_net_export_wh,
            deviation_wh,
            grid_import_wh,
            grid_import_nano,
            feed_in_wh,
            feed_in_nano,
            total_nano,
            estimated_import_wh,
            estimate_refund_wh,
            estimate_refund_nano,
        } = *bill;
        Bill {
            account,
            sold_wh,
            bought_wh,
            sold_nano,
            bought_nano,
            fees_nano,
            metered_net_export_wh,
            deviation_wh,
            grid_import_wh,
            grid_import_nano,
            feed_in_wh,
            feed_in_nano,
            total_nano,
            estimated_import_wh,
            estimate_refund_wh,
            estimate_refund_nano,
        }
    }
}

/// `GET /v1/evidence`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceList {
    pub equivocations: Vec<Equivocation>,
}

/// Evidence that a validator equivocated, with its `kind`; `evidence_hex`
/// is the canonical `VoteEquivocation` or `ProposalEquivocation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Equivocation {
    /// Two conflicting votes for one height, round and vote kind.
    Votes {
        #[serde(with = "hex")]
        validator: PublicKey,
        first: VoteSummary,
        second: VoteSummary,
        evidence_hex: String,
    },
    /// Two different proposals for one height and round.
    Proposals {
        #[serde(with = "hex")]
        validator: PublicKey,
        first: ProposalSummary,
        second: ProposalSummary,
        evidence_hex: String,
    },
}

/// One of two conflicting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteSummary {
    pub kind: VoteKind,
    pub height: u64,
    pub round: u32,
    /// `null` for a vote for no block.
    #[serde(with = "hex_option")]
    pub block_hash: Option<Hash>,
}

impl From<&LedgerVote> for VoteSummary {
    fn from(vote: &LedgerVote) -> VoteSummary {
        VoteSummary {
            kind: vote.kind.into(),
            height: vote.height,
            round: vote.round,
            block_hash: vote.block_hash,
        }
    }
}

/// One of two conflicting proposals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalSummary {
    pub height: u64,
    pub round: u32,
    #[serde(with = "hex")]
    pub block_hash: Hash,
    /// The proof-of-lock round, `null` for none.
    pub pol_round: Option<u32>,
}

impl From<&LedgerProposal> for ProposalSummary {
    fn from(proposal: &LedgerProposal) -> ProposalSummary {
        ProposalSummary {
            height: proposal.height,
            round: proposal.round,
            block_hash: proposal.block_hash,
            pol_round: proposal.pol_round,
        }
    }
}

impl From<&LedgerEquivocation> for Equivocation {
    fn from(evidence: &LedgerEquivocation) -> Equivocation {
        let validator = evidence.validator();
        match evidence {
            LedgerEquivocation::Votes(votes) => Equivocation::Votes {
                validator,
                first: (&votes.first).into(),
                second: (&votes.second).into(),
                evidence_hex: ::hex::encode(to_bytes(votes)),
            },
            LedgerEquivocation::Proposals(proposals) => Equivocation::Proposals {
                validator,
                first: (&proposals.first).into(),
                second: (&proposals.second).into(),
                evidence_hex: ::hex::encode(to_bytes(proposals)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use gridshare_ledger::block::VoteKind as LedgerVoteKind;
    use gridshare_ledger::consensus::{ProposalEquivocation, VoteEquivocation};
    use gridshare_ledger::encoding::from_bytes;
    use gridshare_ledger::ids::Signature;
    use serde_json::json;

    use super::*;

    /// Each kind of evidence says its kind, the validator and both messages,
    /// and `evidence_hex` decodes as the type its kind names.
    #[test]
    fn evidence_of_both_kinds_is_listed_with_its_kind_and_canonical_bytes() {
        let validator = PublicKey([7; 32]);
        let vote =
            LedgerVote { kind: LedgerVoteKind::Precommit, height: 9, round: 2, block_hash: None, validator };
        let votes = VoteEquivocation {
            first: vote,
            first_signature: Signature([1; 64]),
            second: LedgerVote { block_hash: Some(Hash([3; 32])), ..vote },
            second_signature: Signature([2; 64]),
        };
        let proposal = LedgerProposal {
            height: 9,
            round: 2,
            block_hash: Hash([4; 32]),
            pol_round: None,
            proposer: validator,
        };
        let proposals = ProposalEquivocation {
            first: proposal,
            first_signature: Signature([5; 64]),
            second: LedgerProposal { pol_round: Some(1), ..proposal },
            second_signature: Signature([6; 64]),
        };
        let listed = serde_json::to_value(Equivocation::from(&LedgerEquivocation::Votes(votes))).unwrap();
        assert_eq!(listed["kind"], "votes");
        assert_eq!(listed["validator"], validator.to_string());
        assert_eq!(
            listed["first"],
            json!({ "kind": "precommit", "height": 9, "round": 2, "block_hash": null })
        );
        assert_eq!(listed["second"]["block_hash"], Hash([3; 32]).to_string());
        let bytes = ::hex::decode(listed["evidence_hex"].as_str().unwrap()).unwrap();
        assert_eq!(from_bytes::<VoteEquivocation>(&bytes), Ok(votes));

        let listed =
            serde_json::to_value(Equivocation::from(&LedgerEquivocation::Proposals(proposals))).unwrap();
        assert_eq!(listed["kind"], "proposals");
        assert_eq!(listed["validator"], validator.to_string());
        let block_hash = Hash([4; 32]).to_string();
        assert_eq!(
            listed["first"],
            json!({ "height": 9, "round": 2, "block_hash": block_hash.clone(), "pol_round": null })
        );
        assert_eq!(
            listed["second"],
            json!({ "height": 9, "round": 2, "block_hash": block_hash, "pol_round": 1 })
        );
        let bytes = ::hex::decode(listed["evidence_hex"].as_str().unwrap()).unwrap();
        assert_eq!(from_bytes::<ProposalEquivocation>(&bytes), Ok(proposals));
        let parsed: Equivocation = serde_json::from_value(listed).unwrap();
        assert_eq!(parsed, Equivocation::from(&LedgerEquivocation::Proposals(proposals)));
    }

    /// Money is a decimal string, exact to the last nano of an `i128`; a
    /// JSON number is refused.
    #[test]
    fn money_is_a_decimal_string() {
        let bill = Bill {
            account: PublicKey([1; 32]),
            sold_wh: 0,
            bought_wh: 1_000,
            sold_nano: 0,
            bought_nano: i128::MIN,
            fees_nano: -1,
            metered_net_export_wh: -1_000,
            deviation_wh: 0,
            grid_import_wh: 0,
            grid_import_nano: 0,
            feed_in_wh: 0,
            feed_in_nano: 0,
            total_nano: i128::MAX,
            estimated_import_wh: 0,
            estimate_refund_wh: 0,
            estimate_refund_nano: 1,
        };
        let json = serde_json::to_value(&bill).unwrap();
        assert_eq!(json["bought_nano"], "-170141183460469231731687303715884105728");
        assert_eq!(json["total_nano"], i128::MAX.to_string());
        assert_eq!(serde_json::from_value::<Bill>(json.clone()).unwrap(), bill);
        let mut number = json;
        number["fees_nano"] = json!(-1);
        assert!(serde_json::from_value::<Bill>(number).is_err());
    }
}
