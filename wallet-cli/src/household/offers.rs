//! Offering to buy or sell energy for an interval, listing the account's
//! open offers and cancelling one (`gridshare sell`, `buy`, `offers`,
//! `cancel`).

use std::io::Write;

use gridshare_api::client::Submission;
use gridshare_api::{Account, Offer as OpenOffer, OffersQuery, Side as WireSide, SpanQuery};
use gridshare_ledger::Hash;
use gridshare_ledger::ids::{CommunityId, Keypair};
use gridshare_ledger::tx::{MeterReading, Offer, Side, SignedMeterReading, SignedTx, Tx};
use serde::Serialize;

use crate::amount::{
    BadAmount, format_kwh, format_money, format_price, parse_energy_wh, parse_price_micro_per_kwh,
};
use crate::keystore::{KeyFile, Role};
use crate::market_time::{IntervalSpec, OFFER_MARGIN_MS, format_utc, latest_ended_interval, now_ms};
use crate::table::{self, Align};
use crate::wallet::{CommandError, Wallet, bad_input, write_json};

/// An offer's energy: positive.
pub fn parse_offer_energy(text: &str) -> Result<u64, BadAmount> {
    let energy_wh = parse_energy_wh(text)?;
    if energy_wh == 0 {
        return Err(BadAmount { text: text.to_string(), reason: "an offer is for at least 1 Wh".into() });
    }
    Ok(energy_wh)
}

/// `gridshare offer buy|sell`.
#[derive(Debug, Clone, clap::Args)]
pub struct OfferArgs {
    /// The energy: 2.5kWh, 2500Wh, or 2.5 (kWh, at most 3 decimals).
    #[arg(value_name = "ENERGY", value_parser = parse_offer_energy)]
    pub energy_wh: u64,
    /// Currency per kWh (at most 6 decimals): the most you pay, network fee
    /// included (buy), or the least you accept (sell).
    #[arg(long, value_name = "PRICE", value_parser = parse_price_micro_per_kwh)]
    pub price: u64,
    /// The delivery interval: next (the first whose gate closes at least 2 s
    /// from now, time for the offer to reach a block), +N (N after next), an
    /// interval number, or an RFC 3339 time in it with its zone, such as
    /// 2026-11-21T17:20Z or 2026-11-21T18:20+01:00.
    #[arg(long, value_name = "INTERVAL", default_value = "next")]
    pub interval: IntervalSpec,
    /// The account key that offers (default: the only account key).
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    /// The meter key that attests the offer (default: the account's meter
    /// whose key is in the keystore, else the latest reading one of its
    /// meters' gateways signed, from the ledger).
    #[arg(long, value_name = "NAME")]
    pub meter: Option<String>,
    /// Print JSON for programs.
    #[arg(long)]
    pub json: bool,
}

/// The terms of an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferTerms {
    pub interval: u64,
    pub side: Side,
    pub energy_wh: u64,
    pub price_micro_per_kwh: u64,
}

/// Signs an offer: the meter signs the attestation, a reading of its
/// registers, and the account signs the offer that embeds it.
pub fn build_offer(
    community: &CommunityId,
    account: &Keypair,
    meter: &Keypair,
    nonce: u64,
    terms: OfferTerms,
    reading: MeterReading,
) -> SignedTx {
    assert_eq!(reading.meter, meter.public(), "the attestation is the meter's own reading");
    let attestation = SignedMeterReading::sign(reading, meter, community);
    build_attested_offer(community, account, nonce, terms, attestation)
}

/// Signs an offer that embeds `attestation`, a reading the meter signed.
pub fn build_attested_offer(
    community: &CommunityId,
    account: &Keypair,
    nonce: u64,
    terms: OfferTerms,
    attestation: SignedMeterReading,
) -> SignedTx {
    let offer = Offer {
        account: account.public(),
        nonce,
        interval: terms.interval,
        side: terms.side,
        energy_wh: terms.energy_wh,
        price_micro_per_kwh: terms.price_micro_per_kwh,
        attestation,
    };
    SignedTx::sign(Tx::Offer(offer), account, community)
}

fn side_name(side: Side) -> &'static str {
    WireSide::from(side).as_str()
}

/// What attests an offer.
enum Attestor {
    /// A meter key in the keystore, which signs the meter's last reading.
    Key(KeyFile),
    /// A reading the meter signed, from the ledger: its key stays in its
    /// gateway (docs/METER.md).
    Ledger(SignedMeterReading),
}

