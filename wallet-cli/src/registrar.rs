//! A registrar's commands: register accounts and meters, credit and debit
//! accounts against payments outside the ledger, and schedule tariffs. The
//! registrar's key signs here; the node only receives the transactions.

use std::io::Write;

use gridshare_ledger::execute::TEXT_LEN_MAX;
use gridshare_ledger::genesis::{Genesis, Tariffs};
use gridshare_ledger::ids::{Keypair, PublicKey};
use gridshare_ledger::tx::Tx;

use crate::amount::{
    Money, format_kw, format_money, format_price, parse_money, parse_power_w, parse_price_micro_per_kwh,
};
use crate::keystore::Role;
use crate::market_time::{format_utc, now_ms};
use crate::wallet::{CommandError, Submitted, Wallet, short_key, write_json};
use gridshare_api::client::Community;

/// Options every registrar command has.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistrarOptions {
    /// The registrar key that signs (default: the only registrar key).
    #[arg(long = "as", value_name = "NAME")]
    pub registrar: Option<String>,
    /// Print JSON for programs.
    #[arg(long)]
    pub json: bool,
}

/// `gridshare register account`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegisterAccountArgs {
    /// The account's public key (64 hex digits) or its keystore name.
    #[arg(value_name = "KEY|NAME")]
    pub account: String,
    /// How far the account's balance may go below zero, in the community's
    /// currency: 0, 50, 12.50EUR.
    #[arg(long, value_name = "AMOUNT", value_parser = parse_money)]
    pub credit_limit: Money,
    #[command(flatten)]
    pub options: RegistrarOptions,
}

/// `gridshare register meter`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegisterMeterArgs {
    /// The meter's device key (64 hex digits) or its keystore name.
    #[arg(value_name = "METER_KEY|NAME")]
    pub meter: String,
    /// The account that owns the meter: key or keystore name.
    #[arg(long, value_name = "KEY|NAME")]
    pub owner: String,
    /// The most the meter imports, in kW (at most 3 decimals).
    #[arg(long, value_name = "KW", value_parser = parse_power_w)]
    pub max_import_kw: u64,
    /// The most the meter exports, in kW.
    #[arg(long, value_name = "KW", value_parser = parse_power_w)]
    pub max_export_kw: u64,
    /// The grid zone the meter is in, one of the community's (default: its
    /// only zone, when it has one).
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
    #[command(flatten)]
    pub options: RegistrarOptions,
}

/// `gridshare credit` and `gridshare debit`.
#[derive(Debug, Clone, clap::Args)]
pub struct MoneyArgs {
    /// The account: key or keystore name.
    #[arg(value_name = "KEY|NAME")]
    pub account: String,
    /// The amount in the community's currency (at most 9 decimals): 50, 12.50EUR.
    #[arg(value_name = "AMOUNT", value_parser = parse_money)]
    pub amount: Money,
    /// The payment this books, e.g. a bank transfer's reference (at most 64 bytes).
    #[arg(long, value_name = "TEXT")]
    pub reference: String,
    #[command(flatten)]
    pub options: RegistrarOptions,
}

/// From which interval new tariffs apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TariffStart {
    /// The earliest interval a change can still safely apply to.
    Next,
    Interval(u64),
}

impl TariffStart {
    /// The interval: `next` is the earliest that will still be open for
    /// offers when the transaction reaches a block, with a margin of one
    /// interval (docs/PROTOCOL.md §5.4).
    pub fn interval(self, genesis: &Genesis) -> u64 {
        match self {
            TariffStart::Next => {
                genesis.first_open_interval(now_ms().saturating_add(genesis.market.interval_length_ms)) + 1
            }
            TariffStart::Interval(interval) => interval,
        }
    }
}

impl std::str::FromStr for TariffStart {
    type Err = String;

    fn from_str(text: &str) -> Result<TariffStart, String> {
        if text.eq_ignore_ascii_case("next") {
            return Ok(TariffStart::Next);
        }
        text.parse()
            .map(TariffStart::Interval)
            .map_err(|_| format!("bad interval `{text}`: use next or an interval number"))
    }
}

