//! `gridshare-node genesis new` and `genesis show`: a community's genesis
//! from the operator's choices (validators, registrars, market rules and
//! tariffs, with prices as exact decimals), and its summary as JSON.

use gridshare_api::GenesisSummary;
use gridshare_api::decimal::{DecimalError, parse_scaled};
use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::genesis::{Genesis, MarketParams, Mechanism, Tariffs, Validator};
use gridshare_ledger::ids::{CommunityId, PublicKey};

/// The operator's choices for a new community. Prices are in currency per
/// kWh with at most six decimals.
#[derive(Clone, Debug, clap::Args)]
pub struct GenesisOptions {
    /// The community's name (1 to 64 bytes).
    #[arg(long)]
    pub name: String,
    /// ISO 4217 currency code.
    #[arg(long, default_value = "EUR")]
    pub currency: String,
    /// A validator's public key (64 hex digits), optionally with its voting
    /// power as KEY:POWER (default 1). Repeat for each validator.
    #[arg(long = "validator", value_name = "KEY[:POWER]", required = true)]
    pub validators: Vec<String>,
    /// A registrar's public key. Repeat for each registrar.
    #[arg(long = "registrar", value_name = "KEY", required = true)]
    pub registrars: Vec<String>,
    /// Start of interval 0, in ms since the Unix epoch (default: now, rounded
    /// down to a whole interval).
    #[arg(long, value_name = "MS")]
    pub genesis_time_ms: Option<u64>,
    /// Length of a delivery interval.
    #[arg(long, value_name = "MS", default_value_t = 900_000)]
    pub interval_ms: u64,
    /// Gate closure of an interval is this long before its start.
    #[arg(long, value_name = "MS", default_value_t = 300_000)]
    pub gate_closure_lead_ms: u64,
    /// An interval settles this long after its end (time for meter readings).
    #[arg(long, value_name = "MS", default_value_t = 900_000)]
    pub settlement_delay_ms: u64,
    /// How many intervals ahead offers may be made.
    #[arg(long, default_value_t = 96)]
    pub offer_horizon_intervals: u64,
    /// How many intervals old an offer's meter attestation may be.
    #[arg(long, default_value_t = 8)]
    pub attestation_max_age_intervals: u64,
    /// uniform (pay-as-clear) or pay-as-bid.
    #[arg(long, default_value = "uniform", value_parser = ["uniform", "pay-as-bid"])]
    pub mechanism: String,
    /// Where the uniform price lies between the marginal ask (0) and bid (1).
    #[arg(long, default_value = "0.5")]
    pub k: String,
    /// The lowest price an offer may name, per kWh.
    #[arg(long, default_value = "0")]
    pub price_floor: String,
    /// The highest price an offer may name, per kWh.
    #[arg(long, default_value = "1")]
    pub price_cap: String,
    /// What the grid charges per kWh imported beyond trades.
    #[arg(long, default_value = "0.30")]
    pub import_tariff: String,
    /// What the grid pays per kWh fed in beyond trades.
    #[arg(long, default_value = "0.08")]
    pub feed_in_tariff: String,
    /// The network fee buyers pay per traded kWh.
    #[arg(long, default_value = "0.01")]
    pub network_fee: String,
    #[arg(long, default_value_t = 16)]
    pub max_open_offers_per_account: u32,
    #[arg(long, default_value_t = 100_000)]
    pub max_offers_per_interval: u32,
    #[arg(long, default_value_t = 10_000)]
    pub max_transactions_per_block: u32,
}

/// Decimal places of a price per kWh written in currency, stored in
/// micro-currency.
const PRICE_DECIMALS: u32 = 6;
/// Decimal places of `k` written as a fraction, stored in thousandths.
const K_DECIMALS: u32 = 3;

/// A price in currency per kWh as micro-currency per kWh, exactly.
pub fn parse_price_micro(what: &str, text: &str) -> Result<u64, String> {
    parse_scaled(text, PRICE_DECIMALS).map_err(|error| match error {
        DecimalError::NotANumber => format!("{what}: `{text}` is not a decimal number such as 0.11"),
        DecimalError::TooPrecise { .. } => format!("{what}: `{text}` has more than 6 decimals"),
        DecimalError::Negative => format!("{what}: `{text}` is negative"),
        DecimalError::TooLarge => format!("{what}: `{text}` is too large"),
    })
}

fn parse_k(text: &str) -> Result<u16, String> {
    let thousandths = parse_scaled(text, K_DECIMALS).map_err(|error| match error {
        DecimalError::NotANumber => format!("k: `{text}` is not a number in [0, 1]"),
        _ => format!("k: `{text}` must be in [0, 1] with at most 3 decimals"),
    })?;
    u16::try_from(thousandths)
        .ok()
        .filter(|&thousandths| thousandths <= 1_000)
        .ok_or_else(|| format!("k: `{text}` must be in [0, 1] with at most 3 decimals"))
}

fn parse_key(what: &str, text: &str) -> Result<PublicKey, String> {
    text.parse::<PublicKey>().map_err(|_| format!("{what}: `{text}` is not a 64-digit hex public key"))
}

fn parse_validator(text: &str) -> Result<Validator, String> {
    let (key, power) = match text.split_once(':') {
        Some((key, power)) => {
            let power = power
                .parse::<u64>()
                .map_err(|_| format!("validator `{text}`: the voting power must be a positive integer"))?;
            (key, power)
        }
        None => (text, 1),
    };
    Ok(Validator { key: parse_key("validator", key)?, voting_power: power })
}

