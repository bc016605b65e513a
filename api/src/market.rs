//! The API's names for the ledger's enumerations: an offer's side, the
//! auction mechanism, a transaction's kind and a vote's kind, each mapped
//! to and from the ledger's own type.

use gridshare_ledger::block::VoteKind as LedgerVoteKind;
use gridshare_ledger::genesis::Mechanism as LedgerMechanism;
use gridshare_ledger::tx::{Side as LedgerSide, Tx};
use serde::{Deserialize, Serialize};

/// An offer's side: `buy` or `sell`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<LedgerSide> for Side {
    fn from(side: LedgerSide) -> Side {
        match side {
            LedgerSide::Buy => Side::Buy,
            LedgerSide::Sell => Side::Sell,
        }
    }
}

impl From<Side> for LedgerSide {
    fn from(side: Side) -> LedgerSide {
        match side {
            Side::Buy => LedgerSide::Buy,
            Side::Sell => LedgerSide::Sell,
        }
    }
}

/// The auction mechanism: `uniform` (pay-as-clear) or `pay-as-bid`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    #[default]
    Uniform,
    PayAsBid,
}

impl Mechanism {
    /// The name on the wire, which `gridshare-node genesis new --mechanism`
    /// also takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Uniform => "uniform",
            Mechanism::PayAsBid => "pay-as-bid",
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Mechanism {
    type Err = String;

    fn from_str(text: &str) -> Result<Mechanism, String> {
        match text {
            "uniform" => Ok(Mechanism::Uniform),
            "pay-as-bid" => Ok(Mechanism::PayAsBid),
            other => Err(format!("`{other}` is not a mechanism: uniform or pay-as-bid")),
        }
    }
}

impl From<LedgerMechanism> for Mechanism {
    fn from(mechanism: LedgerMechanism) -> Mechanism {
        match mechanism {
            LedgerMechanism::Uniform => Mechanism::Uniform,
            LedgerMechanism::PayAsBid => Mechanism::PayAsBid,
        }
    }
}

impl From<Mechanism> for LedgerMechanism {
    fn from(mechanism: Mechanism) -> LedgerMechanism {
        match mechanism {
            Mechanism::Uniform => LedgerMechanism::Uniform,
            Mechanism::PayAsBid => LedgerMechanism::PayAsBid,
        }
    }
}

/// A transaction's kind, as a block lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxKind {
    RegisterAccount,
    RegisterMeter,
    Credit,
    Debit,
    SetTariffs,
    Offer,
    CancelOffer,
    MeterReading,
    SetZoneLimits,
    SetIntervalTariffs,
    RegisterZoneMeter,
}

impl From<&Tx> for TxKind {
    fn from(tx: &Tx) -> TxKind {
        match tx {
            Tx::RegisterAccount { .. } => TxKind::RegisterAccount,
            Tx::RegisterMeter { .. } => TxKind::RegisterMeter,
            Tx::Credit { .. } => TxKind::Credit,
            Tx::Debit { .. } => TxKind::Debit,
            Tx::SetTariffs { .. } => TxKind::SetTariffs,
            Tx::Offer(_) => TxKind::Offer,
            Tx::CancelOffer { .. } => TxKind::CancelOffer,
            Tx::MeterReading(_) => TxKind::MeterReading,
            Tx::SetZoneLimits { .. } => TxKind::SetZoneLimits,
            Tx::SetIntervalTariffs { .. } => TxKind::SetIntervalTariffs,
            Tx::RegisterZoneMeter { .. } => TxKind::RegisterZoneMeter,
        }
    }
}

/// A consensus vote's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VoteKind {
    Prevote,
    Precommit,
}

impl From<LedgerVoteKind> for VoteKind {
    fn from(kind: LedgerVoteKind) -> VoteKind {
        match kind {
            LedgerVoteKind::Prevote => VoteKind::Prevote,
            LedgerVoteKind::Precommit => VoteKind::Precommit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire names are the ledger's own names for the same things.
    #[test]
    fn names_match_the_ledger() {
        for side in [LedgerSide::Buy, LedgerSide::Sell] {
            let wire = Side::from(side);
            assert_eq!(LedgerSide::from(wire), side);
            assert_eq!(serde_json::to_value(wire).unwrap(), wire.as_str());
        }
        for mechanism in [LedgerMechanism::Uniform, LedgerMechanism::PayAsBid] {
            let wire = Mechanism::from(mechanism);
            assert_eq!(LedgerMechanism::from(wire), mechanism);
            assert_eq!(serde_json::to_value(wire).unwrap(), wire.as_str());
            assert_eq!(wire.as_str().parse::<Mechanism>(), Ok(wire));
        }
        let mut community =
            gridshare_ledger::testkit::TestCommunity::new(1, 1, gridshare_ledger::testkit::test_market(), 0);
        for tx in community.registrations() {
            assert_eq!(serde_json::to_value(TxKind::from(&tx.tx)).unwrap(), tx.tx.kind());
        }
    }
}
