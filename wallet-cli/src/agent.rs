//! `gridshare agent run` and `gridshare agent status`: the household's
//! trading agent (docs/AGENT.md). Every interval, before gate closure, it
//! learns the household's net export from its meters' readings on the
//! ledger, forecasts the next open interval, plans its battery and EV and
//! offers the rest (`gridshare_households::home`, the decisions without
//! I/O); this file is the shell: the configuration, the node, the clock,
//! the signing and the state file that `agent status` reads.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gridshare_api::{Account, OffersQuery, SpanQuery};
use gridshare_households::home::{
    Battery, ClockSlots, Ev, Forecaster, Limits, Situation, Step, decide, energy_wh,
};
use gridshare_households::market::Tariffs;
use gridshare_households::strategy::Bidder;
use gridshare_ledger::Hash;
use gridshare_ledger::genesis::{Genesis, grid_only_nano};
use gridshare_ledger::ids::{Keypair, PublicKey};
use gridshare_ledger::tx::{SignedMeterReading, Tx};
use serde::{Deserialize, Serialize};

use crate::amount::{format_kwh, format_money, format_price};
use crate::household::{OfferTerms, build_attested_offer};
use crate::keystore::{PassphraseSource, Role};
use crate::market_time::{OFFER_MARGIN_MS, format_utc, now_ms};
use crate::wallet::{CommandError, Wallet, until_the_node_answers, write_json};

/// Decisions kept in the state file for `agent status`.
const DECISIONS_KEPT: usize = 24;
/// Readings asked for at once (the API's span at most).
const READINGS_SPAN: u64 = 96;
/// After each interval boundary the agent wakes this much later, when the
/// readings of the interval that ended have had time to reach a block.
const WAKE_AFTER_BOUNDARY_MS: u64 = 300;

/// `agent.toml`: what the agent trades for and with. Unknown fields are
/// refused, as are impossible values, with the field named.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The keystore name of the account key that offers.
    pub account: String,
    #[serde(default)]
    pub strategy: StrategyConfig,
    pub battery: Option<BatteryConfig>,
    pub ev: Option<EvConfig>,
}

/// Where the agent's limit prices sit between the tariffs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategyConfig {
    /// Asks, from the feed-in tariff (0) towards the import tariff (1000).
    pub ask_per_mille: u64,
    /// Bids, from the import tariff (0) down towards the feed-in tariff (1000).
    pub bid_per_mille: u64,
    /// Offers per interval, a price ladder (1 to 8).
    pub offers_per_interval: u32,
}

impl Default for StrategyConfig {
    fn default() -> StrategyConfig {
        StrategyConfig { ask_per_mille: 300, bid_per_mille: 300, offers_per_interval: 1 }
    }
}

/// A home battery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatteryConfig {
    pub capacity_wh: u64,
    pub power_w: u64,
    #[serde(default = "default_efficiency")]
    pub efficiency_per_mille: u64,
    #[serde(default)]
    pub reserve_wh: u64,
    /// Its charge when the agent first starts (default: half full).
    pub initial_charge_wh: Option<u64>,
}

fn default_efficiency() -> u64 {
    900
}

/// An electric vehicle, connected every day (UTC times `HH:MM`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvConfig {
    pub connected: String,
    pub departure: String,
    pub needed_wh: u64,
    pub power_w: u64,
}

/// Why `agent.toml` is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, an unknown field, a value of the wrong type: the TOML
    /// error names the field.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// A value no home has.
    #[error("{field} {problem}")]
    Value { field: &'static str, problem: String },
}

fn bad_config(error: ConfigError) -> CommandError {
    CommandError::BadInput(error.to_string())
}

fn bad(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Value { field, problem: problem.into() }
}

/// `HH:MM` as minutes of day.
fn minute_of(field: &'static str, text: &str) -> Result<u64, ConfigError> {
    let refused = || bad(field, format!("is `{text}`, not a time of day HH:MM"));
    let (hours, minutes) = text.split_once(':').ok_or_else(refused)?;
    let (hours, minutes): (u64, u64) =
        (hours.parse().map_err(|_| refused())?, minutes.parse().map_err(|_| refused())?);
    if hours > 23 || minutes > 59 || text.len() != 5 {
        return Err(refused());
    }
    Ok(hours * 60 + minutes)
}

