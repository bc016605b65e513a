//! `gridshare-node genesis new` and `genesis show`: a community's genesis
//! from the operator's choices (validators, registrars, market rules and
//! tariffs, with prices as exact decimals), given as flags or as a
//! reviewable TOML file (`CommunityFile`), and its summary as JSON or that
//! same TOML, which `genesis new --from` turns back into the same genesis.

use gridshare_api::GenesisSummary;
use gridshare_api::decimal::{DecimalError, format_scaled_short, parse_scaled};
use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::genesis::{
    Genesis, GenesisError, MarketParams, Mechanism, Tariffs, Validator, Zone, ZoneLimits,
};
use gridshare_ledger::ids::{CommunityId, PublicKey};
use serde::{Deserialize, Serialize};

/// What `genesis new` takes when a flag (or a community file's field) is
/// not given: one definition for both.
pub mod defaults {
    pub const CURRENCY: &str = "EUR";
    pub const INTERVAL_MS: u64 = 900_000;
    pub const GATE_CLOSURE_LEAD_MS: u64 = 300_000;
    pub const SETTLEMENT_DELAY_MS: u64 = 900_000;
    pub const OFFER_HORIZON_INTERVALS: u64 = 96;
    pub const ATTESTATION_MAX_AGE_INTERVALS: u64 = 8;
    pub const MECHANISM: &str = "uniform";
    pub const K: &str = "0.5";
    pub const PRICE_FLOOR: &str = "0";
    pub const PRICE_CAP: &str = "1";
    pub const IMPORT_TARIFF: &str = "0.30";
    pub const FEED_IN_TARIFF: &str = "0.08";
    pub const NETWORK_FEE: &str = "0.01";
    pub const MAX_OPEN_OFFERS_PER_ACCOUNT: u32 = 16;
    pub const MAX_OFFERS_PER_INTERVAL: u32 = 10_000;
    pub const MAX_TRANSACTIONS_PER_BLOCK: u32 = 10_000;
    pub const METER_TOLERANCE_PERMILLE: u16 = 50;
    pub const BLOCK_TIME_TOLERANCE_MS: u64 = 2_000;
    /// A validator's voting power when none is named.
    pub const VOTING_POWER: u64 = 1;
    /// The one zone of a community that names none, without limits.
    pub const ZONE: &str = "main";
}

