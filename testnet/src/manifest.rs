//! The testnet manifest (TOML): the community's market rules, its zones,
//! its households and their mix of PV, batteries and EVs, the run's length
//! and the perturbations, checked field by field into a [`Manifest`]. Every
//! error names the field it is about.

use std::fmt;
use std::path::Path;

/// The auction mechanism of the community, as the API and `genesis new` name it.
pub use gridshare_api::Mechanism;
use gridshare_api::decimal::{self, DecimalError};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// The most households one manifest may ask for.
pub const HOUSEHOLDS_MAX: u32 = 10_000;
/// Validators in one testnet: a community's validator set is small (the
/// operator, the DSO, a few representatives), and each is a process here.
pub const VALIDATORS_MAX: u32 = 10;
/// The most offers a household makes per interval (a price ladder).
pub const OFFERS_PER_INTERVAL_MAX: u32 = 32;
/// The most a perturbation may skew a node's clock, in either direction.
pub const CLOCK_SKEW_MS_MAX: i64 = 600_000;
/// The fastest flood, in invalid transactions per second.
pub const FLOOD_RATE_MAX: u32 = 1_000;
/// The largest manifest file read.
const MANIFEST_BYTES_MAX: u64 = 1 << 20;

/// Why a manifest cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read the manifest {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("the manifest {path} is larger than {MANIFEST_BYTES_MAX} bytes")]
    TooLarge { path: String },
    /// TOML syntax, a missing or unknown field, or a value of the wrong type;
    /// the message names the field, the line and the column.
    #[error("{0}")]
    Parse(String),
    #[error("`{field}`: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError::Invalid { field: field.into(), message: message.into() }
}

/// A fault injected at `at_s` seconds after trading starts.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Perturbation {
    /// SIGKILL, then a restart with the same data directory and addresses
    /// after `down_s` seconds.
    Kill { at_s: u64, node: String, down_s: u64 },
    /// SIGSTOP, then SIGCONT after `duration_s` seconds.
    Pause { at_s: u64, node: String, duration_s: u64 },
    /// Cut off from every peer for `duration_s` seconds
    /// (`POST /v1/admin/isolate`), then it redials its bootstrap peers.
    Disconnect { at_s: u64, node: String, duration_s: u64 },
    /// The node runs with its clock `skew_ms` off (`run --clock-skew-ms`):
    /// from the start if `at_s` is 0, else restarted with it at `at_s`; if
    /// `duration_s` is given, restarted with a correct clock after it.
    ClockSkew {
        at_s: u64,
        node: String,
        skew_ms: i64,
        #[serde(default)]
        duration_s: Option<u64>,
    },
    /// Household `household` submits invalid transactions (garbage, bad
    /// signatures, replays) at `rate_per_s` for `duration_s` seconds.
    Flood { at_s: u64, household: u32, duration_s: u64, rate_per_s: u32 },
    /// The DSO limits `zone` (`SetZoneLimits`) for `intervals` intervals
    /// from the first still open when the transaction reaches a block.
    ZoneLimits { at_s: u64, zone: String, import_wh_max: u64, export_wh_max: u64, intervals: u32 },
}

impl Perturbation {
    pub fn at_s(&self) -> u64 {
        match self {
            Perturbation::Kill { at_s, .. }
            | Perturbation::Pause { at_s, .. }
            | Perturbation::Disconnect { at_s, .. }
            | Perturbation::ClockSkew { at_s, .. }
            | Perturbation::Flood { at_s, .. }
            | Perturbation::ZoneLimits { at_s, .. } => *at_s,
        }
    }

    /// When the fault is over, in seconds after trading starts.
    pub fn end_s(&self) -> u64 {
        match self {
            Perturbation::Kill { at_s, down_s: span, .. }
            | Perturbation::Pause { at_s, duration_s: span, .. }
            | Perturbation::Disconnect { at_s, duration_s: span, .. }
            | Perturbation::Flood { at_s, duration_s: span, .. } => at_s.saturating_add(*span),
            Perturbation::ClockSkew { at_s, duration_s, .. } => at_s.saturating_add(duration_s.unwrap_or(0)),
            Perturbation::ZoneLimits { at_s, .. } => *at_s,
        }
    }