impl AgentConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<AgentConfig, CommandError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| CommandError::BadInput(format!("cannot read {}: {error}", path.display())))?;
        AgentConfig::parse(&text)
            .map_err(|error| CommandError::BadInput(format!("{}: {error}", path.display())))
    }

    /// Parses and checks a configuration's text.
    pub fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        let config: AgentConfig = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    /// Refuses impossible values, naming the field.
    fn check(&self) -> Result<(), ConfigError> {
        let strategy = &self.strategy;
        if strategy.ask_per_mille > 1_000 {
            return Err(bad("strategy.ask_per_mille", format!("is {}, above 1000", strategy.ask_per_mille)));
        }
        if strategy.bid_per_mille > 1_000 {
            return Err(bad("strategy.bid_per_mille", format!("is {}, above 1000", strategy.bid_per_mille)));
        }
        if !(1..=8).contains(&strategy.offers_per_interval) {
            let problem = format!("is {}, not 1 to 8", strategy.offers_per_interval);
            return Err(bad("strategy.offers_per_interval", problem));
        }
        if let Some(battery) = &self.battery {
            if battery.capacity_wh == 0 {
                return Err(bad("battery.capacity_wh", "must be above 0"));
            }
            if battery.power_w == 0 {
                return Err(bad("battery.power_w", "must be above 0"));
            }
            if !(1..=1_000).contains(&battery.efficiency_per_mille) {
                let problem = format!("is {}, not 1 to 1000", battery.efficiency_per_mille);
                return Err(bad("battery.efficiency_per_mille", problem));
            }
            if battery.reserve_wh > battery.capacity_wh {
                return Err(bad("battery.reserve_wh", "is above battery.capacity_wh"));
            }
            if battery.initial_charge_wh.is_some_and(|charge| charge > battery.capacity_wh) {
                return Err(bad("battery.initial_charge_wh", "is above battery.capacity_wh"));
            }
        }
        if let Some(ev) = &self.ev {
            minute_of("ev.connected", &ev.connected)?;
            minute_of("ev.departure", &ev.departure)?;
            if ev.needed_wh == 0 {
                return Err(bad("ev.needed_wh", "must be above 0"));
            }
            if ev.power_w == 0 {
                return Err(bad("ev.power_w", "must be above 0"));
            }
        }
        Ok(())
    }
}

/// What the agent keeps between intervals and restarts (the state file).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AgentState {
    /// The last interval decided for.
    pub decided: u64,
    pub battery_charge_wh: Option<u64>,
    pub ev_charged_wh: u64,
    pub ev_was_connected: bool,
    /// The forecast's mean absolute error and how many forecasts it is over.
    pub forecast_error_wh: Option<u64>,
    pub forecasts_counted: usize,
    pub decisions: VecDeque<Decision>,
    /// What it planned for the battery and the EV in each of the latest
    /// intervals (at most `READINGS_SPAN`): the meters measured the home
    /// with them, and the forecast learns the home without them.
    #[serde(default)]
    pub dispatched: BTreeMap<u64, Dispatched>,
}

/// The battery's and the EV's plan for one interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dispatched {
    pub battery_wh: i64,
    pub ev_wh: u64,
}

impl Dispatched {
    /// What they drew from the home's net export (negative: gave).
    fn drawn_wh(&self) -> i64 {
        self.battery_wh.saturating_add(i64::try_from(self.ev_wh).unwrap_or(i64::MAX))
    }
}

/// One decision, as `agent status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub interval: u64,
    pub forecast_wh: i64,
    pub battery_wh: i64,
    pub ev_wh: u64,
    pub bought_for_battery_wh: u64,
    /// The account's open offers for the interval that this decision did
    /// not make, cancelled before it offered.
    #[serde(default)]
    pub cancelled: Vec<DecidedCancel>,
    pub offers: Vec<DecidedOffer>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedCancel {
    /// The offer's id.
    pub offer: String,
    /// `admitted`, `rejected: REASON`, `dry run` or `not sent: …`.
    pub outcome: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidedOffer {
    pub side: String,
    pub energy_wh: u64,
    pub price_micro_per_kwh: u64,
    /// `admitted`, `rejected: REASON`, or `dry run`.
    pub outcome: String,
}

impl AgentState {
    fn load(path: &Path) -> Result<AgentState, CommandError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| {
                CommandError::BadInput(format!("the agent's state {} is damaged: {error}", path.display()))
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(error) => Err(CommandError::BadInput(format!("cannot read {}: {error}", path.display()))),
        }
    }

    /// Written whole to a temporary file, then renamed over the old one.
    fn save(&self, path: &Path) -> Result<(), CommandError> {
        let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer_pretty(&mut file, self).map_err(std::io::Error::from)?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|error| error.error)?;
        Ok(())
    }
}

