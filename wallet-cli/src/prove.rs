//! `gridshare prove`: fetches a proof that an offer (any transaction), an
//! interval's clearing or its settlement is in a certified block, and checks
//! it here with nothing but the genesis: the commit certificate, then the
//! inclusion proof against the certified header, then that the account's
//! trades or bill as the node lists them are in the proven receipt.

use std::io::Write;
use std::path::PathBuf;

use gridshare_api::{
    AccountBill, AccountTrade, Bill as WireBill, Proof, ProofTarget, Side as WireSide, SpanQuery, Tariffs,
};
use gridshare_ledger::Hash;
use gridshare_ledger::block::{BlockHeader, CommitCertificate, Receipt, TradeReceipt};
use gridshare_ledger::encoding::from_bytes;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::PublicKey;
use gridshare_ledger::merkle::InclusionProof;
use gridshare_ledger::tx::{SignedTx, Tx};
use serde::Serialize;

use crate::amount::{format_kw, format_kwh, format_money, format_price};
use crate::household::bill_text;
use crate::keystore::Role;
use crate::market_time::format_utc;
use crate::wallet::{CommandError, Wallet, plural, write_json};

/// `gridshare prove`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProveArgs {
    /// OFFER_ID (any transaction id, 64 hex digits), `trade INTERVAL` or
    /// `bill INTERVAL`.
    #[arg(value_name = "OFFER_ID|trade INTERVAL|bill INTERVAL", num_args = 1..=2, required = true)]
    pub what: Vec<String>,
    /// The account whose trade or bill is checked (default: the only account key).
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    /// Check against this genesis file (the node's genesis.bin) instead of
    /// the genesis the node serves.
    #[arg(long, value_name = "FILE")]
    pub genesis: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// Parses what to prove.
pub fn parse_target(what: &[String]) -> Result<ProofTarget, CommandError> {
    let usage = || {
        CommandError::BadInput(format!(
            "cannot prove `{}`: give an offer id (64 hex digits), `trade INTERVAL` or `bill INTERVAL`",
            what.join(" ")
        ))
    };
    let interval = |text: &str| {
        text.parse::<u64>()
            .map_err(|_| CommandError::BadInput(format!("bad interval `{text}`: give its number")))
    };
    match what {
        [id] => id.parse::<Hash>().map(ProofTarget::Transaction).map_err(|_| usage()),
        [kind, number] if kind == "trade" || kind == "trades" => Ok(ProofTarget::Clearing(interval(number)?)),
        [kind, number] if kind == "bill" => Ok(ProofTarget::Settlement(interval(number)?)),
        _ => Err(usage()),
    }
}

/// What a proof proved.
#[derive(Debug, Clone)]
pub struct Proven<T> {
    pub header: BlockHeader,
    pub certificate: CommitCertificate,
    pub index: u64,
    pub item: T,
}

/// Decodes a proof and checks the certificate against the genesis.
fn certified<T: borsh::BorshDeserialize>(
    genesis: &Genesis,
    proof: &Proof,
) -> Result<(Proven<T>, InclusionProof), String> {
    let header = proof.header().map_err(|error| error.to_string())?;
    let certificate = proof.certificate().map_err(|error| error.to_string())?;
    let item: T = proof.item().map_err(|error| error.to_string())?;
    let inclusion = proof.inclusion().map_err(|error| error.to_string())?;
    if header.community_id != genesis.community_id {
        return Err(format!(
            "the block is of community {}, not {}",
            header.community_id, genesis.community_id
        ));
    }
    if header.height != proof.height {
        return Err(format!("the header is of height {}, the node says {}", header.height, proof.height));
    }
    let index = u64::from(proof.index);
    if inclusion.leaf_index != index {
        return Err(format!("the proof is for item {}, the node says {index}", inclusion.leaf_index));
    }
    certificate
        .verify(genesis, &header)
        .map_err(|error| format!("the commit certificate does not make the block final: {error}"))?;
    Ok((Proven { header, certificate, index, item }, inclusion))
}

/// Verifies a proof of transaction `id`.
pub fn verify_transaction(genesis: &Genesis, id: &Hash, proof: &Proof) -> Result<Proven<SignedTx>, String> {
    let (proven, inclusion) = certified::<SignedTx>(genesis, proof)?;
    let found = proven.item.id(&genesis.community_id);
    if found != *id {
        return Err(format!("the proven transaction is {found}, not {id}"));
    }
    proven
        .header
        .verify_transaction(&proven.item, &inclusion)
        .map_err(|error| format!("the transaction is not in the certified block: {error}"))?;
    proven.item.verify(&genesis.community_id).map_err(|error| format!("the transaction's {error}"))?;
    Ok(proven)
}