/// The genesis of `options`, with `now_ms` as the default genesis time. The
/// community id is the hash of everything else, so two communities differ.
pub fn build(options: &GenesisOptions, now_ms: u64) -> Result<Genesis, String> {
    if options.interval_ms == 0 {
        return Err("the interval length must be positive".into());
    }
    let tariffs = Tariffs {
        effective_from_interval: 0,
        grid_import_micro_per_kwh: parse_price_micro("import tariff", &options.import_tariff)?,
        grid_feed_in_micro_per_kwh: parse_price_micro("feed-in tariff", &options.feed_in_tariff)?,
        network_fee_micro_per_kwh: parse_price_micro("network fee", &options.network_fee)?,
    };
    let market = MarketParams {
        interval_length_ms: options.interval_ms,
        gate_closure_lead_ms: options.gate_closure_lead_ms,
        settlement_delay_ms: options.settlement_delay_ms,
        offer_horizon_intervals: options.offer_horizon_intervals,
        attestation_max_age_intervals: options.attestation_max_age_intervals,
        price_floor_micro_per_kwh: parse_price_micro("price floor", &options.price_floor)?,
        price_cap_micro_per_kwh: parse_price_micro("price cap", &options.price_cap)?,
        mechanism: Mechanism::from(options.mechanism.parse::<gridshare_api::Mechanism>()?),
        k_thousandths: parse_k(&options.k)?,
        max_open_offers_per_account: options.max_open_offers_per_account,
        max_offers_per_interval: options.max_offers_per_interval,
        max_transactions_per_block: options.max_transactions_per_block,
    };
    let validators = options.validators.iter().map(|text| parse_validator(text)).collect::<Result<_, _>>()?;
    let registrars =
        options.registrars.iter().map(|text| parse_key("registrar", text)).collect::<Result<_, _>>()?;
    let mut genesis = Genesis {
        community_id: CommunityId([0; 32]),
        name: options.name.clone(),
        currency: options.currency.clone(),
        genesis_time_ms: options
            .genesis_time_ms
            .unwrap_or(now_ms / options.interval_ms * options.interval_ms),
        market,
        tariffs,
        validators,
        registrars,
    };
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"gridshare/community-id\0");
    hasher.update(&to_bytes(&genesis));
    genesis.community_id = CommunityId(*hasher.finalize().as_bytes());
    genesis.validate().map_err(|error| error.to_string())?;
    Ok(genesis)
}

/// Every field of a genesis, units in the names: what `genesis show`
/// prints and `GET /v1/genesis` serves (with the canonical bytes).
pub fn summary(genesis: &Genesis) -> GenesisSummary {
    GenesisSummary::from(genesis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        options: GenesisOptions,
    }

    fn options(extra: &[&str]) -> GenesisOptions {
        let key = "11".repeat(32);
        let registrar = "22".repeat(32);
        let mut args =
            vec!["genesis", "--name", "Sunny Street", "--validator", &key, "--registrar", &registrar];
        args.extend_from_slice(extra);
        Command::try_parse_from(args).unwrap().options
    }

    #[test]
    fn prices_are_exact_and_bad_ones_are_named() {
        assert_eq!(parse_price_micro("p", "0.11"), Ok(110_000));
        assert_eq!(parse_price_micro("p", "1.000001"), Ok(1_000_001));
        assert!(parse_price_micro("p", "0.1234567").unwrap_err().contains("more than 6 decimals"));
        assert!(parse_price_micro("p", "-1").unwrap_err().contains("negative"));
        assert!(parse_price_micro("p", "eleven").unwrap_err().contains("not a decimal"));
    }

    #[test]
    fn a_genesis_is_valid_aligned_and_names_its_community() {
        let genesis = build(&options(&["--k", "0.25", "--network-fee", "0.02"]), 1_000_123_456).unwrap();
        assert_eq!(genesis.genesis_time_ms, 1_000_123_456 / 900_000 * 900_000);
        assert_eq!(genesis.market.k_thousandths, 250);
        assert_eq!(genesis.tariffs.network_fee_micro_per_kwh, 20_000);
        let mut renamed = options(&["--k", "0.25", "--network-fee", "0.02"]);
        renamed.name = "Shady Lane".into();
        assert_ne!(build(&renamed, 1_000_123_456).unwrap().community_id, genesis.community_id);
        assert_eq!(summary(&genesis).network_fee_micro_per_kwh, 20_000);
        assert_eq!(summary(&genesis).genesis_hash, genesis.hash());
    }

    #[test]
    fn bad_choices_are_refused_with_a_reason() {
        let error = build(&options(&["--validator", "abc"]), 0).unwrap_err();
        assert!(error.contains("`abc` is not a 64-digit hex public key"), "{error}");
        let error = build(&options(&["--price-floor", "2", "--price-cap", "1"]), 0).unwrap_err();
        assert!(error.contains("floor"), "{error}");
        let key = "11".repeat(32);
        let error = build(&options(&["--validator", &format!("{key}:x")]), 0).unwrap_err();
        assert!(error.contains("voting power"), "{error}");
        for k in ["1.5", "1.001", "0.0005", "-0.5"] {
            let error = build(&options(&[&format!("--k={k}")]), 0).unwrap_err();
            assert!(error.contains("must be in [0, 1] with at most 3 decimals"), "{k}: {error}");
        }
        let error = build(&options(&["--k", "half"]), 0).unwrap_err();
        assert!(error.contains("is not a number in [0, 1]"), "{error}");
        assert_eq!(build(&options(&["--k", "1"]), 0).map(|genesis| genesis.market.k_thousandths), Ok(1_000));
    }
}