/// `gridshare agent run` and `gridshare agent status`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The agent's configuration (docs/AGENT.md).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Where the agent keeps its state (default: the configuration's path
    /// with `.state.json`).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

impl AgentArgs {
    fn state_path(&self) -> PathBuf {
        self.state.clone().unwrap_or_else(|| self.config.with_extension("state.json"))
    }
}

/// `gridshare agent run`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentRunArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// A file whose first line is the account key's passphrase (for example
    /// a systemd credential); without it, $GRIDSHARE_PASSPHRASE or a prompt.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Print what it would offer, submitting nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop after deciding this many intervals (default: run until stopped).
    #[arg(long, value_name = "COUNT")]
    pub intervals: Option<u64>,
}

/// The net export the account's meters measured in each interval after
/// `after`, where every meter has readings at both ends; and the latest
/// signed reading of any of them (the offers' attestation).
fn measured(
    wallet: &Wallet,
    account: &Account,
    genesis: &Genesis,
    after: u64,
) -> Result<(BTreeMap<u64, i64>, Option<SignedMeterReading>), CommandError> {
    let mut nets: BTreeMap<u64, (i64, usize)> = BTreeMap::new();
    let mut latest: Option<SignedMeterReading> = None;
    for meter in &account.meters {
        let Some(last) = meter.last_reading else { continue };
        let from = after.max(last.interval.saturating_sub(READINGS_SPAN - 1)).min(last.interval);
        let readings =
            wallet.node().meter_readings(&meter.meter, &SpanQuery::between(from, last.interval))?;
        let signed: Vec<SignedMeterReading> = readings
            .iter()
            .filter_map(|reading| reading.attestation(meter.meter, &genesis.community_id))
            .collect();
        for pair in signed.windows(2) {
            let (before, after) = (pair[0].reading, pair[1].reading);
            if after.interval != before.interval + 1 {
                continue;
            }
            let rise = |new: u64, old: u64| i64::try_from(new.saturating_sub(old)).unwrap_or(i64::MAX);
            let net = rise(after.export_wh_total, before.export_wh_total)
                - rise(after.import_wh_total, before.import_wh_total);
            let entry = nets.entry(after.interval).or_default();
            entry.0 += net;
            entry.1 += 1;
        }
        if let Some(last) = signed.last()
            && latest.is_none_or(|latest| latest.reading.interval < last.reading.interval)
        {
            latest = Some(*last);
        }
    }
    let meters = account.meters.len();
    let complete = nets
        .into_iter()
        .filter(|(interval, (_, counted))| *interval > after && *counted == meters)
        .map(|(interval, (net, _))| (interval, net))
        .collect();
    Ok((complete, latest))
}