/// `gridshare tariffs set`.
#[derive(Debug, Clone, clap::Args)]
pub struct TariffsSetArgs {
    /// What households pay the grid per kWh imported beyond their trades
    /// (currency per kWh, at most 6 decimals).
    #[arg(long = "import", value_name = "PRICE", value_parser = parse_price_micro_per_kwh)]
    pub import: u64,
    /// What the grid pays per kWh exported beyond trades.
    #[arg(long = "feed-in", value_name = "PRICE", value_parser = parse_price_micro_per_kwh)]
    pub feed_in: u64,
    /// What buyers pay per kWh traded on top of the price, to the network.
    #[arg(long = "network-fee", value_name = "PRICE", value_parser = parse_price_micro_per_kwh)]
    pub network_fee: u64,
    /// The first interval the tariffs apply to: an interval number still open
    /// for offers, or next (the earliest that will still be open when the
    /// transaction reaches a block, with a margin of one interval).
    #[arg(long, value_name = "N|next")]
    pub from_interval: TariffStart,
    #[command(flatten)]
    pub options: RegistrarOptions,
}

/// The registrar's key, which must be a registrar of the community.
pub(crate) fn registrar_key(
    wallet: &Wallet,
    options: &RegistrarOptions,
) -> Result<(String, Keypair), CommandError> {
    let file = wallet.key_file(options.registrar.as_deref(), Role::Registrar, "--as")?;
    let key = file.public_key()?;
    let community = wallet.community()?;
    if !community.genesis.is_registrar(&key) {
        return Err(CommandError::BadInput(format!(
            "key `{}` ({key}) is not a registrar of {} (community {})",
            file.name, community.genesis.name, community.genesis.community_id
        )));
    }
    let keypair = wallet.unlock(&file)?;
    Ok((file.name, keypair))
}

/// Money in the community's currency, refusing another currency.
fn nano_in(community: &Community, money: &Money, what: &str, positive: bool) -> Result<i128, CommandError> {
    if let Some(currency) = &money.currency
        && *currency != community.genesis.currency
    {
        return Err(CommandError::BadInput(format!(
            "the community's currency is {}, not {currency}",
            community.genesis.currency
        )));
    }
    if positive && money.nano == 0 {
        return Err(CommandError::BadInput(format!("{what} must be positive")));
    }
    Ok(money.nano)
}

fn check_text(field: &str, text: &str) -> Result<(), CommandError> {
    if text.len() > TEXT_LEN_MAX {
        return Err(CommandError::BadInput(format!(
            "the {field} is {} bytes long: at most {TEXT_LEN_MAX}",
            text.len()
        )));
    }
    Ok(())
}

/// Why no zone can be chosen; `zones` lists the community's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("zone `{name}` is not one of the community's zones: {zones}")]
    Unknown { name: String, zones: String },
    #[error("the community has zones {zones}: name the meter's")]
    Unnamed { zones: String },
}

/// The zone a meter is registered in: `named`, which must be one of the
/// community's zones, or, when none is named, the community's only zone.
pub fn meter_zone(genesis: &Genesis, named: Option<&str>) -> Result<String, ZoneError> {
    let zones = || genesis.zones.iter().map(|zone| zone.name.as_str()).collect::<Vec<_>>().join(", ");
    match (named, &genesis.zones[..]) {
        (Some(name), _) if genesis.zone_index(name).is_some() => Ok(name.to_string()),
        (Some(name), _) => Err(ZoneError::Unknown { name: name.to_string(), zones: zones() }),
        (None, [only]) => Ok(only.name.clone()),
        (None, _) => Err(ZoneError::Unnamed { zones: zones() }),
    }
}

/// A key for a message: name and key, or the key alone.
pub(crate) fn describe_key(wallet: &Wallet, key: &PublicKey) -> String {
    let hex = key.to_string();
    match wallet.name_of(&hex) {
        Some(name) => format!("{name} ({})", short_key(&hex)),
        None => hex,
    }
}

/// Prints what was submitted (as JSON with `json`), or turns a refusal
/// into the error.
pub(crate) fn report(
    wallet: &Wallet,
    json: bool,
    what: &str,
    submitted: &Submitted,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    if json {
        let mut json = submitted.to_json();
        json["kind"] = serde_json::Value::String(submitted.tx.tx.kind().to_string());
        json["nonce"] = submitted.tx.tx.nonce().unwrap_or(0).into();
        write_json(out, &json)?;
    }
    if !submitted.admitted() {
        return Err(wallet.refusal(what, submitted));
    }
    if !json {
        writeln!(out, "Admitted: {what}")?;
        writeln!(out, "Transaction {}: it takes effect in the next block.", submitted.id)?;
    }
    Ok(())
}

/// `gridshare register account`.
pub fn register_account(
    wallet: &Wallet,
    args: &RegisterAccountArgs,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let account = wallet.resolve_key(&args.account)?;
    let community = wallet.community()?;
    let credit_limit_nano = nano_in(community, &args.credit_limit, "the credit limit", false)?;
    let (_, registrar) = registrar_key(wallet, &args.options)?;
    let registrar_public = registrar.public();
    let submitted = wallet.submit_with_nonce(&registrar, |nonce| Tx::RegisterAccount {
        registrar: registrar_public,
        nonce,
        account,
        credit_limit_nano,
    })?;
    let what = format!(
        "register account {} with a credit limit of {}",
        describe_key(wallet, &account),
        format_money(credit_limit_nano, community.currency())
    );
    report(wallet, args.options.json, &what, &submitted, out)
}