/// The operator's choices for a new community. Prices are in currency per
/// kWh with at most six decimals.
#[derive(Clone, Debug, clap::Args)]
pub struct GenesisOptions {
    /// The community's name (1 to 64 bytes).
    #[arg(long, required_unless_present = "from", default_value = "")]
    pub name: String,
    /// ISO 4217 currency code.
    #[arg(long, default_value = defaults::CURRENCY)]
    pub currency: String,
    /// A validator's public key (64 hex digits), optionally with its voting
    /// power as KEY:POWER (default 1). Repeat for each validator.
    #[arg(long = "validator", value_name = "KEY[:POWER]", required_unless_present = "from")]
    pub validators: Vec<String>,
    /// A registrar's public key. Repeat for each registrar.
    #[arg(long = "registrar", value_name = "KEY", required_unless_present = "from")]
    pub registrars: Vec<String>,
    /// A zone (feeder or substation), optionally with the limits on its net
    /// import and export per interval in Wh that hold where the DSO sets
    /// none. Repeat for each zone, in order (default: one zone `main`
    /// without limits).
    #[arg(long = "zone", value_name = "NAME[:IMPORT_WH_MAX:EXPORT_WH_MAX]")]
    pub zones: Vec<String>,
    /// A DSO's public key: who may set zone limits. Repeat for each.
    #[arg(long = "dso", value_name = "KEY")]
    pub dsos: Vec<String>,
    /// Start of interval 0, in ms since the Unix epoch (default: now, rounded
    /// down to a whole interval).
    #[arg(long, value_name = "MS")]
    pub genesis_time_ms: Option<u64>,
    /// Length of a delivery interval.
    #[arg(long, value_name = "MS", default_value_t = defaults::INTERVAL_MS)]
    pub interval_ms: u64,
    /// Gate closure of an interval is this long before its start.
    #[arg(long, value_name = "MS", default_value_t = defaults::GATE_CLOSURE_LEAD_MS)]
    pub gate_closure_lead_ms: u64,
    /// An interval settles this long after its end (time for meter readings).
    #[arg(long, value_name = "MS", default_value_t = defaults::SETTLEMENT_DELAY_MS)]
    pub settlement_delay_ms: u64,
    /// How many intervals ahead offers may be made.
    #[arg(long, default_value_t = defaults::OFFER_HORIZON_INTERVALS)]
    pub offer_horizon_intervals: u64,
    /// How many intervals old an offer's meter attestation may be.
    #[arg(long, default_value_t = defaults::ATTESTATION_MAX_AGE_INTERVALS)]
    pub attestation_max_age_intervals: u64,
    /// uniform (pay-as-clear) or pay-as-bid.
    #[arg(long, default_value = defaults::MECHANISM, value_parser = ["uniform", "pay-as-bid"])]
    pub mechanism: String,
    /// Where the uniform price lies between the marginal ask (0) and bid (1).
    #[arg(long, default_value = defaults::K)]
    pub k: String,
    /// The lowest price an offer may name, per kWh.
    #[arg(long, default_value = defaults::PRICE_FLOOR)]
    pub price_floor: String,
    /// The highest price an offer may name, per kWh.
    #[arg(long, default_value = defaults::PRICE_CAP)]
    pub price_cap: String,
    /// What the grid charges per kWh imported beyond trades.
    #[arg(long, default_value = defaults::IMPORT_TARIFF)]
    pub import_tariff: String,
    /// What the grid pays per kWh fed in beyond trades.
    #[arg(long, default_value = defaults::FEED_IN_TARIFF)]
    pub feed_in_tariff: String,
    /// The network fee buyers pay per traded kWh.
    #[arg(long, default_value = defaults::NETWORK_FEE)]
    pub network_fee: String,
    #[arg(long, default_value_t = defaults::MAX_OPEN_OFFERS_PER_ACCOUNT)]
    pub max_open_offers_per_account: u32,
    #[arg(long, default_value_t = defaults::MAX_OFFERS_PER_INTERVAL)]
    pub max_offers_per_interval: u32,
    #[arg(long, default_value_t = defaults::MAX_TRANSACTIONS_PER_BLOCK)]
    pub max_transactions_per_block: u32,
    /// How far a meter may exceed its registered power, per mille (0 to
    /// 1000): readings that rise faster are refused.
    #[arg(long, value_name = "PER_MILLE", default_value_t = defaults::METER_TOLERANCE_PERMILLE)]
    pub meter_tolerance_permille: u16,
    /// δ, the clock synchronisation the community needs: a validator
    /// refuses a proposal whose time is more than this off its own clock
    /// (1 to 3600000).
    #[arg(long, value_name = "MS", default_value_t = defaults::BLOCK_TIME_TOLERANCE_MS)]
    pub block_time_tolerance_ms: u64,
}

/// Why an operator's choices make no genesis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisOptionsError {
    /// One option's value, named with what is wrong with it.
    #[error("{option}: `{text}` {problem}")]
    BadValue { option: &'static str, text: String, problem: &'static str },
    #[error("the interval length must be positive")]
    ZeroInterval,
    /// The values parse, but together they are no valid genesis.
    #[error(transparent)]
    Invalid(#[from] GenesisError),
}

fn bad(option: &'static str, text: &str, problem: &'static str) -> GenesisOptionsError {
    GenesisOptionsError::BadValue { option, text: text.to_string(), problem }
}

/// Decimal places of a price per kWh written in currency, stored in
/// micro-currency.
const PRICE_DECIMALS: u32 = 6;
/// Decimal places of `k` written as a fraction, stored in thousandths.
const K_DECIMALS: u32 = 3;