/// `gridshare agent run`: decides and offers for every interval until
/// stopped (or after `--intervals`).
pub fn agent_run(wallet: &Wallet, args: &AgentRunArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let config = AgentConfig::load(&args.agent.config)?;
    let state_path = args.agent.state_path();
    let mut state = AgentState::load(&state_path)?;
    let account_file = wallet.key_file(Some(&config.account), Role::Account, "account")?;
    let account_key = account_file.public_key()?;
    let account_keypair = if args.dry_run {
        None
    } else {
        let source = PassphraseSource::from_file_or_env(args.passphrase_file.as_deref())?;
        Some(wallet.keystore().unlock(&account_file.name, &source)?)
    };
    let community = until_the_node_answers("agent: asking the node for the community", || {
        Ok(wallet.community()?.clone())
    })?;
    let genesis = &community.genesis;
    let length_ms = genesis.market.interval_length_ms;
    let bidder = Bidder {
        seed: 0,
        household: 0,
        ask_per_mille: config.strategy.ask_per_mille,
        bid_per_mille: config.strategy.bid_per_mille,
    };
    let mut battery = config.battery.map(|battery| Battery {
        capacity_wh: battery.capacity_wh,
        power_w: battery.power_w,
        efficiency_per_mille: battery.efficiency_per_mille,
        reserve_wh: battery.reserve_wh,
        charge_wh: state
            .battery_charge_wh
            .unwrap_or(battery.initial_charge_wh.unwrap_or(battery.capacity_wh / 2))
            .min(battery.capacity_wh),
    });
    let mut ev = match &config.ev {
        Some(ev) => Some(Ev {
            connected_minute: minute_of("ev.connected", &ev.connected).map_err(bad_config)?,
            departure_minute: minute_of("ev.departure", &ev.departure).map_err(bad_config)?,
            needed_wh: ev.needed_wh,
            power_w: ev.power_w,
            charged_wh: state.ev_charged_wh,
            was_connected: state.ev_was_connected,
        }),
        None => None,
    };
    // The forecast is learned again from the ledger at every start.
    let clock = ClockSlots::new(genesis.genesis_time_ms, length_ms);
    let mut forecaster = Forecaster::new(clock.per_day());
    let mut learned = 0_u64;
    let mut decided_now = 0_u64;
    while args.intervals.is_none_or(|intervals| decided_now < intervals) {
        let now = now_ms();
        let target = genesis.first_open_interval(now.saturating_add(OFFER_MARGIN_MS));
        if target > state.decided {
            // What the node knows, asked again while it cannot be reached.
            let (account, nets, attestation, market) =
                until_the_node_answers("agent: asking the node for the account and its readings", || {
                    let Some(account) = wallet.node().account(&account_key)? else {
                        return Err(CommandError::BadInput(format!(
                            "account {} ({account_key}) is not registered in this community",
                            config.account
                        )));
                    };
                    let (nets, attestation) = measured(wallet, &account, genesis, learned)?;
                    Ok((account, nets, attestation, MarketView::of(wallet, &account_key, target)?))
                })?;
            // The meters measured the home with its battery and EV doing
            // what was planned; the forecast is of the home without them.
            for (interval, net) in nets {
                let drawn = state.dispatched.get(&interval).map_or(0, Dispatched::drawn_wh);
                forecaster.learn(clock.of(interval), net.saturating_add(drawn));
                learned = interval;
            }
            let start_ms = genesis.interval_start_ms(target).unwrap_or(u64::MAX);
            let meters_w =
                |power: fn(&gridshare_api::Meter) -> u64| account.meters.iter().map(power).sum::<u64>();
            let situation = Situation {
                interval: target,
                interval_ms: length_ms,
                minute: start_ms % 86_400_000 / 60_000,
                forecast_wh: forecaster.forecast_wh(clock.of(target)),
                tariffs: market.tariffs,
                last_price_micro_per_kwh: market.last_price_micro_per_kwh,
                limits: Limits {
                    import_wh_max: energy_wh(meters_w(|meter| meter.max_import_w), length_ms),
                    export_wh_max: energy_wh(meters_w(|meter| meter.max_export_w), length_ms),
                    budget_nano: account.available_nano,
                },
            };
            let step = decide(
                &situation,
                &bidder,
                config.strategy.offers_per_interval,
                battery.as_mut(),
                ev.as_mut(),
            );
            // The decision is written before anything is sent: a run
            // stopped while sending does not decide the interval again, so
            // the account never offers twice for the same energy.
            state.decided = target;
            state.battery_charge_wh = battery.map(|battery| battery.charge_wh);
            state.ev_charged_wh = ev.map_or(0, |ev| ev.charged_wh);
            state.ev_was_connected = ev.is_some_and(|ev| ev.was_connected);
            state.forecast_error_wh = forecaster.mean_absolute_error_wh();
            state.forecasts_counted = forecaster.errors_counted();
            // A dry run carries nothing out.
            if !args.dry_run {
                let dispatched = Dispatched { battery_wh: step.battery_wh, ev_wh: step.ev_wh };
                state.dispatched.insert(target, dispatched);
                state.dispatched.retain(|interval, _| interval.saturating_add(READINGS_SPAN) > target);
                state.save(&state_path)?;
            }
            let sending = Sending { wallet, account: account_keypair.as_ref(), attestation, genesis };
            let decision = sending.send(&step, &market.stale_offers)?;
            report(out, args.agent.json, &decision, battery.as_ref(), start_ms, community.currency())?;
            if state.decisions.len() == DECISIONS_KEPT {
                state.decisions.pop_front();
            }
            state.decisions.push_back(decision);
            if !args.dry_run {
                state.save(&state_path)?;
            }
            decided_now += 1;
            continue;
        }
        let next_ms = genesis
            .interval_start_ms(genesis.interval_at(now) + 1)
            .unwrap_or(u64::MAX)
            .saturating_add(WAKE_AFTER_BOUNDARY_MS);
        std::thread::sleep(Duration::from_millis(next_ms.saturating_sub(now).max(1)));
    }
    Ok(())
}