    /// The node it is applied to, if it is about a node.
    pub fn node(&self) -> Option<&str> {
        match self {
            Perturbation::Kill { node, .. }
            | Perturbation::Pause { node, .. }
            | Perturbation::Disconnect { node, .. }
            | Perturbation::ClockSkew { node, .. } => Some(node),
            Perturbation::Flood { .. } | Perturbation::ZoneLimits { .. } => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Perturbation::Kill { .. } => "kill",
            Perturbation::Pause { .. } => "pause",
            Perturbation::Disconnect { .. } => "disconnect",
            Perturbation::ClockSkew { .. } => "clock_skew",
            Perturbation::Flood { .. } => "flood",
            Perturbation::ZoneLimits { .. } => "zone_limits",
        }
    }
}

impl fmt::Display for Perturbation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Perturbation::Kill { at_s, node, down_s } => {
                write!(f, "at {at_s} s: kill {node}, restart after {down_s} s")
            }
            Perturbation::Pause { at_s, node, duration_s } => {
                write!(f, "at {at_s} s: pause {node} for {duration_s} s")
            }
            Perturbation::Disconnect { at_s, node, duration_s } => {
                write!(f, "at {at_s} s: disconnect {node} for {duration_s} s")
            }
            Perturbation::ClockSkew { at_s, node, skew_ms, duration_s } => {
                write!(f, "at {at_s} s: {node} runs with its clock {skew_ms} ms off")?;
                match duration_s {
                    Some(duration_s) => write!(f, " for {duration_s} s"),
                    None => Ok(()),
                }
            }
            Perturbation::Flood { at_s, household, duration_s, rate_per_s } => write!(
                f,
                "at {at_s} s: household {household} floods invalid transactions, {rate_per_s}/s for {duration_s} s"
            ),
            Perturbation::ZoneLimits { at_s, zone, import_wh_max, export_wh_max, intervals } => write!(
                f,
                "at {at_s} s: the DSO limits zone {zone} to {import_wh_max} Wh of import and {export_wh_max} Wh of export for {intervals} intervals"
            ),
        }
    }
}

// The households crate owns the tariffs as a household sees them and the
// profile mix, so that the testnet and the simulator run the same households.
pub use gridshare_households::{ProfileMix, Tariffs};

/// A checked manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    /// The seed when `--seed` is not given.
    pub seed: u64,
    pub validators: u32,
    pub households: u32,
    /// Household nodes; household `i` uses node `i % household_nodes`.
    pub household_nodes: u32,
    pub interval_ms: u64,
    pub gate_closure_lead_ms: u64,
    pub settlement_delay_ms: u64,
    pub mechanism: Mechanism,
    pub k_thousandths: u64,
    pub block_time_ms: u64,
    /// Intervals of trading.
    pub intervals: u64,
    pub offers_per_interval: u32,
    pub tariffs: Tariffs,
    pub profiles: ProfileMix,
    /// The grid's zones, in order; household `i` is in zone `i % zones`.
    pub zones: Vec<Zone>,
    pub perturbations: Vec<Perturbation>,
}

/// A zone of the manifest, with the limits of the genesis (none when
/// left out).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: String,
    #[serde(default)]
    pub import_wh_max: Option<u64>,
    #[serde(default)]
    pub export_wh_max: Option<u64>,
}

impl Zone {
    /// The zone as `gridshare-node genesis new --zone` takes it.
    pub fn flag(&self) -> String {
        match (self.import_wh_max, self.export_wh_max) {
            (None, None) => self.name.clone(),
            (import, export) => {
                format!("{}:{}:{}", self.name, import.unwrap_or(u64::MAX), export.unwrap_or(u64::MAX))
            }
        }
    }
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let display = path.display().to_string();
        let read = |error| ManifestError::Read { path: display.clone(), error };
        let length = std::fs::metadata(path).map_err(read)?.len();
        if length > MANIFEST_BYTES_MAX {
            return Err(ManifestError::TooLarge { path: display });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Manifest::parse(&text)
    }