/// A price in currency per kWh as micro-currency per kWh, exactly.
pub fn parse_price_micro(option: &'static str, text: &str) -> Result<u64, GenesisOptionsError> {
    parse_scaled(text, PRICE_DECIMALS).map_err(|error| match error {
        DecimalError::NotANumber => bad(option, text, "is not a decimal number such as 0.11"),
        DecimalError::TooPrecise { .. } => bad(option, text, "has more than 6 decimals"),
        DecimalError::Negative => bad(option, text, "is negative"),
        DecimalError::TooLarge => bad(option, text, "is too large"),
    })
}

fn parse_k(text: &str) -> Result<u16, GenesisOptionsError> {
    let thousandths = parse_scaled(text, K_DECIMALS).map_err(|error| match error {
        DecimalError::NotANumber => bad("k", text, "is not a number in [0, 1]"),
        _ => bad("k", text, "must be in [0, 1] with at most 3 decimals"),
    })?;
    u16::try_from(thousandths)
        .ok()
        .filter(|&thousandths| thousandths <= 1_000)
        .ok_or_else(|| bad("k", text, "must be in [0, 1] with at most 3 decimals"))
}

fn parse_key(option: &'static str, text: &str) -> Result<PublicKey, GenesisOptionsError> {
    text.parse::<PublicKey>().map_err(|_| bad(option, text, "is not a 64-digit hex public key"))
}

fn parse_validator(text: &str) -> Result<Validator, GenesisOptionsError> {
    let (key, power) = match text.split_once(':') {
        Some((key, power)) => {
            let power = power
                .parse::<u64>()
                .map_err(|_| bad("validator", text, "has a voting power that is not a positive integer"))?;
            (key, power)
        }
        None => (text, defaults::VOTING_POWER),
    };
    Ok(Validator { key: parse_key("validator", key)?, voting_power: power })
}

/// A zone as `--zone` names it: `NAME` (no limits) or
/// `NAME:IMPORT_WH_MAX:EXPORT_WH_MAX`.
fn parse_zone(text: &str) -> Result<Zone, GenesisOptionsError> {
    let mut parts = text.split(':');
    let name = parts.next().unwrap_or_default().to_string();
    let limits = match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => ZoneLimits::OPEN,
        (Some(import), Some(export), None) => {
            let wh = |value: &str| {
                value
                    .parse::<u64>()
                    .map_err(|_| bad("zone", text, "has a limit that is not a whole number of Wh"))
            };
            ZoneLimits { import_wh_max: wh(import)?, export_wh_max: wh(export)? }
        }
        _ => return Err(bad("zone", text, "is not NAME or NAME:IMPORT_WH_MAX:EXPORT_WH_MAX")),
    };
    Ok(Zone { name, limits })
}

/// The genesis of `options`, with `now_ms` as the default genesis time. The
/// community id is the hash of everything else, so two communities differ.
pub fn build(options: &GenesisOptions, now_ms: u64) -> Result<Genesis, GenesisOptionsError> {
    if options.interval_ms == 0 {
        return Err(GenesisOptionsError::ZeroInterval);
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
        mechanism: match options.mechanism.parse::<gridshare_api::Mechanism>() {
            Ok(mechanism) => Mechanism::from(mechanism),
            Err(_) => return Err(bad("mechanism", &options.mechanism, "is not uniform or pay-as-bid")),
        },
        k_thousandths: parse_k(&options.k)?,
        max_open_offers_per_account: options.max_open_offers_per_account,
        max_offers_per_interval: options.max_offers_per_interval,
        max_transactions_per_block: options.max_transactions_per_block,
        meter_tolerance_permille: options.meter_tolerance_permille,
        block_time_tolerance_ms: options.block_time_tolerance_ms,
    };
    let validators = options.validators.iter().map(|text| parse_validator(text)).collect::<Result<_, _>>()?;
    let registrars =
        options.registrars.iter().map(|text| parse_key("registrar", text)).collect::<Result<_, _>>()?;
    let zones = if options.zones.is_empty() {
        vec![Zone { name: defaults::ZONE.into(), limits: ZoneLimits::OPEN }]
    } else {
        options.zones.iter().map(|text| parse_zone(text)).collect::<Result<_, _>>()?
    };
    let dsos = options.dsos.iter().map(|text| parse_key("dso", text)).collect::<Result<_, _>>()?;
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
        zones,
        dsos,
    };
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"gridshare/community-id\0");
    hasher.update(&to_bytes(&genesis));
    genesis.community_id = CommunityId(*hasher.finalize().as_bytes());
    genesis.validate()?;
    Ok(genesis)
}