/// What the market says about the interval to decide: its tariffs, the
/// latest clearing price, and the account's open offers for it.
struct MarketView {
    tariffs: Tariffs,
    last_price_micro_per_kwh: Option<u64>,
    stale_offers: Vec<Hash>,
}

impl MarketView {
    fn of(wallet: &Wallet, account: &PublicKey, target: u64) -> Result<MarketView, CommandError> {
        let node = wallet.node();
        let in_force = node.interval(target)?.tariffs;
        let tariffs = Tariffs {
            import_micro_per_kwh: in_force.grid_import_micro_per_kwh,
            feed_in_micro_per_kwh: in_force.grid_feed_in_micro_per_kwh,
            network_fee_micro_per_kwh: in_force.network_fee_micro_per_kwh,
        };
        // The interval before the next to clear, if it is before `target`.
        let next = node.status()?.next_clearing_interval;
        let last_price_micro_per_kwh = match next.checked_sub(1).filter(|cleared| *cleared < target) {
            Some(cleared) => node
                .interval(cleared)?
                .clearing
                .and_then(|clearing| clearing.receipt.clearing_price_micro_per_kwh),
            None => None,
        };
        let query = OffersQuery { account: Some(*account), interval: Some(target) };
        let stale_offers = node.offers(&query)?.into_iter().map(|offer| offer.id).collect();
        Ok(MarketView { tariffs, last_price_micro_per_kwh, stale_offers })
    }
}

/// What sending a decision needs: no key in a dry run, no attestation
/// before the meters' first reading on the ledger.
struct Sending<'a> {
    wallet: &'a Wallet,
    account: Option<&'a Keypair>,
    attestation: Option<SignedMeterReading>,
    genesis: &'a Genesis,
}

impl Sending<'_> {
    /// Cancels `stale` (the account's open offers for the interval that
    /// this decision did not make), then signs and submits `step`'s
    /// offers; what became of each.
    fn send(&self, step: &Step, stale: &[Hash]) -> Result<Decision, CommandError> {
        let mut cancelled = Vec::with_capacity(stale.len());
        for offer_id in stale {
            let outcome = match self.account {
                None => "dry run".to_string(),
                Some(account) => self.submit(account, |nonce| Tx::CancelOffer {
                    account: account.public(),
                    nonce,
                    offer_id: *offer_id,
                })?,
            };
            cancelled.push(DecidedCancel { offer: offer_id.to_string(), outcome });
        }
        let mut offers = Vec::with_capacity(step.offers.len());
        for planned in &step.offers {
            let outcome = match (self.account, self.attestation) {
                (None, _) => "dry run".to_string(),
                (Some(_), None) => "not sent: no signed meter reading on the ledger yet".to_string(),
                (Some(account), Some(attestation)) => {
                    let terms = OfferTerms {
                        interval: step.interval,
                        side: planned.side,
                        energy_wh: planned.energy_wh,
                        price_micro_per_kwh: planned.price_micro_per_kwh,
                    };
                    let community = &self.genesis.community_id;
                    self.submit(account, |nonce| {
                        build_attested_offer(community, account, nonce, terms, attestation).tx
                    })?
                }
            };
            offers.push(DecidedOffer {
                side: gridshare_api::Side::from(planned.side).as_str().to_string(),
                energy_wh: planned.energy_wh,
                price_micro_per_kwh: planned.price_micro_per_kwh,
                outcome,
            });
        }
        Ok(Decision {
            interval: step.interval,
            forecast_wh: step.forecast_wh,
            battery_wh: step.battery_wh,
            ev_wh: step.ev_wh,
            bought_for_battery_wh: step.bought_for_battery_wh,
            cancelled,
            offers,
        })
    }

    /// Submits one transaction, once: `admitted`, `rejected: CODE`, or `not
    /// sent: …` when the node could not take it (its gate may close, and
    /// the next interval is decided afresh).
    fn submit(&self, account: &Keypair, tx: impl Fn(u64) -> Tx) -> Result<String, CommandError> {
        match self.wallet.submit_with_nonce(account, tx) {
            Ok(submitted) => Ok(match submitted.outcome.refusal_code() {
                None => "admitted".to_string(),
                Some(code) if submitted.outcome.is_busy() => format!("not sent: the node is busy ({code})"),
                Some(code) => format!("rejected: {code}"),
            }),
            Err(CommandError::Node(error)) if error.is_transient() => Ok(format!("not sent: {error}")),
            Err(error) => Err(error),
        }
    }
}