/// Verifies a proof of interval `interval`'s clearing or settlement receipt.
pub fn verify_receipt(
    genesis: &Genesis,
    target: ProofTarget,
    proof: &Proof,
) -> Result<Proven<Receipt>, String> {
    let (proven, inclusion) = certified::<Receipt>(genesis, proof)?;
    proven
        .header
        .verify_receipt(&proven.item, &inclusion)
        .map_err(|error| format!("the receipt is not in the certified block: {error}"))?;
    match (target, &proven.item) {
        (ProofTarget::Clearing(interval), Receipt::Clearing(clearing)) if clearing.interval == interval => {}
        (ProofTarget::Settlement(interval), Receipt::Settlement(settlement))
            if settlement.interval == interval => {}
        (_, Receipt::Clearing(clearing)) => {
            return Err(format!("the proven receipt is the clearing of interval {}", clearing.interval));
        }
        (_, Receipt::Settlement(settlement)) => {
            return Err(format!("the proven receipt is the settlement of interval {}", settlement.interval));
        }
    }
    Ok(proven)
}

/// Checks that every trade the node lists for `account` is in the proven
/// clearing, and returns the account's trades of the clearing.
pub fn check_trades(
    account: &PublicKey,
    trades: &[TradeReceipt],
    listed: &[AccountTrade],
) -> Result<Vec<TradeReceipt>, String> {
    let own: Vec<TradeReceipt> =
        trades.iter().filter(|trade| trade.buyer == *account || trade.seller == *account).copied().collect();
    if own.is_empty() {
        return Err(format!("the proven clearing has no trade of account {account}"));
    }
    for listing in listed {
        let matches = |trade: &&TradeReceipt| {
            let (offer, counterparty) = match listing.side {
                WireSide::Buy => (trade.buy_offer, trade.seller),
                WireSide::Sell => (trade.sell_offer, trade.buyer),
            };
            offer == listing.offer
                && counterparty == listing.counterparty
                && trade.energy_wh == listing.energy_wh
                && trade.price_of(listing.side.into()) == listing.price_micro_per_kwh
        };
        if !own.iter().any(|trade| matches(&trade)) {
            return Err(format!(
                "the node lists a trade of offer {} ({} Wh at {} micro per kWh) that the proven clearing does not have",
                listing.offer, listing.energy_wh, listing.price_micro_per_kwh
            ));
        }
    }
    if listed.len() != own.len() {
        return Err(format!(
            "the proven clearing has {} trades of the account, the node lists {}",
            own.len(),
            listed.len()
        ));
    }
    Ok(own)
}