/// What attests an offer of `account` for `interval`: the meter key named,
/// else the account's meter whose key is in the keystore, else the latest
/// signed reading of the account's meters on the ledger (if young enough
/// for `interval`), else the only meter key.
fn choose_attestor(
    wallet: &Wallet,
    name: Option<&str>,
    account: Option<&Account>,
    interval: u64,
) -> Result<Attestor, CommandError> {
    if name.is_some() {
        return wallet.key_file(name, Role::Meter, "--meter").map(Attestor::Key);
    }
    let Some(account) = account.filter(|account| !account.meters.is_empty()) else {
        return wallet.key_file(None, Role::Meter, "--meter").map(Attestor::Key);
    };
    let keys = wallet.keys()?;
    if let Some(file) =
        keys.iter().find(|file| account.meters.iter().any(|meter| meter.meter.to_string() == file.public_key))
    {
        return Ok(Attestor::Key(file.clone()));
    }
    let community = wallet.community()?;
    let max_age = community.genesis.market.attestation_max_age_intervals;
    let mut latest: Option<SignedMeterReading> = None;
    for meter in &account.meters {
        let Some(last) = meter.last_reading.filter(|last| last.interval <= interval) else { continue };
        let span = SpanQuery::between(last.interval, last.interval);
        let signed = wallet.node().meter_readings(&meter.meter, &span)?;
        let attestation =
            signed.last().and_then(|signed| signed.attestation(meter.meter, &community.genesis.community_id));
        if let Some(attestation) = attestation
            && latest.is_none_or(|latest| latest.reading.interval < attestation.reading.interval)
        {
            latest = Some(attestation);
        }
    }
    let meters = account.meters.iter().map(|meter| meter.meter.to_string()).collect::<Vec<_>>().join(", ");
    match latest {
        Some(attestation) if interval - attestation.reading.interval <= max_age => {
            Ok(Attestor::Ledger(attestation))
        }
        Some(attestation) => Err(CommandError::BadInput(format!(
            "the account's meters ({meters}) have no key in the keystore, and their latest signed reading (of \
             interval {}) is more than {max_age} intervals older than interval {interval}: is the meter's gateway \
             running?",
            attestation.reading.interval
        ))),
        None => Err(CommandError::BadInput(format!(
            "none of the account's meters ({meters}) has its key in the keystore or a signed reading on the \
             ledger: import a meter key with `gridshare keys import NAME --role meter`, name one with --meter \
             NAME, or run the meter's gateway (`gridshare meter run`)"
        ))),
    }
}