/// `+1.200` kWh or `-0.300`.
fn signed_kwh(energy_wh: i64) -> String {
    let sign = if energy_wh < 0 { "-" } else { "+" };
    format!("{sign}{}", format_kwh(energy_wh.unsigned_abs()))
}

fn report(
    out: &mut dyn Write,
    json: bool,
    decision: &Decision,
    battery: Option<&Battery>,
    start_ms: u64,
    currency: &str,
) -> Result<(), CommandError> {
    if json {
        let mut line = serde_json::to_value(decision).map_err(std::io::Error::from)?;
        line["battery_charge_wh"] = battery.map(|battery| battery.charge_wh).into();
        write_json(out, &line)?;
        out.flush()?;
        return Ok(());
    }
    let mut line = format!(
        "Interval {} (from {}): forecast {} kWh",
        decision.interval,
        format_utc(start_ms),
        signed_kwh(decision.forecast_wh)
    );
    if let Some(battery) = battery {
        line.push_str(&format!(
            "; battery {} kWh (holds {} kWh)",
            signed_kwh(decision.battery_wh),
            format_kwh(battery.charge_wh)
        ));
    }
    if decision.ev_wh > 0 {
        line.push_str(&format!("; EV {} kWh", format_kwh(decision.ev_wh)));
    }
    if decision.offers.is_empty() {
        line.push_str("; no offer");
    }
    writeln!(out, "{line}")?;
    for cancel in &decision.cancelled {
        writeln!(out, "  cancelled open offer {}: {}", cancel.offer, cancel.outcome)?;
    }
    for offer in &decision.offers {
        writeln!(
            out,
            "  {} {} kWh at {} {currency}/kWh: {}",
            offer.side,
            format_kwh(offer.energy_wh),
            format_price(offer.price_micro_per_kwh),
            offer.outcome
        )?;
    }
    out.flush()?;
    Ok(())
}

/// What the account's latest settled bills came to, and what the same
/// metered energy would have at the grid tariffs alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Savings {
    pub intervals: u64,
    pub bills_nano: i128,
    pub grid_only_nano: i128,
}

impl Savings {
    /// Over the account's bills of the last `INTERVAL_SPAN_DEFAULT` settled
    /// intervals, each at its settlement's tariffs.
    fn of(wallet: &Wallet, account: &PublicKey) -> Result<Savings, CommandError> {
        let mut savings = Savings::default();
        for bill in wallet.node().bills(account, &SpanQuery::default())? {
            let Some(settlement) = wallet.node().interval(bill.interval)?.settlement else { continue };
            let tariffs = settlement.tariffs;
            savings.intervals += 1;
            savings.bills_nano += bill.bill.total_nano;
            savings.grid_only_nano += grid_only_nano(
                bill.bill.metered_net_export_wh,
                tariffs.grid_feed_in_micro_per_kwh,
                tariffs.grid_import_micro_per_kwh,
            );
        }
        Ok(savings)
    }
}