/// A transaction in words, with keys by keystore name where known.
pub fn describe_tx(wallet: &Wallet, tx: &Tx, currency: &str) -> String {
    let name = |key: &PublicKey| wallet.label(&key.to_string());
    match tx {
        Tx::Offer(offer) => {
            let side = WireSide::from(offer.side).as_str();
            format!(
                "offer by {}: {side} {} kWh at {} {currency}/kWh in interval {} (nonce {}; attested by meter {} for interval {})",
                name(&offer.account),
                format_kwh(offer.energy_wh),
                format_price(offer.price_micro_per_kwh),
                offer.interval,
                offer.nonce,
                name(&offer.attestation.reading.meter),
                offer.attestation.reading.interval
            )
        }
        Tx::CancelOffer { account, offer_id, .. } => {
            format!("cancellation by {} of offer {offer_id}", name(account))
        }
        Tx::RegisterAccount { registrar, account, credit_limit_nano, .. } => format!(
            "registration by {} of account {} with a credit limit of {}",
            name(registrar),
            name(account),
            format_money(*credit_limit_nano, currency)
        ),
        Tx::RegisterMeter { registrar, meter, owner, max_import_w, max_export_w, zone, .. } => format!(
            "registration by {} of meter {} of account {} (import up to {} kW, export up to {} kW, zone `{zone}`)",
            name(registrar),
            name(meter),
            name(owner),
            format_kw(*max_import_w),
            format_kw(*max_export_w)
        ),
        Tx::Credit { registrar, account, amount_nano, reference, .. } => format!(
            "credit by {} of {} to account {} (reference `{reference}`)",
            name(registrar),
            format_money(*amount_nano, currency),
            name(account)
        ),
        Tx::Debit { registrar, account, amount_nano, reference, .. } => format!(
            "debit by {} of {} from account {} (reference `{reference}`)",
            name(registrar),
            format_money(*amount_nano, currency),
            name(account)
        ),
        Tx::SetTariffs { registrar, tariffs, .. } => format!(
            "tariffs by {} from interval {}: import {}, feed-in {}, network fee {} {currency}/kWh",
            name(registrar),
            tariffs.effective_from_interval,
            format_price(tariffs.grid_import_micro_per_kwh),
            format_price(tariffs.grid_feed_in_micro_per_kwh),
            format_price(tariffs.network_fee_micro_per_kwh)
        ),
        Tx::MeterReading(reading) => format!(
            "reading of meter {} for interval {}: import {} kWh, export {} kWh",
            name(&reading.meter),
            reading.interval,
            format_kwh(reading.import_wh_total),
            format_kwh(reading.export_wh_total)
        ),
        Tx::SetZoneLimits { dso, zone, first_interval, intervals, limits, .. } => format!(
            "zone limits by DSO {} for zone `{zone}` in intervals {first_interval} to {}: import up to {}, export up to {} per interval",
            name(dso),
            first_interval.saturating_add(u64::from(*intervals).saturating_sub(1)),
            crate::grid::limit(limits.import_wh_max),
            crate::grid::limit(limits.export_wh_max)
        ),
        Tx::RegisterZoneMeter { dso, meter, zone, max_import_w, max_export_w, .. } => format!(
            "registration by DSO {} of zone `{zone}`'s meter {} (import up to {} kW, export up to {} kW)",
            name(dso),
            name(meter),
            format_kw(*max_import_w),
            format_kw(*max_export_w)
        ),
        Tx::SetIntervalTariffs { signer, first_interval, tariffs, .. } => format!(
            "interval tariffs by {} for intervals {first_interval} to {}: {}",
            name(signer),
            first_interval.saturating_add(u64::try_from(tariffs.len()).unwrap_or(u64::MAX).saturating_sub(1)),
            crate::tariffs::describe_interval_tariffs(tariffs, currency)
        ),
    }
}

/// The `--json` form of a verified proof.
#[derive(Debug, Serialize)]
struct ProvenJson {
    verified: bool,
    height: u64,
    block_hash: String,
    block_time_ms: u64,
    index: u64,
    signers: usize,
    voting_power_signed: u64,
    voting_power_total: u64,
    item: serde_json::Value,
}

fn proven_json<T>(genesis: &Genesis, proven: &Proven<T>, item: serde_json::Value) -> ProvenJson {
    let signed: u64 = proven
        .certificate
        .signatures
        .iter()
        .filter_map(|signature| genesis.voting_power_of(&signature.validator))
        .sum();
    ProvenJson {
        verified: true,
        height: proven.header.height,
        block_hash: proven.header.hash().to_string(),
        block_time_ms: proven.header.timestamp_ms,
        index: proven.index,
        signers: proven.certificate.signatures.len(),
        voting_power_signed: signed,
        voting_power_total: genesis.total_voting_power(),
        item,
    }
}

fn header_text<T>(genesis: &Genesis, proven: &Proven<T>, what: &str) -> String {
    let json = proven_json(genesis, proven, serde_json::Value::Null);
    format!(
        "Verified: {what} is final.\n  Block        height {}, hash {}, time {}\n  Certificate  {}, voting power {} of {} (more than two thirds)\n",
        json.height,
        json.block_hash,
        format_utc(json.block_time_ms),
        plural(
            u64::try_from(json.signers).unwrap_or(u64::MAX),
            "validator signature",
            "validator signatures"
        ),
        json.voting_power_signed,
        json.voting_power_total
    )
}

/// `header_text` for a receipt, with where it is in the block.
fn receipt_text<T>(genesis: &Genesis, proven: &Proven<T>, what: &str) -> String {
    format!(
        "{}  Inclusion    receipt {} of {} in the block\n",
        header_text(genesis, proven, what),
        proven.index + 1,
        proven.header.receipt_count
    )
}