/// A community as an operator writes it for review (`genesis new --from`,
/// `genesis show --toml`): the flags of `genesis new` as fields, prices and
/// `k` as decimal strings so that they stay exact. Unknown fields are
/// refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommunityFile {
    pub name: String,
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Start of interval 0 in ms since the Unix epoch (default: now,
    /// rounded down to a whole interval; `genesis show --toml` names it).
    pub genesis_time_ms: Option<u64>,
    pub market: MarketFile,
    pub tariffs: TariffsFile,
    pub validators: Vec<ValidatorFile>,
    pub registrars: Vec<String>,
    /// The zones in order (default: one zone `main` without limits).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<ZoneFile>,
    /// The DSOs' keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dsos: Vec<String>,
}

/// A zone in a `CommunityFile`: its name and, optionally, the limits on its
/// net import and export per interval in Wh (absent: no limit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneFile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_wh_max: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_wh_max: Option<u64>,
}

/// The market's rules in a `CommunityFile`; absent fields take the
/// defaults of `genesis new`'s flags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketFile {
    pub interval_ms: u64,
    pub gate_closure_lead_ms: u64,
    pub settlement_delay_ms: u64,
    pub offer_horizon_intervals: u64,
    pub attestation_max_age_intervals: u64,
    /// `uniform` or `pay-as-bid`.
    pub mechanism: String,
    pub k: String,
    pub price_floor: String,
    pub price_cap: String,
    pub max_open_offers_per_account: u32,
    pub max_offers_per_interval: u32,
    pub max_transactions_per_block: u32,
    pub meter_tolerance_permille: u16,
    pub block_time_tolerance_ms: u64,
}

impl Default for MarketFile {
    fn default() -> MarketFile {
        MarketFile {
            interval_ms: defaults::INTERVAL_MS,
            gate_closure_lead_ms: defaults::GATE_CLOSURE_LEAD_MS,
            settlement_delay_ms: defaults::SETTLEMENT_DELAY_MS,
            offer_horizon_intervals: defaults::OFFER_HORIZON_INTERVALS,
            attestation_max_age_intervals: defaults::ATTESTATION_MAX_AGE_INTERVALS,
            mechanism: defaults::MECHANISM.into(),
            k: defaults::K.into(),
            price_floor: defaults::PRICE_FLOOR.into(),
            price_cap: defaults::PRICE_CAP.into(),
            max_open_offers_per_account: defaults::MAX_OPEN_OFFERS_PER_ACCOUNT,
            max_offers_per_interval: defaults::MAX_OFFERS_PER_INTERVAL,
            max_transactions_per_block: defaults::MAX_TRANSACTIONS_PER_BLOCK,
            meter_tolerance_permille: defaults::METER_TOLERANCE_PERMILLE,
            block_time_tolerance_ms: defaults::BLOCK_TIME_TOLERANCE_MS,
        }
    }
}

/// The tariffs in currency per kWh, as decimal strings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TariffsFile {
    pub import: String,
    pub feed_in: String,
    pub network_fee: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorFile {
    pub key: String,
    #[serde(default = "default_voting_power")]
    pub voting_power: u64,
}

fn default_currency() -> String {
    defaults::CURRENCY.into()
}

fn default_voting_power() -> u64 {
    defaults::VOTING_POWER
}

/// Why a community file makes no genesis.
#[derive(Debug, thiserror::Error)]
pub enum CommunityFileError {
    /// Not TOML, an unknown field, a value of the wrong type: the TOML
    /// error names the field and the line.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error(transparent)]
    Options(#[from] GenesisOptionsError),
}

impl CommunityFile {
    /// Parses a community file's text.
    pub fn parse(text: &str) -> Result<CommunityFile, CommunityFileError> {
        Ok(toml::from_str(text)?)
    }