/// `gridshare register meter`.
pub fn register_meter(
    wallet: &Wallet,
    args: &RegisterMeterArgs,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let meter = wallet.resolve_key(&args.meter)?;
    let owner = wallet.resolve_key(&args.owner)?;
    let zone = meter_zone(&wallet.community()?.genesis, args.zone.as_deref())
        .map_err(|problem| CommandError::BadInput(format!("{problem} (--zone)")))?;
    let (_, registrar) = registrar_key(wallet, &args.options)?;
    let registrar_public = registrar.public();
    let submitted = wallet.submit_with_nonce(&registrar, |nonce| Tx::RegisterMeter {
        registrar: registrar_public,
        nonce,
        meter,
        owner,
        max_import_w: args.max_import_kw,
        max_export_w: args.max_export_kw,
        zone: zone.clone(),
    })?;
    let what = format!(
        "register meter {} of account {} in zone {zone}, import up to {} kW, export up to {} kW",
        describe_key(wallet, &meter),
        describe_key(wallet, &owner),
        format_kw(args.max_import_kw),
        format_kw(args.max_export_kw)
    );
    report(wallet, args.options.json, &what, &submitted, out)
}

/// Whether money goes into or out of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Credit,
    Debit,
}

/// `gridshare credit` and `gridshare debit`.
pub fn move_money(
    wallet: &Wallet,
    direction: Direction,
    args: &MoneyArgs,
    out: &mut dyn Write,
) -> Result<(), CommandError> {
    let account = wallet.resolve_key(&args.account)?;
    let community = wallet.community()?;
    let amount_nano = nano_in(community, &args.amount, "the amount", true)?;
    check_text("reference", &args.reference)?;
    let (_, registrar) = registrar_key(wallet, &args.options)?;
    let registrar_public = registrar.public();
    let reference = args.reference.clone();
    let submitted = wallet.submit_with_nonce(&registrar, |nonce| match direction {
        Direction::Credit => Tx::Credit {
            registrar: registrar_public,
            nonce,
            account,
            amount_nano,
            reference: reference.clone(),
        },
        Direction::Debit => Tx::Debit {
            registrar: registrar_public,
            nonce,
            account,
            amount_nano,
            reference: reference.clone(),
        },
    })?;
    let (verb, preposition) = match direction {
        Direction::Credit => ("credit", "to"),
        Direction::Debit => ("debit", "from"),
    };
    let what = format!(
        "{verb} {} {preposition} account {} (reference `{}`)",
        format_money(amount_nano, community.currency()),
        describe_key(wallet, &account),
        args.reference
    );
    report(wallet, args.options.json, &what, &submitted, out)
}

/// `gridshare tariffs set`.
pub fn set_tariffs(wallet: &Wallet, args: &TariffsSetArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let community = wallet.community()?;
    let genesis = &community.genesis;
    let effective_from_interval = args.from_interval.interval(genesis);
    let (_, registrar) = registrar_key(wallet, &args.options)?;
    let registrar_public = registrar.public();
    let tariffs = Tariffs {
        effective_from_interval,
        grid_import_micro_per_kwh: args.import,
        grid_feed_in_micro_per_kwh: args.feed_in,
        network_fee_micro_per_kwh: args.network_fee,
    };
    let submitted = wallet.submit_with_nonce(&registrar, |nonce| Tx::SetTariffs {
        registrar: registrar_public,
        nonce,
        tariffs,
    })?;
    let currency = community.currency();
    let what = format!(
        "tariffs from interval {effective_from_interval} (starting {}): import {} {currency}/kWh, feed-in {} {currency}/kWh, network fee {} {currency}/kWh",
        format_utc(genesis.interval_start_ms(effective_from_interval).unwrap_or(0)),
        format_price(args.import),
        format_price(args.feed_in),
        format_price(args.network_fee)
    );
    report(wallet, args.options.json, &what, &submitted, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tariff_starts() {
        assert_eq!("next".parse(), Ok(TariffStart::Next));
        assert_eq!("120".parse(), Ok(TariffStart::Interval(120)));
        assert_eq!(
            "soon".parse::<TariffStart>().unwrap_err(),
            "bad interval `soon`: use next or an interval number"
        );
    }
}