/// The `--json` form of a submitted offer.
#[derive(Debug, Serialize)]
struct OfferJsonOut {
    id: String,
    status: &'static str,
    account: String,
    meter: String,
    interval: u64,
    side: &'static str,
    energy_wh: u64,
    price_micro_per_kwh: u64,
    gate_closure_ms: u64,
    nonce: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// `gridshare offer buy|sell`: builds, signs and submits an offer.
pub fn offer(wallet: &Wallet, side: Side, args: &OfferArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let account_file = wallet.key_file(args.from.as_deref(), Role::Account, "--from")?;
    let account_key = account_file.public_key()?;
    let community = wallet.community()?;
    let genesis = &community.genesis;
    let now = now_ms();
    let interval = args.interval.resolve_for_offer(genesis, now).map_err(bad_input)?;
    let gate_closure_ms = genesis.gate_closure_ms(interval).ok_or_else(|| bad_input("no such interval"))?;
    if gate_closure_ms <= now {
        return Err(CommandError::BadInput(format!(
            "interval {interval} already closed for offers at {} (its gate closure): offer for a later one, e.g. --interval next (interval {})",
            format_utc(gate_closure_ms),
            genesis.first_open_interval(now.saturating_add(OFFER_MARGIN_MS))
        )));
    }
    let market = &genesis.market;
    let currency = community.currency();
    if !(market.price_floor_micro_per_kwh..=market.price_cap_micro_per_kwh).contains(&args.price) {
        return Err(CommandError::BadInput(format!(
            "the price {} {currency}/kWh is outside this market's floor {} and cap {} {currency}/kWh",
            format_price(args.price),
            format_price(market.price_floor_micro_per_kwh),
            format_price(market.price_cap_micro_per_kwh)
        )));
    }
    let horizon_interval = genesis.interval_at(now).saturating_add(market.offer_horizon_intervals);
    if interval > horizon_interval {
        return Err(CommandError::BadInput(format!(
            "interval {interval} is too far ahead: offers are for at most {} intervals ahead (up to interval {horizon_interval})",
            market.offer_horizon_intervals
        )));
    }
    // The attestation is of the latest ended interval; admission takes it
    // only if at most `attestation_max_age_intervals` older than the offer.
    let reading_interval = latest_ended_interval(genesis, now).unwrap_or(0).min(interval);
    let max_age = market.attestation_max_age_intervals;
    if interval - reading_interval > max_age {
        return Err(CommandError::BadInput(format!(
            "interval {interval} is too far ahead: an offer's meter attestation (of interval {reading_interval}, the latest ended) may be at most {max_age} intervals older than the offer"
        )));
    }
    let account_json = wallet.node().account(&account_key)?;
    let community_id = genesis.community_id;
    let attestation = match choose_attestor(wallet, args.meter.as_deref(), account_json.as_ref(), interval)? {
        Attestor::Key(meter_file) => {
            let meter_key = meter_file.public_key()?;
            // Its registers are the meter's last reading (zeros before the
            // first): admission asks only for the signature of one of the
            // account's meters.
            let (import_wh_total, export_wh_total) = wallet
                .node()
                .meter(&meter_key)?
                .and_then(|meter| meter.last_reading)
                .map_or((0, 0), |reading| (reading.import_wh_total, reading.export_wh_total));
            let reading = MeterReading {
                meter: meter_key,
                interval: reading_interval,
                import_wh_total,
                export_wh_total,
            };
            SignedMeterReading::sign(reading, &wallet.unlock(&meter_file)?, &community_id)
        }
        Attestor::Ledger(attestation) => attestation,
    };
    let meter_key = attestation.reading.meter;
    let terms = OfferTerms { interval, side, energy_wh: args.energy_wh, price_micro_per_kwh: args.price };
    let account = wallet.unlock(&account_file)?;
    let submitted = wallet.submit_with_nonce(&account, |nonce| {
        build_attested_offer(&community_id, &account, nonce, terms, attestation).tx
    })?;
    let nonce = submitted.tx.tx.nonce().unwrap_or(0);
    if args.json {
        let (reason, message) = match &submitted.outcome {
            Submission::Admitted { .. } => (None, None),
            Submission::Refused { message, .. } => {
                (submitted.outcome.refusal_code().map(str::to_string), Some(message.clone()))
            }
        };
        write_json(
            out,
            &OfferJsonOut {
                id: submitted.id.to_string(),
                status: if submitted.admitted() { "admitted" } else { "rejected" },
                account: account_key.to_string(),
                meter: meter_key.to_string(),
                interval,
                side: side_name(side),
                energy_wh: args.energy_wh,
                price_micro_per_kwh: args.price,
                gate_closure_ms,
                nonce,
                reason,
                message,
            },
        )?;
    }
    if !submitted.admitted() {
        return Err(wallet.refusal(&format!("the offer {}", submitted.id), &submitted));
    }
    if !args.json {
        let start_ms = genesis.interval_start_ms(interval).unwrap_or(0);
        let end_ms = genesis.interval_end_ms(interval).unwrap_or(0);
        writeln!(out, "Offer {}", submitted.id)?;
        writeln!(
            out,
            "  {} {} kWh at {} {currency}/kWh in interval {interval}",
            side_name(side),
            format_kwh(args.energy_wh),
            format_price(args.price)
        )?;
        writeln!(out, "  delivery {} to {}", format_utc(start_ms), format_utc(end_ms))?;
        writeln!(out, "  gate closure {}", format_utc(gate_closure_ms))?;
        if side == Side::Buy {
            let reserved = i128::from(args.energy_wh) * i128::from(args.price);
            writeln!(out, "  reserves {} until the interval clears", format_money(reserved, currency))?;
        }
        writeln!(
            out,
            "  from account {}, attested by meter {} (interval {}: import {} kWh, export {} kWh)",
            account_file.name,
            wallet.label(&meter_key.to_string()),
            attestation.reading.interval,
            format_kwh(attestation.reading.import_wh_total),
            format_kwh(attestation.reading.export_wh_total)
        )?;
        writeln!(out, "Admitted by the node: it waits for the next block.")?;
    }
    Ok(())
}

/// `gridshare offers`.
#[derive(Debug, Clone, clap::Args)]
pub struct OffersArgs {
    /// The account (default: the only account key).
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    /// Only offers for this interval.
    #[arg(long, value_name = "INTERVAL")]
    pub interval: Option<IntervalSpec>,
    #[arg(long)]
    pub json: bool,
}

/// The table of open offers.
pub fn offers_text(offers: &[OpenOffer], currency: &str, gate_ms: impl Fn(u64) -> Option<u64>) -> String {
    if offers.is_empty() {
        return "No open offers.\n".to_string();
    }
    let rows: Vec<Vec<String>> = offers
        .iter()
        .map(|offer| {
            vec![
                offer.id.to_string(),
                offer.interval.to_string(),
                offer.side.to_string(),
                format_kwh(offer.energy_wh),
                format_price(offer.price_micro_per_kwh),
                format_money(offer.reserved_nano, currency),
                gate_ms(offer.interval).map_or_else(String::new, format_utc),
            ]
        })
        .collect();
    let price_title = format!("PRICE ({currency}/kWh)");
    table::render(
        &[
            ("ID", Align::Left),
            ("INTERVAL", Align::Right),
            ("SIDE", Align::Left),
            ("ENERGY (kWh)", Align::Right),
            (&price_title, Align::Right),
            ("RESERVED", Align::Right),
            ("GATE CLOSURE", Align::Left),
        ],
        &rows,
    )
}

/// `gridshare offers`: the account's open offers.
pub fn offers(wallet: &Wallet, args: &OffersArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let account_file = wallet.key_file(args.from.as_deref(), Role::Account, "--from")?;
    let account_key = account_file.public_key()?;
    let community = wallet.community()?;
    let interval = match args.interval {
        Some(spec) => Some(spec.resolve(&community.genesis, now_ms()).map_err(bad_input)?),
        None => None,
    };
    let offers = wallet.node().offers(&OffersQuery { account: Some(account_key), interval })?;
    if args.json {
        return write_json(out, &serde_json::json!({ "offers": offers }));
    }
    let genesis = &community.genesis;
    write!(
        out,
        "{}",
        offers_text(&offers, community.currency(), |interval| genesis.gate_closure_ms(interval))
    )?;
    Ok(())
}

/// `gridshare cancel`.
#[derive(Debug, Clone, clap::Args)]
pub struct CancelArgs {
    /// The offer's id (64 hex digits, as `gridshare offers` lists it).
    #[arg(value_name = "OFFER_ID")]
    pub offer_id: Hash,
    /// The account that made the offer (default: the only account key).
    #[arg(long, value_name = "NAME")]
    pub from: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// `gridshare cancel`: withdraws an open offer before its gate closure.
pub fn cancel(wallet: &Wallet, args: &CancelArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let account_file = wallet.key_file(args.from.as_deref(), Role::Account, "--from")?;
    let account_key = account_file.public_key()?;
    wallet.community()?;
    let account = wallet.unlock(&account_file)?;
    let offer_id = args.offer_id;
    let submitted = wallet.submit_with_nonce(&account, |nonce| Tx::CancelOffer {
        account: account_key,
        nonce,
        offer_id,
    })?;
    if args.json {
        let mut json = submitted.to_json();
        json["offer"] = serde_json::Value::String(offer_id.to_string());
        write_json(out, &json)?;
    }
    if !submitted.admitted() {
        return Err(wallet.refusal(&format!("the cancellation of offer {offer_id}"), &submitted));
    }
    if !args.json {
        writeln!(out, "Cancellation of offer {offer_id} admitted (transaction {}).", submitted.id)?;
        writeln!(out, "The offer is withdrawn and its reservation released in the next block.")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use gridshare_ledger::testkit::derived_key;

    use super::*;

    #[test]
    fn a_built_offer_verifies_and_says_what_was_asked() {
        let community = CommunityId([5; 32]);
        let (account, meter) = (derived_key(1, 3, 0), derived_key(1, 4, 0));
        let terms =
            OfferTerms { interval: 42, side: Side::Sell, energy_wh: 2_500, price_micro_per_kwh: 110_000 };
        let reading = MeterReading {
            meter: meter.public(),
            interval: 40,
            import_wh_total: 800,
            export_wh_total: 1_200,
        };
        let signed = build_offer(&community, &account, &meter, 7, terms, reading);
        assert_eq!(signed.verify(&community), Ok(()));
        assert!(signed.verify(&CommunityId([6; 32])).is_err(), "signed for one community only");
        let Tx::Offer(offer) = &signed.tx else { panic!("not an offer: {signed:?}") };
        assert_eq!(offer.account, account.public());
        assert_eq!(offer.nonce, 7);
        assert_eq!(
            (offer.interval, offer.side, offer.energy_wh, offer.price_micro_per_kwh),
            (42, Side::Sell, 2_500, 110_000)
        );
        assert_eq!(offer.attestation.reading, reading);
        assert_eq!(offer.attestation.verify(&community), Ok(()));
        assert_eq!(signed.tx.signer(), account.public());
        // The id is the offer's: the hash of the unsigned body.
        assert_eq!(signed.id(&community), Tx::Offer(offer.clone()).id(&community));
    }

    #[test]
    fn offer_energy_is_positive() {
        assert_eq!(parse_offer_energy("1Wh"), Ok(1));
        assert_eq!(
            parse_offer_energy("0").unwrap_err().to_string(),
            "bad amount `0`: an offer is for at least 1 Wh"
        );
    }
}