    /// Parses and checks manifest text.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest =
            toml::from_str(text).map_err(|error| ManifestError::Parse(error.to_string()))?;
        raw.check()
    }

    /// The length of the trading phase in milliseconds.
    pub fn trading_ms(&self) -> u64 {
        self.intervals.saturating_mul(self.interval_ms)
    }

    /// The index, in `node_names()`, of the node household `household`
    /// uses: household nodes come after the validators, shared round robin.
    pub fn node_of_household(&self, household: u32) -> usize {
        (self.validators + household % self.household_nodes) as usize
    }

    /// The zone household `household` is in.
    pub fn zone_of_household(&self, household: u32) -> &str {
        &self.zones[household as usize % self.zones.len()].name
    }

    /// The names of the nodes: `validator-0`, then `household-0` ...
    pub fn node_names(&self) -> Vec<String> {
        let validators = (0..self.validators).map(|index| format!("validator-{index}"));
        let households = (0..self.household_nodes).map(|index| format!("household-{index}"));
        validators.chain(households).collect()
    }
}

/// A decimal number as written: a TOML string (`"0.30"`), integer or float.
/// A float is read back through its shortest decimal form, which is what
/// was written for any number with few decimals, so `0.3` is exactly 0.3.
#[derive(Clone, Debug, PartialEq, Eq)]
struct DecimalText(String);

impl<'de> Deserialize<'de> for DecimalText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<DecimalText, D::Error> {
        struct DecimalVisitor;
        impl Visitor<'_> for DecimalVisitor {
            type Value = DecimalText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal number such as 0.30 or \"0.30\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<DecimalText, E> {
                Ok(DecimalText(text.trim().to_string()))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<DecimalText, E> {
                Ok(DecimalText(value.to_string()))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<DecimalText, E> {
                Ok(DecimalText(value.to_string()))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<DecimalText, E> {
                Ok(DecimalText(format!("{value}")))
            }
        }
        deserializer.deserialize_any(DecimalVisitor)
    }
}

/// `text` as an integer number of 10^-`decimals` units, exactly
/// (`gridshare_api::decimal`): at most `decimals` decimals, not negative.
pub fn parse_decimal(field: &str, text: &str, decimals: u32) -> Result<u64, ManifestError> {
    decimal::parse_scaled(text, decimals).map_err(|error| {
        let why = match error {
            DecimalError::NotANumber => "is not a decimal number such as 0.25".to_string(),
            DecimalError::TooPrecise { decimals } => format!("has more than {decimals} decimals"),
            DecimalError::Negative => "is negative".to_string(),
            DecimalError::TooLarge => "is too large".to_string(),
        };
        invalid(field, format!("`{text}` {why}"))
    })
}