/// The genesis to verify against: a pinned file, or the node's (whose hash
/// the client checked), and both must agree.
fn genesis_for(wallet: &Wallet, pinned: Option<&PathBuf>) -> Result<Genesis, CommandError> {
    let served = wallet.community()?;
    let Some(path) = pinned else {
        return Ok(served.genesis.clone());
    };
    let bytes = std::fs::read(path)
        .map_err(|error| CommandError::BadInput(format!("cannot read {}: {error}", path.display())))?;
    let genesis: Genesis = from_bytes(&bytes).map_err(|error| {
        CommandError::BadInput(format!("{} is not a genesis file: {error}", path.display()))
    })?;
    if genesis.hash() != served.genesis_hash {
        return Err(CommandError::Finding(format!(
            "the node serves genesis {}, not the genesis {} of {}: it is another community",
            served.genesis_hash,
            genesis.hash(),
            path.display()
        )));
    }
    Ok(genesis)
}

/// `gridshare prove`.
pub fn prove(wallet: &Wallet, args: &ProveArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let target = parse_target(&args.what)?;
    let account = match target {
        ProofTarget::Transaction(_) => None,
        _ => Some(wallet.key_file(args.from.as_deref(), Role::Account, "--from")?),
    };
    let genesis = genesis_for(wallet, args.genesis.as_ref())?;
    let currency = genesis.currency.clone();
    let proof = wallet.node().proof(target)?;
    let failed = |message: String| CommandError::Finding(format!("verification failed: {message}"));
    match target {
        ProofTarget::Transaction(id) => {
            let proven = verify_transaction(&genesis, &id, &proof).map_err(failed)?;
            let description = describe_tx(wallet, &proven.item.tx, &currency);
            if args.json {
                let item = serde_json::json!({
                    "id": id.to_string(),
                    "kind": proven.item.tx.kind(),
                    "signer": proven.item.tx.signer().to_string(),
                    "description": description,
                });
                return write_json(out, &proven_json(&genesis, &proven, item));
            }
            write!(out, "{}", header_text(&genesis, &proven, &format!("transaction {id}")))?;
            writeln!(
                out,
                "  Inclusion    transaction {} of {} in the block",
                proven.index + 1,
                proven.header.tx_count
            )?;
            writeln!(out, "  Transaction  {description}")?;
        }
        ProofTarget::Clearing(interval) => {
            let proven = verify_receipt(&genesis, target, &proof).map_err(failed)?;
            let Receipt::Clearing(clearing) = &proven.item else {
                return Err(failed("not a clearing".into()));
            };
            let account_file = account.ok_or_else(|| failed("no account".into()))?;
            let account_key = account_file.public_key()?;
            let listed = wallet.node().trades(&account_key, &SpanQuery::between(interval, interval))?;
            let own = check_trades(&account_key, &clearing.trades, &listed).map_err(failed)?;
            if args.json {
                let trades: Vec<serde_json::Value> = own
                    .iter()
                    .map(|trade| {
                        serde_json::json!({
                            "buy_offer": trade.buy_offer.to_string(), "sell_offer": trade.sell_offer.to_string(),
                            "buyer": trade.buyer.to_string(), "seller": trade.seller.to_string(),
                            "energy_wh": trade.energy_wh, "price_micro_per_kwh": trade.price_micro_per_kwh,
                        })
                    })
                    .collect();
                let item = serde_json::json!({
                    "interval": interval,
                    "clearing_price_micro_per_kwh": clearing.clearing_price_micro_per_kwh,
                    "volume_wh": clearing.volume_wh,
                    "trades": trades,
                });
                return write_json(out, &proven_json(&genesis, &proven, item));
            }
            write!(
                out,
                "{}",
                receipt_text(&genesis, &proven, &format!("the clearing of interval {interval}"))
            )?;
            let price = clearing.clearing_price_micro_per_kwh.map_or_else(
                || "no single price".to_string(),
                |price| format!("{} {currency}/kWh", format_price(price)),
            );
            writeln!(
                out,
                "  Clearing     {price}, {} kWh in {}",
                format_kwh(clearing.volume_wh),
                plural(u64::try_from(clearing.trades.len()).unwrap_or(u64::MAX), "trade", "trades")
            )?;
            for trade in &own {
                let (side, offer, counterparty) = if trade.buyer == account_key {
                    ("bought", trade.buy_offer, trade.seller)
                } else {
                    ("sold", trade.sell_offer, trade.buyer)
                };
                writeln!(
                    out,
                    "  Trade        {} {side} {} kWh at {} {currency}/kWh with {} (offer {offer})",
                    account_file.name,
                    format_kwh(trade.energy_wh),
                    format_price(trade.price_micro_per_kwh),
                    wallet.label(&counterparty.to_string())
                )?;
            }
        }
        ProofTarget::Settlement(interval) => {
            let proven = verify_receipt(&genesis, target, &proof).map_err(failed)?;
            let Receipt::Settlement(settlement) = &proven.item else {
                return Err(failed("not a settlement".into()));
            };
            let account_file = account.ok_or_else(|| failed("no account".into()))?;
            let account_key = account_file.public_key()?;
            let Some(bill) = settlement.bills.iter().find(|bill| bill.account == account_key) else {
                return Err(failed(format!("the proven settlement has no bill of account {account_key}")));
            };
            let proven_bill =
                AccountBill { interval, height: proven.header.height, bill: WireBill::from(bill) };
            let listed = wallet.node().bills(&account_key, &SpanQuery::between(interval, interval))?;
            if listed.iter().any(|listing| *listing != proven_bill) || listed.is_empty() {
                return Err(failed(format!(
                    "the bill the node lists for interval {interval} is not the proven one"
                )));
            }
            if args.json {
                let item = serde_json::to_value(&proven_bill).map_err(std::io::Error::from)?;
                return write_json(out, &proven_json(&genesis, &proven, item));
            }
            write!(
                out,
                "{}",
                receipt_text(&genesis, &proven, &format!("the settlement of interval {interval}"))
            )?;
            writeln!(out, "  Bill of {} for interval {interval}:", account_file.name)?;
            let tariffs = Tariffs::from(&settlement.tariffs);
            for line in bill_text(&proven_bill.bill, Some(&tariffs), &currency).lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use gridshare_ledger::block::{ClearingReceipt, SettlementReceipt};
    use gridshare_ledger::encoding::to_bytes;
    use gridshare_ledger::genesis::Mechanism;
    use gridshare_ledger::testkit::{TestCommunity, test_market};

    use super::*;

    #[test]
    fn targets() {
        let id = "ab".repeat(32);
        assert!(matches!(parse_target(&[id]), Ok(ProofTarget::Transaction(_))));
        assert!(matches!(parse_target(&["trade".into(), "12".into()]), Ok(ProofTarget::Clearing(12))));
        assert!(matches!(parse_target(&["bill".into(), "3".into()]), Ok(ProofTarget::Settlement(3))));
        let bad = parse_target(&["bill".into(), "x".into()]).unwrap_err().to_string();
        assert_eq!(bad, "bad interval `x`: give its number");
        assert!(parse_target(&["cafe".into()]).unwrap_err().to_string().starts_with("cannot prove `cafe`"));
    }

    /// A proof the way a node builds it: a block of `transactions` and
    /// `receipts`, certified by the community's validator.
    fn proof_of(
        community: &TestCommunity,
        transactions: Vec<SignedTx>,
        receipts: Vec<Receipt>,
        transaction: Option<usize>,
        receipt: Option<usize>,
    ) -> Proof {
        let header = BlockHeader {
            community_id: community.genesis.community_id,
            height: 5,
            previous_hash: Hash::ZERO,
            timestamp_ms: 1_000,
            proposer: community.validator.public(),
            tx_root: gridshare_ledger::block::tx_root(&transactions),
            tx_count: u32::try_from(transactions.len()).unwrap(),
            receipt_root: gridshare_ledger::block::receipt_root(&receipts),
            receipt_count: u32::try_from(receipts.len()).unwrap(),
            state_root: Hash([7; 32]),
        };
        let block = gridshare_ledger::block::Block { header, transactions, receipts };
        let certificate = CommitCertificate::sign(&header, 0, &[&community.validator]);
        let (index, item, proof) = match (transaction, receipt) {
            (Some(index), _) => {
                (index, to_bytes(&block.transactions[index]), block.prove_transaction(index).unwrap())
            }
            (_, Some(index)) => {
                (index, to_bytes(&block.receipts[index]), block.prove_receipt(index).unwrap())
            }
            _ => unreachable!(),
        };
        Proof {
            height: 5,
            index: u32::try_from(index).unwrap(),
            header_hex: hex::encode(to_bytes(&header)),
            certificate_hex: hex::encode(to_bytes(&certificate)),
            item_hex: hex::encode(item),
            proof_hex: hex::encode(to_bytes(&proof)),
        }
    }

    #[test]
    fn proofs_verify_and_tampering_fails() {
        let mut community = TestCommunity::new(3, 2, test_market(), 0);
        let transactions = community.registrations();
        let genesis = community.genesis.clone();
        let id = transactions[2].id(&genesis.community_id);
        let proof = proof_of(&community, transactions.clone(), Vec::new(), Some(2), None);
        let proven = verify_transaction(&genesis, &id, &proof).unwrap();
        assert_eq!(proven.item, transactions[2]);
        assert_eq!(proven.index, 2);

        let other = transactions[1].id(&genesis.community_id);
        assert!(verify_transaction(&genesis, &other, &proof).unwrap_err().contains("not"));
        let mut wrong_index = proof.clone();
        wrong_index.index = 1;
        assert!(verify_transaction(&genesis, &id, &wrong_index).is_err());
        // Another transaction of the block passed off with this proof.
        let mut swapped = proof.clone();
        swapped.item_hex = hex::encode(to_bytes(&transactions[1]));
        let swapped_error = verify_transaction(&genesis, &other, &swapped).unwrap_err();
        assert!(swapped_error.contains("not in the certified block"), "{swapped_error}");
        // A certificate by a key that is no validator.
        let mut forged = proof.clone();
        let header: BlockHeader = proof.header().unwrap();
        forged.certificate_hex =
            hex::encode(to_bytes(&CommitCertificate::sign(&header, 0, &[&community.registrar])));
        let forged_error = verify_transaction(&genesis, &id, &forged).unwrap_err();
        assert!(forged_error.contains("certificate"), "{forged_error}");
        let mut garbage = proof;
        garbage.proof_hex = "zz".into();
        let garbled = verify_transaction(&genesis, &id, &garbage).unwrap_err();
        assert!(garbled.starts_with("proof_hex does not decode"), "{garbled}");
    }

    #[test]
    fn receipts_and_the_accounts_items_in_them() {
        let community = TestCommunity::new(4, 2, test_market(), 0);
        let genesis = community.genesis.clone();
        let (buyer, seller) =
            (community.households[0].account.public(), community.households[1].account.public());
        let trade = TradeReceipt {
            buy_offer: Hash([1; 32]),
            sell_offer: Hash([2; 32]),
            buyer,
            seller,
            energy_wh: 1_000,
            price_micro_per_kwh: 175_000,
            buyer_price_micro_per_kwh: 175_000,
        };
        let clearing = Receipt::Clearing(ClearingReceipt {
            interval: 9,
            mechanism: Mechanism::Uniform,
            k_thousandths: 500,
            network_fee_micro_per_kwh: 20_000,
            offers: 2,
            clearing_price_micro_per_kwh: Some(175_000),
            volume_wh: 1_000,
            trades: vec![trade],
            zones: Vec::new(),
        });
        let settlement = Receipt::Settlement(SettlementReceipt {
            interval: 7,
            tariffs: genesis.tariffs,
            bills: Vec::new(),
            zones: Vec::new(),
        });
        let proof = proof_of(&community, Vec::new(), vec![settlement, clearing], None, Some(1));
        let proven = verify_receipt(&genesis, ProofTarget::Clearing(9), &proof).unwrap();
        let error = verify_receipt(&genesis, ProofTarget::Clearing(8), &proof).unwrap_err();
        assert_eq!(error, "the proven receipt is the clearing of interval 9");
        assert!(verify_receipt(&genesis, ProofTarget::Settlement(9), &proof).is_err());
        let Receipt::Clearing(clearing) = proven.item else { panic!() };

        let listing = AccountTrade {
            interval: 9,
            height: 5,
            side: WireSide::Buy,
            offer: Hash([1; 32]),
            counterparty: seller,
            energy_wh: 1_000,
            price_micro_per_kwh: 175_000,
            amount_nano: -175_000_000,
        };
        assert_eq!(check_trades(&buyer, &clearing.trades, std::slice::from_ref(&listing)), Ok(vec![trade]));
        let mut inflated = listing.clone();
        inflated.energy_wh = 2_000;
        assert!(check_trades(&buyer, &clearing.trades, &[inflated]).unwrap_err().contains("does not have"));
        assert!(check_trades(&buyer, &clearing.trades, &[]).unwrap_err().contains("the node lists 0"));
        let stranger = community.registrar.public();
        assert!(check_trades(&stranger, &clearing.trades, &[]).unwrap_err().contains("no trade of account"));
    }
}