    /// The same choices as `genesis new`'s flags.
    pub fn options(&self) -> GenesisOptions {
        let market = &self.market;
        GenesisOptions {
            name: self.name.clone(),
            currency: self.currency.clone(),
            validators: self
                .validators
                .iter()
                .map(|validator| format!("{}:{}", validator.key, validator.voting_power))
                .collect(),
            registrars: self.registrars.clone(),
            zones: self
                .zones
                .iter()
                .map(|zone| match (zone.import_wh_max, zone.export_wh_max) {
                    (None, None) => zone.name.clone(),
                    (import, export) => {
                        format!("{}:{}:{}", zone.name, import.unwrap_or(u64::MAX), export.unwrap_or(u64::MAX))
                    }
                })
                .collect(),
            dsos: self.dsos.clone(),
            genesis_time_ms: self.genesis_time_ms,
            interval_ms: market.interval_ms,
            gate_closure_lead_ms: market.gate_closure_lead_ms,
            settlement_delay_ms: market.settlement_delay_ms,
            offer_horizon_intervals: market.offer_horizon_intervals,
            attestation_max_age_intervals: market.attestation_max_age_intervals,
            mechanism: market.mechanism.clone(),
            k: market.k.clone(),
            price_floor: market.price_floor.clone(),
            price_cap: market.price_cap.clone(),
            import_tariff: self.tariffs.import.clone(),
            feed_in_tariff: self.tariffs.feed_in.clone(),
            network_fee: self.tariffs.network_fee.clone(),
            max_open_offers_per_account: market.max_open_offers_per_account,
            max_offers_per_interval: market.max_offers_per_interval,
            max_transactions_per_block: market.max_transactions_per_block,
            meter_tolerance_permille: market.meter_tolerance_permille,
            block_time_tolerance_ms: market.block_time_tolerance_ms,
        }
    }

    /// The file that `genesis new --from` turns back into `genesis`.
    pub fn of(genesis: &Genesis) -> CommunityFile {
        let price = |micro: u64| format_scaled_short(micro, PRICE_DECIMALS);
        let market = &genesis.market;
        CommunityFile {
            name: genesis.name.clone(),
            currency: genesis.currency.clone(),
            genesis_time_ms: Some(genesis.genesis_time_ms),
            market: MarketFile {
                interval_ms: market.interval_length_ms,
                gate_closure_lead_ms: market.gate_closure_lead_ms,
                settlement_delay_ms: market.settlement_delay_ms,
                offer_horizon_intervals: market.offer_horizon_intervals,
                attestation_max_age_intervals: market.attestation_max_age_intervals,
                mechanism: gridshare_api::Mechanism::from(market.mechanism).as_str().to_string(),
                k: format_scaled_short(u64::from(market.k_thousandths), K_DECIMALS),
                price_floor: price(market.price_floor_micro_per_kwh),
                price_cap: price(market.price_cap_micro_per_kwh),
                max_open_offers_per_account: market.max_open_offers_per_account,
                max_offers_per_interval: market.max_offers_per_interval,
                max_transactions_per_block: market.max_transactions_per_block,
                meter_tolerance_permille: market.meter_tolerance_permille,
                block_time_tolerance_ms: market.block_time_tolerance_ms,
            },
            tariffs: TariffsFile {
                import: price(genesis.tariffs.grid_import_micro_per_kwh),
                feed_in: price(genesis.tariffs.grid_feed_in_micro_per_kwh),
                network_fee: price(genesis.tariffs.network_fee_micro_per_kwh),
            },
            validators: genesis
                .validators
                .iter()
                .map(|validator| ValidatorFile {
                    key: validator.key.to_string(),
                    voting_power: validator.voting_power,
                })
                .collect(),
            registrars: genesis.registrars.iter().map(ToString::to_string).collect(),
            zones: genesis
                .zones
                .iter()
                .map(|zone| {
                    let limit = |wh: u64| (wh != u64::MAX).then_some(wh);
                    ZoneFile {
                        name: zone.name.clone(),
                        import_wh_max: limit(zone.limits.import_wh_max),
                        export_wh_max: limit(zone.limits.export_wh_max),
                    }
                })
                .collect(),
            dsos: genesis.dsos.iter().map(ToString::to_string).collect(),
        }
    }