/// `gridshare agent status`: the agent's last decisions, its forecast's
/// accuracy and its battery, from its state file; and what the account's
/// latest bills saved against grid-only prices, from the node.
pub fn agent_status(wallet: &Wallet, args: &AgentArgs, out: &mut dyn Write) -> Result<(), CommandError> {
    let config = AgentConfig::load(&args.config)?;
    let state_path = args.state_path();
    if !state_path.exists() {
        return Err(CommandError::BadInput(format!(
            "no agent state at {}: `gridshare agent run --config {}` has not decided an interval yet",
            state_path.display(),
            args.config.display()
        )));
    }
    let state = AgentState::load(&state_path)?;
    let account = wallet.key_file(Some(&config.account), Role::Account, "account")?.public_key()?;
    let savings = Savings::of(wallet, &account)?;
    if args.json {
        let mut json = serde_json::to_value(&state).map_err(std::io::Error::from)?;
        json["savings"] = serde_json::json!({
            "intervals": savings.intervals,
            "bills_nano": savings.bills_nano.to_string(),
            "grid_only_nano": savings.grid_only_nano.to_string(),
            "saved_nano": (savings.bills_nano - savings.grid_only_nano).to_string(),
        });
        write_json(out, &json)?;
        return Ok(());
    }
    let currency = wallet.community()?.currency().to_string();
    writeln!(out, "Agent of account {}: last decided interval {}", config.account, state.decided)?;
    writeln!(
        out,
        "Saved against grid-only prices: {} over the last {} settled intervals (bills {}, the grid alone {})",
        format_money(savings.bills_nano - savings.grid_only_nano, &currency),
        savings.intervals,
        format_money(savings.bills_nano, &currency),
        format_money(savings.grid_only_nano, &currency)
    )?;
    match state.forecast_error_wh {
        Some(error) => writeln!(
            out,
            "Forecast error: {} kWh on average over the last {} intervals",
            format_kwh(error),
            state.forecasts_counted
        )?,
        None => writeln!(out, "Forecast error: not known yet (no metered interval to compare with)")?,
    }
    if let Some(charge) = state.battery_charge_wh {
        writeln!(out, "Battery: holds {} kWh", format_kwh(charge))?;
    }
    for decision in &state.decisions {
        let offers: Vec<String> = decision
            .offers
            .iter()
            .map(|offer| {
                format!(
                    "{} {} kWh at {} ({})",
                    offer.side,
                    format_kwh(offer.energy_wh),
                    format_price(offer.price_micro_per_kwh),
                    offer.outcome
                )
            })
            .collect();
        writeln!(
            out,
            "  interval {}: forecast {} kWh, battery {} kWh, EV {} kWh; {}",
            decision.interval,
            signed_kwh(decision.forecast_wh),
            signed_kwh(decision.battery_wh),
            format_kwh(decision.ev_wh),
            if offers.is_empty() { "no offer".to_string() } else { offers.join(", ") }
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_config_with_an_unknown_field_or_an_impossible_value_is_refused_with_the_field_named() {
        let good = "account = \"home\"\n[battery]\ncapacity_wh = 10000\npower_w = 5000\n\
                    [ev]\nconnected = \"18:00\"\ndeparture = \"07:30\"\nneeded_wh = 12000\npower_w = 11000\n";
        let config = AgentConfig::parse(good).unwrap();
        assert_eq!(config.strategy, StrategyConfig::default());
        assert_eq!(config.battery.unwrap().efficiency_per_mille, 900);
        for (text, field) in [
            ("account = \"home\"\ncolour = \"red\"\n", "colour"),
            ("account = \"home\"\n[strategy]\nask_per_mile = 3\n", "ask_per_mile"),
            ("account = \"home\"\n[strategy]\nask_per_mille = 1001\n", "strategy.ask_per_mille"),
            ("account = \"home\"\n[strategy]\noffers_per_interval = 0\n", "strategy.offers_per_interval"),
            (
                "account = \"home\"\n[battery]\ncapacity_wh = 10\npower_w = 5\nreserve_wh = 11\n",
                "battery.reserve_wh",
            ),
            (
                "account = \"home\"\n[battery]\ncapacity_wh = 10\npower_w = 5\nefficiency_per_mille = 0\n",
                "battery.efficiency_per_mille",
            ),
            (
                "account = \"home\"\n[ev]\nconnected = \"25:00\"\ndeparture = \"07:30\"\nneeded_wh = 1\npower_w = 1\n",
                "ev.connected",
            ),
            (
                "account = \"home\"\n[ev]\nconnected = \"18:00\"\ndeparture = \"7:30\"\nneeded_wh = 1\npower_w = 1\n",
                "ev.departure",
            ),
            ("[strategy]\nask_per_mille = 3\n", "account"),
            ("account = \"home\"\n[battery]\ncapacity_wh = -5\npower_w = 5\n", "capacity_wh"),
        ] {
            let error = AgentConfig::parse(text).unwrap_err().to_string();
            assert!(error.contains(field), "{text}: {error}");
        }
    }
}