/// `units` of 10^-`decimals` as a decimal number, e.g. 300000 micro → `0.3`.
pub fn format_decimal(units: u64, decimals: u32) -> String {
    decimal::format_scaled_short(units, decimals)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: Option<String>,
    seed: Option<u64>,
    validators: u32,
    households: u32,
    household_nodes: Option<u32>,
    interval_ms: u64,
    gate_closure_lead_ms: u64,
    settlement_delay_ms: u64,
    #[serde(default)]
    mechanism: Mechanism,
    k: Option<DecimalText>,
    block_time_ms: u64,
    duration_s: Option<u64>,
    intervals: Option<u64>,
    offers_per_interval: Option<u32>,
    tariffs: RawTariffs,
    #[serde(default)]
    profiles: RawProfiles,
    #[serde(default)]
    zones: Vec<Zone>,
    #[serde(default)]
    perturbations: Vec<Perturbation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTariffs {
    import: DecimalText,
    feed_in: DecimalText,
    network_fee: DecimalText,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfiles {
    pv_share: Option<DecimalText>,
    battery_share: Option<DecimalText>,
    ev_share: Option<DecimalText>,
    cloudy_day_share: Option<DecimalText>,
    day_intervals: Option<u64>,
    start_hour: Option<u64>,
}

/// A price in micro-currency per kWh: at most 6 decimals and at most the
/// ledger's 1000 per kWh.
fn price(field: &str, text: &DecimalText) -> Result<u64, ManifestError> {
    let micro = parse_decimal(field, &text.0, 6)?;
    if micro > gridshare_ledger::genesis::PRICE_MAX_MICRO_PER_KWH {
        return Err(invalid(field, format!("`{}` is above the ledger's bound of 1000 per kWh", text.0)));
    }
    Ok(micro)
}

/// A share between 0 and 1 with at most 3 decimals, in per mille.
fn share(field: &str, text: Option<&DecimalText>, default: u64) -> Result<u64, ManifestError> {
    let Some(text) = text else { return Ok(default) };
    let per_mille = parse_decimal(field, &text.0, 3)?;
    if per_mille > 1_000 {
        return Err(invalid(field, format!("`{}` is a share: between 0 and 1", text.0)));
    }
    Ok(per_mille)
}

impl RawManifest {
    fn check(self) -> Result<Manifest, ManifestError> {
        if self.validators == 0 || self.validators > VALIDATORS_MAX {
            return Err(invalid(
                "validators",
                format!("must be 1 to {VALIDATORS_MAX}, not {}", self.validators),
            ));
        }
        if self.households == 0 || self.households > HOUSEHOLDS_MAX {
            return Err(invalid(
                "households",
                format!("must be 1 to {HOUSEHOLDS_MAX}, not {}", self.households),
            ));
        }
        let household_nodes = self.household_nodes.unwrap_or(self.households);
        if household_nodes == 0 || household_nodes > self.households {
            return Err(invalid(
                "household_nodes",
                format!("must be 1 to `households` ({}), not {household_nodes}", self.households),
            ));
        }
        if !(1_000..=3_600_000).contains(&self.interval_ms) {
            return Err(invalid(
                "interval_ms",
                format!("must be 1000 to 3600000 (meters and offers need time), not {}", self.interval_ms),
            ));
        }
        if self.gate_closure_lead_ms == 0 || self.gate_closure_lead_ms > 4 * self.interval_ms {
            return Err(invalid(
                "gate_closure_lead_ms",
                format!("must be positive and at most 4 intervals, not {}", self.gate_closure_lead_ms),
            ));
        }
        if self.settlement_delay_ms < 1_000 || self.settlement_delay_ms > 4 * self.interval_ms {
            return Err(invalid(
                "settlement_delay_ms",
                format!(
                    "must leave meters at least 1000 ms to report after an interval ends, and be at most 4 \
                     intervals; not {}",
                    self.settlement_delay_ms
                ),
            ));
        }
        if self.block_time_ms < 10 || self.block_time_ms > self.interval_ms / 4 {
            return Err(invalid(
                "block_time_ms",
                format!(
                    "must be 10 ms to a quarter of the interval ({} ms), not {}",
                    self.interval_ms / 4,
                    self.block_time_ms
                ),
            ));
        }
        let intervals = match (self.duration_s, self.intervals) {
            (Some(_), Some(_)) => {
                return Err(invalid("duration_s", "give either `duration_s` or `intervals`, not both"));
            }
            (None, None) => {
                return Err(invalid("duration_s", "give the run's length: `duration_s` or `intervals`"));
            }
            (Some(seconds), None) => {
                let intervals = seconds.saturating_mul(1_000) / self.interval_ms;
                if intervals < 2 {
                    return Err(invalid("duration_s", format!("{seconds} s is less than two intervals")));
                }
                intervals
            }
            (None, Some(intervals)) => {
                if intervals < 2 {
                    return Err(invalid("intervals", "at least 2 intervals"));
                }
                intervals
            }
        };
        if intervals > 100_000 {
            return Err(invalid("intervals", format!("{intervals} intervals is more than 100000")));
        }
        let offers_per_interval = self.offers_per_interval.unwrap_or(1);
        if offers_per_interval == 0 || offers_per_interval > OFFERS_PER_INTERVAL_MAX {
            return Err(invalid(
                "offers_per_interval",
                format!("must be 1 to {OFFERS_PER_INTERVAL_MAX}, not {offers_per_interval}"),
            ));
        }
        let k_thousandths = match &self.k {
            None => 500,
            Some(text) => {
                let k = parse_decimal("k", &text.0, 3)?;
                if k > 1_000 {
                    return Err(invalid("k", format!("`{}` must be between 0 and 1", text.0)));
                }
                k
            }
        };
        let tariffs = Tariffs {
            import_micro_per_kwh: price("tariffs.import", &self.tariffs.import)?,
            feed_in_micro_per_kwh: price("tariffs.feed_in", &self.tariffs.feed_in)?,
            network_fee_micro_per_kwh: price("tariffs.network_fee", &self.tariffs.network_fee)?,
        };
        if tariffs.feed_in_micro_per_kwh >= tariffs.import_micro_per_kwh {
            return Err(invalid(
                "tariffs.feed_in",
                format!(
                    "{} must be below the import tariff {}: otherwise nobody gains from trading",
                    format_decimal(tariffs.feed_in_micro_per_kwh, 6),
                    format_decimal(tariffs.import_micro_per_kwh, 6)
                ),
            ));
        }
        if tariffs.network_fee_micro_per_kwh >= tariffs.import_micro_per_kwh - tariffs.feed_in_micro_per_kwh {
            return Err(invalid(
                "tariffs.network_fee",
                "must be below the spread between the import and feed-in tariffs: otherwise no trade pays",
            ));
        }
        let raw = &self.profiles;
        let day_intervals = raw.day_intervals.unwrap_or(24);
        if !(4..=1_440).contains(&day_intervals) || 1_440 % day_intervals != 0 {
            return Err(invalid(
                "profiles.day_intervals",
                format!("must divide a day's 1440 minutes and be 4 to 1440, not {day_intervals}"),
            ));
        }
        let start_hour = raw.start_hour.unwrap_or(6);
        if start_hour > 23 {
            return Err(invalid("profiles.start_hour", format!("must be 0 to 23, not {start_hour}")));
        }
        let profiles = ProfileMix {
            pv_per_mille: share("profiles.pv_share", raw.pv_share.as_ref(), 500)?,
            battery_per_mille: share("profiles.battery_share", raw.battery_share.as_ref(), 250)?,
            ev_per_mille: share("profiles.ev_share", raw.ev_share.as_ref(), 250)?,
            cloudy_day_per_mille: share("profiles.cloudy_day_share", raw.cloudy_day_share.as_ref(), 300)?,
            day_intervals,
            start_hour,
        };
        let manifest = Manifest {
            name: self.name.unwrap_or_else(|| "Gridshare testnet".to_string()),
            seed: self.seed.unwrap_or(1),
            validators: self.validators,
            households: self.households,
            household_nodes,
            interval_ms: self.interval_ms,
            gate_closure_lead_ms: self.gate_closure_lead_ms,
            settlement_delay_ms: self.settlement_delay_ms,
            mechanism: self.mechanism,
            k_thousandths,
            block_time_ms: self.block_time_ms,
            intervals,
            offers_per_interval,
            tariffs,
            profiles,
            zones: if self.zones.is_empty() {
                vec![Zone { name: "main".into(), import_wh_max: None, export_wh_max: None }]
            } else {
                self.zones
            },
            perturbations: self.perturbations,
        };
        if manifest.name.is_empty() || manifest.name.len() > gridshare_ledger::genesis::NAME_LEN_MAX {
            return Err(invalid("name", "must be 1 to 64 bytes"));
        }
        check_zones(&manifest)?;
        check_perturbations(&manifest)?;
        Ok(manifest)
    }
}

fn check_zones(manifest: &Manifest) -> Result<(), ManifestError> {
    if manifest.zones.len() > gridshare_ledger::genesis::ZONES_MAX {
        return Err(invalid("zones", format!("at most {} zones", gridshare_ledger::genesis::ZONES_MAX)));
    }
    for (index, zone) in manifest.zones.iter().enumerate() {
        let name = &zone.name;
        if name.is_empty() || name.len() > gridshare_ledger::execute::TEXT_LEN_MAX || name.contains(':') {
            return Err(invalid(format!("zones[{index}].name"), "must be 1 to 64 bytes, without `:`"));
        }
        if manifest.zones[..index].iter().any(|other| other.name == *name) {
            return Err(invalid(format!("zones[{index}].name"), format!("zone `{name}` is listed twice")));
        }
    }
    Ok(())
}

fn check_perturbations(manifest: &Manifest) -> Result<(), ManifestError> {
    let names = manifest.node_names();
    let trading_s = manifest.trading_ms() / 1_000;
    for (index, perturbation) in manifest.perturbations.iter().enumerate() {
        let field = |name: &str| format!("perturbations[{index}].{name}");
        if let Some(node) = perturbation.node()
            && !names.iter().any(|name| name == node)
        {
            return Err(invalid(
                field("node"),
                format!(
                    "no node `{node}`: the nodes are validator-0 to validator-{} and household-0 to household-{}",
                    manifest.validators - 1,
                    manifest.household_nodes - 1
                ),
            ));
        }
        let span = match perturbation {
            Perturbation::Kill { down_s, .. } => Some(("down_s", *down_s)),
            Perturbation::Pause { duration_s, .. }
            | Perturbation::Disconnect { duration_s, .. }
            | Perturbation::Flood { duration_s, .. } => Some(("duration_s", *duration_s)),
            Perturbation::ClockSkew { duration_s, .. } => duration_s.map(|seconds| ("duration_s", seconds)),
            Perturbation::ZoneLimits { .. } => None,
        };
        if let Some((name, seconds)) = span
            && seconds == 0
        {
            return Err(invalid(field(name), "must be at least 1 second"));
        }
        if perturbation.end_s() >= trading_s {
            return Err(invalid(
                field("at_s"),
                format!(
                    "the fault must be over before trading ends at {trading_s} s (it ends at {} s), so the \
                     end checks see the community recovered",
                    perturbation.end_s()
                ),
            ));
        }
        match perturbation {
            Perturbation::ClockSkew { skew_ms, .. } if skew_ms.abs() > CLOCK_SKEW_MS_MAX => {
                return Err(invalid(field("skew_ms"), format!("must be within ±{CLOCK_SKEW_MS_MAX} ms")));
            }
            Perturbation::Flood { household, rate_per_s, .. } => {
                if *household >= manifest.households {
                    return Err(invalid(
                        field("household"),
                        format!("no household {household}: there are {}", manifest.households),
                    ));
                }
                if *rate_per_s == 0 || *rate_per_s > FLOOD_RATE_MAX {
                    return Err(invalid(field("rate_per_s"), format!("must be 1 to {FLOOD_RATE_MAX}")));
                }
            }
            Perturbation::ZoneLimits { zone, intervals, .. } => {
                if !manifest.zones.iter().any(|known| known.name == *zone) {
                    return Err(invalid(field("zone"), format!("no zone `{zone}` in `zones`")));
                }
                let max = gridshare_ledger::execute::ZONE_LIMIT_INTERVALS_MAX;
                if *intervals == 0 || *intervals > max {
                    return Err(invalid(field("intervals"), format!("must be 1 to {max}")));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
validators = 1
households = 3
interval_ms = 4000
gate_closure_lead_ms = 1000
settlement_delay_ms = 1500
block_time_ms = 200
intervals = 5

[tariffs]
import = 0.30
feed_in = "0.08"
network_fee = 0.01
"#;

    fn error_of(text: &str) -> String {
        Manifest::parse(text).expect_err("the manifest is invalid").to_string()
    }

    #[test]
    fn a_minimal_manifest_gets_defaults() {
        let manifest = Manifest::parse(MINIMAL).unwrap();
        assert_eq!(manifest.household_nodes, 3);
        assert_eq!(manifest.mechanism, Mechanism::Uniform);
        assert_eq!(manifest.k_thousandths, 500);
        assert_eq!(manifest.tariffs.import_micro_per_kwh, 300_000);
        assert_eq!(manifest.tariffs.feed_in_micro_per_kwh, 80_000);
        assert_eq!(manifest.tariffs.network_fee_micro_per_kwh, 10_000);
        assert_eq!(manifest.profiles.day_intervals, 24);
        assert_eq!(manifest.trading_ms(), 20_000);
        assert_eq!(manifest.node_names(), ["validator-0", "household-0", "household-1", "household-2"]);
    }

    #[test]
    fn every_perturbation_kind_parses() {
        let text = MINIMAL.replace("intervals = 5", "duration_s = 60");
        let text = format!(
            "{text}
[[perturbations]]
at_s = 10
kind = \"kill\"
node = \"validator-0\"
down_s = 5

[[perturbations]]
at_s = 20
kind = \"pause\"
node = \"household-1\"
duration_s = 3

[[perturbations]]
at_s = 25
kind = \"disconnect\"
node = \"household-2\"
duration_s = 4

[[perturbations]]
at_s = 0
kind = \"clock_skew\"
node = \"household-0\"
skew_ms = -1500

[[perturbations]]
at_s = 30
kind = \"flood\"
household = 2
duration_s = 5
rate_per_s = 50
"
        );
        let manifest = Manifest::parse(&text).unwrap();
        assert_eq!(manifest.intervals, 15);
        let kinds: Vec<&str> = manifest.perturbations.iter().map(Perturbation::kind).collect();
        assert_eq!(kinds, ["kill", "pause", "disconnect", "clock_skew", "flood"]);
        assert_eq!(
            manifest.perturbations[3],
            Perturbation::ClockSkew { at_s: 0, node: "household-0".into(), skew_ms: -1500, duration_s: None }
        );
    }

    #[test]
    fn validators_are_named_and_bounded() {
        let four = Manifest::parse(&MINIMAL.replace("validators = 1", "validators = 4")).unwrap();
        assert_eq!(
            &four.node_names()[..5],
            ["validator-0", "validator-1", "validator-2", "validator-3", "household-0"]
        );
        assert_eq!(four.node_names()[four.node_of_household(2)], "household-2");
        for count in [0, VALIDATORS_MAX + 1] {
            let error = error_of(&MINIMAL.replace("validators = 1", &format!("validators = {count}")));
            assert!(
                error.starts_with(&format!("`validators`: must be 1 to {VALIDATORS_MAX}, not {count}")),
                "{error}"
            );
        }
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let error = error_of(&MINIMAL.replace("intervals = 5", "intervals = 5\ninterval = 3"));
        assert!(error.contains("unknown field `interval`"), "{error}");
        let error = error_of(&MINIMAL.replace("households = 3\n", ""));
        assert!(error.contains("missing field `households`"), "{error}");
        let error = error_of(&MINIMAL.replace("import = 0.30", "import = 0.30\nexport = 0.1"));
        assert!(error.contains("unknown field `export`"), "{error}");
        let error = error_of(&format!("{MINIMAL}\n[[perturbations]]\nat_s = 1\nkind = \"explode\"\n"));
        assert!(error.contains("unknown variant `explode`"), "{error}");
        let error = error_of(&format!(
            "{MINIMAL}\n[[perturbations]]\nat_s = 1\nkind = \"pause\"\nnode = \"household-0\"\nduration_s = 1\nsignal = 9\n"
        ));
        assert!(error.contains("unknown field `signal`"), "{error}");
        let error = error_of(&MINIMAL.replace("households = 3", "households = \"three\""));
        assert!(error.contains("households"), "{error}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            ("import = 0.30", "import = 0.1234567", "`tariffs.import`: `0.1234567` has more than 6 decimals"),
            ("import = 0.30", "import = \"-1\"", "`tariffs.import`: `-1` is negative"),
            (
                "feed_in = \"0.08\"",
                "feed_in = 0.5",
                "`tariffs.feed_in`: 0.5 must be below the import tariff 0.3",
            ),
            ("network_fee = 0.01", "network_fee = 0.3", "`tariffs.network_fee`"),
            ("intervals = 5", "intervals = 1", "`intervals`: at least 2"),
            ("intervals = 5", "intervals = 5\nduration_s = 60", "`duration_s`: give either"),
            ("intervals = 5", "", "`duration_s`: give the run's length"),
            ("block_time_ms = 200", "block_time_ms = 2000", "`block_time_ms`: must be 10 ms to a quarter"),
            ("households = 3", "households = 0", "`households`: must be 1 to 10000"),
            ("households = 3", "households = 3\nhousehold_nodes = 4", "`household_nodes`"),
            ("settlement_delay_ms = 1500", "settlement_delay_ms = 10", "`settlement_delay_ms`"),
            ("interval_ms = 4000", "interval_ms = 10", "`interval_ms`"),
        ];
        for (from, to, expected) in cases {
            let error = error_of(&MINIMAL.replace(from, to));
            assert!(error.starts_with(expected), "{to}: {error}");
        }
        let error = error_of(&format!("{MINIMAL}\n[profiles]\npv_share = 1.5\n"));
        assert!(error.starts_with("`profiles.pv_share`: `1.5` is a share"), "{error}");
        let error = error_of(&format!("{MINIMAL}\n[profiles]\nday_intervals = 7\n"));
        assert!(error.starts_with("`profiles.day_intervals`"), "{error}");
    }

    #[test]
    fn perturbations_are_checked() {
        let kill = |node: &str, at_s: u64, down_s: u64| {
            format!(
                "{MINIMAL}\n[[perturbations]]\nat_s = {at_s}\nkind = \"kill\"\nnode = \"{node}\"\ndown_s = {down_s}\n"
            )
        };
        let error = error_of(&kill("validator-1", 1, 1));
        assert!(error.starts_with("`perturbations[0].node`: no node `validator-1`"), "{error}");
        let error = error_of(&kill("household-0", 1, 0));
        assert!(error.starts_with("`perturbations[0].down_s`: must be at least 1"), "{error}");
        let error = error_of(&kill("household-0", 15, 10));
        assert!(error.starts_with("`perturbations[0].at_s`: the fault must be over"), "{error}");
        let flood = format!(
            "{MINIMAL}\n[[perturbations]]\nat_s = 1\nkind = \"flood\"\nhousehold = 3\nduration_s = 1\nrate_per_s = 5\n"
        );
        assert!(error_of(&flood).starts_with("`perturbations[0].household`: no household 3"));
    }

    #[test]
    fn zones_are_checked_and_households_shared_among_them() {
        let zones = "\n[[zones]]\nname = \"north\"\n\n[[zones]]\nname = \"south\"\nimport_wh_max = 500\n";
        let manifest = Manifest::parse(&format!("{MINIMAL}{zones}")).unwrap();
        let names: Vec<&str> = (0..3).map(|household| manifest.zone_of_household(household)).collect();
        assert_eq!(names, ["north", "south", "north"]);
        assert_eq!(manifest.zones[1].flag(), format!("south:500:{}", u64::MAX));
        assert_eq!(manifest.zones[0].flag(), "north");
        // Without zones, one zone `main`.
        assert_eq!(Manifest::parse(MINIMAL).unwrap().zone_of_household(2), "main");
        let twice = format!("{MINIMAL}{zones}\n[[zones]]\nname = \"north\"\n");
        assert!(
            error_of(&twice).starts_with("`zones[2].name`: zone `north` is listed twice"),
            "{}",
            error_of(&twice)
        );
        let colon = format!("{MINIMAL}\n[[zones]]\nname = \"a:b\"\n");
        assert!(error_of(&colon).starts_with("`zones[0].name`: must be 1 to 64 bytes, without `:`"));
        let limits = |zone: &str, intervals: u32| {
            format!(
                "{MINIMAL}{zones}\n[[perturbations]]\nat_s = 1\nkind = \"zone_limits\"\nzone = \"{zone}\"\nimport_wh_max = 0\nexport_wh_max = 0\nintervals = {intervals}\n"
            )
        };
        assert!(Manifest::parse(&limits("south", 4)).is_ok());
        assert!(error_of(&limits("east", 4)).starts_with("`perturbations[0].zone`: no zone `east`"));
        assert!(error_of(&limits("south", 97)).starts_with("`perturbations[0].intervals`: must be 1 to 96"));
    }

    #[test]
    fn the_shipped_manifests_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
        for name in ["demo", "smoke", "faults", "scale"] {
            let manifest = Manifest::load(&dir.join(format!("{name}.toml")))
                .unwrap_or_else(|error| panic!("{name}.toml: {error}"));
            assert_eq!(manifest.validators, 4, "{name}.toml");
        }
        let faults = Manifest::load(&dir.join("faults.toml")).unwrap();
        let kinds: std::collections::BTreeSet<&str> =
            faults.perturbations.iter().map(Perturbation::kind).collect();
        assert_eq!(kinds.len(), 6, "faults.toml has every kind: {kinds:?}");
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal("x", "0.3", 6).unwrap(), 300_000);
        assert_eq!(parse_decimal("x", "12", 6).unwrap(), 12_000_000);
        assert_eq!(parse_decimal("x", ".5", 3).unwrap(), 500);
        assert_eq!(parse_decimal("x", "0.100", 1).unwrap(), 1);
        assert!(parse_decimal("x", "1e-3", 6).is_err());
        assert!(parse_decimal("x", "", 6).is_err());
        assert!(parse_decimal("x", "99999999999999999999", 6).is_err());
        assert_eq!(format_decimal(300_000, 6), "0.3");
        assert_eq!(format_decimal(12_000_000, 6), "12");
        assert_eq!(format_decimal(1_050, 3), "1.05");
        let negative = parse_decimal("x", "-1", 6).unwrap_err().to_string();
        assert!(negative.ends_with("`-1` is negative"), "{negative}");
        let precise = parse_decimal("x", "0.1234", 3).unwrap_err().to_string();
        assert!(precise.ends_with("`0.1234` has more than 3 decimals"), "{precise}");
    }
}