    /// The file as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a community file's fields are all TOML")
    }
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
        /// As `genesis new --from`, which the options name.
        #[arg(long)]
        from: Option<String>,
        #[command(flatten)]
        options: GenesisOptions,
    }

    fn options(extra: &[&str]) -> GenesisOptions {
        // Real keys: a genesis refuses bytes that are not a point of prime
        // order (docs/PROTOCOL.md §3.3).
        let key = gridshare_ledger::ids::Keypair::from_seed([1; 32]).public().to_string();
        let registrar = gridshare_ledger::ids::Keypair::from_seed([2; 32]).public().to_string();
        let mut args =
            vec!["genesis", "--name", "Sunny Street", "--validator", &key, "--registrar", &registrar];
        args.extend_from_slice(extra);
        Command::try_parse_from(args).unwrap().options
    }

    #[test]
    fn prices_are_exact_and_bad_ones_are_named() {
        assert_eq!(parse_price_micro("p", "0.11"), Ok(110_000));
        assert_eq!(parse_price_micro("p", "1.000001"), Ok(1_000_001));
        let error = parse_price_micro("p", "0.1234567").unwrap_err();
        assert_eq!(error.to_string(), "p: `0.1234567` has more than 6 decimals");
        assert!(parse_price_micro("p", "-1").unwrap_err().to_string().contains("negative"));
        assert!(parse_price_micro("p", "eleven").unwrap_err().to_string().contains("not a decimal"));
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
        // The physics tolerance and the clock tolerance default to 5 % and 2 s.
        assert_eq!(summary(&genesis).meter_tolerance_permille, 50);
        assert_eq!(summary(&genesis).block_time_tolerance_ms, 2_000);
        let chosen = options(&["--meter-tolerance-permille", "100", "--block-time-tolerance-ms", "500"]);
        let chosen = build(&chosen, 1_000_123_456).unwrap();
        assert_eq!(
            (chosen.market.meter_tolerance_permille, chosen.market.block_time_tolerance_ms),
            (100, 500)
        );
    }

    #[test]
    fn a_genesis_comes_back_from_the_community_file_it_prints() {
        let flags = options(&["--k", "0.25", "--network-fee", "0.02", "--mechanism", "pay-as-bid"]);
        let genesis = build(&flags, 1_000_123_456).unwrap();
        let text = CommunityFile::of(&genesis).to_toml();
        assert!(text.contains("k = \"0.25\"") && text.contains("network_fee = \"0.02\""), "{text}");
        let again = build(&CommunityFile::parse(&text).unwrap().options(), 0).unwrap();
        assert_eq!(again, genesis);
        // The example in the repository makes a valid genesis.
        let example = include_str!("../../examples/community.toml");
        let example = build(&CommunityFile::parse(example).unwrap().options(), 0).unwrap();
        assert_eq!((example.name.as_str(), example.validators.len()), ("Sunny Street", 2));
        assert_eq!(example.tariffs.grid_import_micro_per_kwh, 300_000);
        let feeder = ZoneLimits { import_wh_max: 25_000, export_wh_max: 25_000 };
        assert_eq!(
            example.zones,
            vec![
                Zone { name: "feeder-1".into(), limits: ZoneLimits::OPEN },
                Zone { name: "feeder-2".into(), limits: feeder },
            ]
        );
        // Zones and DSOs as flags come back from the file too.
        let dso = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
        let flags = options(&["--zone", "north", "--zone", "south:1000:0", "--dso", dso]);
        let genesis = build(&flags, 0).unwrap();
        assert_eq!(genesis.zones[1].limits, ZoneLimits { import_wh_max: 1_000, export_wh_max: 0 });
        assert_eq!(genesis.dsos, vec![dso.parse().unwrap()]);
        let text = CommunityFile::of(&genesis).to_toml();
        assert_eq!(build(&CommunityFile::parse(&text).unwrap().options(), 0).unwrap(), genesis);
        // Without zones, one zone `main` without limits.
        assert_eq!(
            build(&options(&[]), 0).unwrap().zones,
            vec![Zone { name: "main".into(), limits: ZoneLimits::OPEN }]
        );
    }

    #[test]
    fn bad_zones_are_refused_with_a_reason() {
        for (zone, problem) in [
            ("south:1000", "is not NAME or NAME:IMPORT_WH_MAX:EXPORT_WH_MAX"),
            ("south:1000:lots", "has a limit that is not a whole number of Wh"),
            ("a:1:2:3", "is not NAME or NAME:IMPORT_WH_MAX:EXPORT_WH_MAX"),
        ] {
            assert_eq!(build(&options(&["--zone", zone]), 0).unwrap_err(), bad("zone", zone, problem));
        }
        let twice = build(&options(&["--zone", "north", "--zone", "north"]), 0).unwrap_err();
        assert!(twice.to_string().contains("a zone is listed twice"), "{twice}");
        let unnamed = build(&options(&["--zone", ""]), 0).unwrap_err();
        assert!(unnamed.to_string().contains("a zone's name must be 1 to 64 bytes"), "{unnamed}");
    }

    #[test]
    fn a_bad_community_file_is_refused_naming_the_field() {
        let file = CommunityFile::of(&build(&options(&[]), 0).unwrap()).to_toml();
        let cases = [
            (file.replace("name =", "nmae ="), "nmae"),
            (file.replace("import = \"0.3\"", "import = 0.3"), "import"),
            (file.replace("k = \"0.5\"", "k = \"1.5\""), "k: `1.5`"),
            (file.replace("[tariffs]", "[tariffs]\nvat = \"0.2\""), "vat"),
        ];
        for (text, named) in cases {
            let error = match CommunityFile::parse(&text) {
                Err(error) => error.to_string(),
                Ok(file) => build(&file.options(), 0).unwrap_err().to_string(),
            };
            assert!(error.contains(named), "expected {named:?} in {error}");
        }
    }

    #[test]
    fn bad_choices_are_refused_with_a_reason() {
        let error = build(&options(&["--validator", "abc"]), 0).unwrap_err();
        assert_eq!(error, bad("validator", "abc", "is not a 64-digit hex public key"));
        assert_eq!(error.to_string(), "validator: `abc` is not a 64-digit hex public key");
        let error = build(&options(&["--price-floor", "2", "--price-cap", "1"]), 0).unwrap_err();
        assert!(matches!(error, GenesisOptionsError::Invalid(_)), "{error:?}");
        assert!(error.to_string().contains("floor"), "{error}");
        let key = "11".repeat(32);
        let error = build(&options(&["--validator", &format!("{key}:x")]), 0).unwrap_err();
        assert!(error.to_string().contains("voting power"), "{error}");
        // 01 00…00 is the identity, a point of small order.
        let identity = format!("01{}", "00".repeat(31));
        let error = build(&options(&["--validator", &identity]), 0).unwrap_err();
        assert!(error.to_string().contains(&format!("validator {identity} is not a valid key")), "{error}");
        for k in ["1.5", "1.001", "0.0005", "-0.5"] {
            let error = build(&options(&[&format!("--k={k}")]), 0).unwrap_err();
            assert!(error.to_string().contains("must be in [0, 1] with at most 3 decimals"), "{k}: {error}");
        }
        let error = build(&options(&["--k", "half"]), 0).unwrap_err();
        assert!(error.to_string().contains("is not a number in [0, 1]"), "{error}");
        assert_eq!(build(&options(&["--k", "1"]), 0).map(|genesis| genesis.market.k_thousandths), Ok(1_000));
        assert_eq!(build(&options(&["--interval-ms", "0"]), 0), Err(GenesisOptionsError::ZeroInterval));
        let error = build(&options(&["--meter-tolerance-permille", "1001"]), 0).unwrap_err();
        assert!(error.to_string().contains("meter tolerance"), "{error}");
        let error = build(&options(&["--block-time-tolerance-ms", "0"]), 0).unwrap_err();
        assert!(error.to_string().contains("block time tolerance"), "{error}");
    }
}
