//! The world of one run: every node's real chain core, the households'
//! agents and the registrar, the simulated network, the sequencer and the
//! faults, driven by one scheduler and one seeded PRNG. `World::run`
//! takes events one at a time until the run ends; what a node does with
//! each message follows the node's event loop (`node/src/node.rs`): hand it
//! to the core at the node's clock, take the transactions queued behind it
//! into the same batch, verify the batch, carry out the effects.
//!
//! A run has four phases: registration (the registrar's waves through the
//! first validator, until every node knows every household), trading (the
//! agents, the faults), draining (until the last interval settled and every
//! node caught up, or a deadline) and a short settling time without new
//! blocks, after which the end checks read the nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gridshare_households::profile::{Household, Simulation, community_traits};
use gridshare_households::{Agent, Market};
use gridshare_ledger::block::{CertifiedBlock, CommitCertificate, CommitSignature, Receipt, Vote, VoteKind};
use gridshare_ledger::encoding::to_bytes;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::{Keypair, PublicKey};
use gridshare_ledger::store::{MemoryStore, Store};
use gridshare_ledger::testkit::{SplitMix64, derived_key};
use gridshare_ledger::tx::{SignedTx, Tx};
use gridshare_ledger::{Hash, NANOS_PER_UNIT};
use gridshare_node::acknowledged;
use gridshare_node::chain::{ChainCore, Count, Effect, Event as CoreEvent, Role, Submission, Topic, Verdict};
use gridshare_node::consensus::app::Chain;
use gridshare_node::index::Index;
use gridshare_node::mempool::SubmitError;
use gridshare_node::network::{SYNC_BLOCKS_MAX, SyncRequest, TransactionsResponse};
use libp2p::PeerId;
use libp2p::gossipsub::MessageId;

use crate::agents::{
    Acknowledged, Dropped, HouseholdAgent, Journal, Outstanding, Pending, READING_RETRY_US,
    REQUEST_TIMEOUT_US, Registrar, interval_of, is_busy, is_early_reading,
};
use crate::config::Config;
use crate::faults::{FaultKind, Nodes, Planned, plan};
use crate::inbox::{Gossip, Inbox, PUBLISH_TIMEOUT_US};
use crate::network::{Network, NodeId};
use crate::node::{
    AwaitingVerdict, Client, From, Inbound, Message, NodeStats, Proposing, SimNode, ValidatorState,
};
use crate::scheduler::{Scheduler, TimeUs};
use crate::sequencer::{Sequencer, timely};

/// Simulated time 0 is this wall-clock time (ms since the Unix epoch): a
/// fixed date, so that no run depends on when it ran.
pub const ORIGIN_MS: u64 = 1_700_000_000_000;
/// How often a node ticks (the node's loop's `TICK_INTERVAL`).
const TICK_US: TimeUs = 2_000_000;
/// An API request and its answer cross the loopback in this long.
const API_LATENCY_US: TimeUs = 200;
/// A node asks for blocks at most this often while behind.
const SYNC_QUIET_US: TimeUs = 1_000_000;
/// How often the end of the run is checked for while draining.
const DRAIN_CHECK_US: TimeUs = 250_000;
/// Draining ends this long after the last interval's settlement time, at
/// the latest.
const DRAIN_LIMIT_US: TimeUs = 60_000_000;
/// After the last block, messages in flight get this long to arrive.
const SETTLE_US: TimeUs = 3_000_000;
/// The registrations must be on every node within this long.
const REGISTRATION_LIMIT_US: TimeUs = 1_800_000_000;
/// Each household starts with this much money, in currency units (the
/// testnet's deposit).
const INITIAL_CREDIT_UNITS: i128 = 1_000;
/// The meters' limits as the power they stand for in the simulated day,
/// scaled by its compression as the testnet's registrar does.
const METER_IMPORT_W: u64 = 25_000;
const METER_EXPORT_W: u64 = 15_000;
/// A ladder of offers is at most this long (a signer has at most 64
/// transactions waiting in a mempool).
const LADDER_MAX: u32 = 32;

/// What happens next.
#[derive(Debug)]
enum Event {
    /// A message reaches a node's inbox (gossip with the deadline it may
    /// wait until).
    Arrive {
        node: NodeId,
        inbound: Inbound,
        deadline_us: Option<TimeUs>,
    },
    /// A node's CPU is free to handle its inbox.
    Wake(NodeId),
    Tick(NodeId),
    /// A client gets the answer to its submission.
    Answer {
        client: Client,
        attempt: u64,
        result: Result<Hash, SubmitError>,
    },
    /// A client gives up waiting for an answer.
    Timeout {
        client: Client,
        attempt: u64,
    },
    /// A client sends what it has queued.
    Resume(Client),
    AgentWake(u32),
    RegistrarWake,
    StartRound {
        height: u64,
        round: u32,
    },
    RoundTimeout {
        height: u64,
        round: u32,
    },
    Crash {
        node: NodeId,
        down_us: TimeUs,
    },
    Restart(NodeId),
    PartitionStart {
        group: BTreeSet<NodeId>,
        duration_us: TimeUs,
    },
    PartitionEnd {
        number: u64,
        group: BTreeSet<NodeId>,
    },
    Flood,
    DrainCheck,
    End,
}

/// What handling one inbound item asks for, carried out when the CPU is
/// done with it.
#[derive(Debug)]
enum Output {
    /// A gossip message to a peer, published or forwarded.
    Gossip {
        to: NodeId,
        topic: Topic,
        id: MessageId,
        bytes: Arc<[u8]>,
        kind: Gossip,
    },
    /// Any other message to a peer.
    Send {
        to: NodeId,
        message: Message,
    },
    /// A message to the node itself.
    Local(Message),
    Answer {
        client: Client,
        attempt: u64,
        result: Result<Hash, SubmitError>,
    },
}

/// Modelled CPU time and outputs of one turn of a node.
#[derive(Debug, Default)]
struct Work {
    cost_us: u64,
    outputs: Vec<Output>,
}

/// The trading phase.
#[derive(Debug)]
pub struct Trading {
    pub start_us: TimeUs,
    pub end_us: TimeUs,
    pub first_interval: u64,
    pub last_interval: u64,
    pub stats_at_start: Vec<NodeStats>,
    pub stats_at_end: Option<Vec<NodeStats>>,
    pub committed_at_start: u64,
    pub committed_at_end: u64,
}

/// The hostile peer of the `flood` fault.
#[derive(Debug)]
pub struct Flood {
    pub node: NodeId,
    pub peer_id: PeerId,
    pub target: NodeId,
    pub until_us: TimeUs,
    pub interval_us: TimeUs,
    pub sent: u64,
    pub refused_by_ban: u64,
    /// What each message was, by id.
    pub kinds: BTreeMap<MessageId, &'static str>,
    /// Verdicts on its messages: "kind verdict" → count.
    pub verdicts: BTreeMap<String, u64>,
    /// Its messages a node accepted (none may be).
    pub accepted: u64,
    /// The nodes that banned it.
    pub banned_by: BTreeSet<NodeId>,
}

/// Everything a run is made of.
pub struct World {
    pub config: Config,
    pub genesis: Genesis,
    scheduler: Scheduler<Event>,
    random: SplitMix64,
    pub network: Network,
    pub nodes: Vec<SimNode>,
    peers: BTreeMap<PeerId, NodeId>,
    pub sequencer: Sequencer,
    pub registrar: Registrar,
    pub agents: Vec<HouseholdAgent>,
    market: Option<Arc<Market>>,
    accounts: Vec<Keypair>,
    meters: Vec<Keypair>,
    pub journal: Journal,
    pub flood: Option<Flood>,
    pub trading: Option<Trading>,
    pub planned: Vec<Planned>,
    /// Gossiped transactions some validator admitted, by message id.
    pub reached_validator: BTreeSet<MessageId>,
    /// Clearing seen by a node after gate closure, ms: (node, interval).
    pub clearings: BTreeMap<(NodeId, u64), u64>,
    agents_finished: usize,
    drain_deadline_us: Option<TimeUs>,
    /// The height at which the last interval had settled on a validator:
    /// every node must reach it.
    pub drain_target: Option<u64>,
    /// Problems that fail the run whatever the checks say (a setup that
    /// could not finish, a certified block a validator could not commit).
    pub problems: Vec<String>,
    /// The ladder of offers households make each interval.
    pub ladder: u32,
    ended: bool,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").field("now_us", &self.scheduler.now_us()).finish_non_exhaustive()
    }
}

/// The gossip message id of `bytes`, as the node's swarm computes it.
pub fn message_id(bytes: &[u8]) -> MessageId {
    MessageId::from(blake3::hash(bytes).as_bytes().to_vec())
}

/// The libp2p identity of node `index` of a run of `seed`.
fn peer_id(seed: u64, index: usize) -> PeerId {
    let mut bytes =
        *blake3::hash(&[&seed.to_le_bytes()[..], &(index as u64).to_le_bytes()[..], b"peer"].concat())
            .as_bytes();
    // Any 32 bytes are an ed25519 secret key.
    match libp2p::identity::Keypair::ed25519_from_bytes(&mut bytes) {
        Ok(keypair) => keypair.public().to_peer_id(),
        Err(_) => unreachable!("32 bytes are always an ed25519 secret key"),
    }
}

/// Why a run could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the genesis: {0}")]
    Genesis(#[from] gridshare_node::genesis_file::GenesisOptionsError),
    #[error("a node's chain core: {0}")]
    Open(#[from] gridshare_node::chain::OpenError),
    #[error("an index in memory: {0}")]
    Index(#[from] gridshare_node::index::IndexError),
    #[error("a record of acknowledged transactions in memory: {0}")]
    Acknowledged(#[from] acknowledged::AcknowledgedError),
}

impl World {
    /// The world of `config` at time 0: the genesis, every node and link,
    /// the registrar's transactions, the first events.
    pub fn new(config: Config) -> Result<World, SetupError> {
        let seed = config.seed;
        let market_config = config.market;
        let overload = config.fault(FaultKind::Overload).map_or(1, |fault| fault.intensity);
        let ladder = u32::try_from(u64::from(market_config.offers_per_interval) * overload)
            .unwrap_or(LADDER_MAX)
            .clamp(1, LADDER_MAX);
        let validator_keys: Vec<Keypair> =
            (0..config.validators).map(|index| derived_key(seed, 2, index)).collect();
        let registrar_key = derived_key(seed, 1, 0);
        let accounts: Vec<Keypair> =
            (0..config.households).map(|index| derived_key(seed, 3, index)).collect();
        let meters: Vec<Keypair> = (0..config.households).map(|index| derived_key(seed, 4, index)).collect();
        let interval_ms = market_config.interval_ms;
        let decimal = |micro: u64| format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000);
        let options = gridshare_node::genesis_file::GenesisOptions {
            name: format!("Simulated community {seed}"),
            currency: "EUR".into(),
            validators: validator_keys.iter().map(|key| key.public().to_string()).collect(),
            registrars: vec![registrar_key.public().to_string()],
            zones: Vec::new(),
            dsos: Vec::new(),
            // Interval 0 starts an interval before the run, as the testnet
            // has it.
            genesis_time_ms: Some((ORIGIN_MS / interval_ms * interval_ms).saturating_sub(interval_ms)),
            interval_ms,
            gate_closure_lead_ms: market_config.gate_closure_lead_ms,
            settlement_delay_ms: market_config.settlement_delay_ms,
            offer_horizon_intervals: 96,
            attestation_max_age_intervals: 8,
            mechanism: "uniform".into(),
            k: "0.5".into(),
            price_floor: "0".into(),
            price_cap: decimal(market_config.tariffs.import_micro_per_kwh),
            import_tariff: decimal(market_config.tariffs.import_micro_per_kwh),
            feed_in_tariff: decimal(market_config.tariffs.feed_in_micro_per_kwh),
            network_fee: decimal(market_config.tariffs.network_fee_micro_per_kwh),
            max_open_offers_per_account: (4 * ladder).max(16),
            max_offers_per_interval: 16_384,
            max_transactions_per_block: 10_000,
            // The node's defaults: 5 % above what the meter's limits allow,
            // and δ = 2 s, which the sequencer applies as consensus does.
            meter_tolerance_permille: 50,
            block_time_tolerance_ms: 2_000,
        };
        let genesis = gridshare_node::genesis_file::build(&options, ORIGIN_MS)?;
        let total = (config.validators + config.household_nodes) as usize;
        let mut nodes = Vec::with_capacity(total);
        let mut peers = BTreeMap::new();
        for index in 0..total {
            let validator_key = validator_keys.get(index);
            let validator = validator_key.is_some();
            let role = if validator { Role::Validator { households: None } } else { Role::Replica };
            let index_db = Index::in_memory(&genesis.hash())?;
            let acknowledged = acknowledged::Acknowledged::in_memory()?;
            let core = ChainCore::new(
                genesis.clone(),
                MemoryStore::new(genesis.clone()),
                index_db,
                acknowledged,
                role,
            )?;
            let id = peer_id(seed, index);
            peers.insert(id, index);
            nodes.push(SimNode {
                name: if validator {
                    format!("validator-{index}")
                } else {
                    format!("household-{}", index - config.validators as usize)
                },
                peer_id: id,
                key: validator_key.map(|key| Keypair::from_seed(key.seed())),
                core: Some(core),
                parked: None,
                skew_ms: 0,
                inbox: Inbox::new(config.gossip_queue_per_link_max),
                busy_until_us: 0,
                wake_scheduled: false,
                seen: BTreeSet::new(),
                seen_order: Default::default(),
                awaiting: BTreeMap::new(),
                submissions: BTreeMap::new(),
                next_submission: 0,
                banned: BTreeSet::new(),
                validator: ValidatorState::default(),
                sync_quiet_until_us: 0,
                stats: NodeStats::default(),
                verdicts: BTreeMap::new(),
            });
        }
        let mut network = Network::new(config.links);
        let validators = config.validators as usize;
        for a in 0..validators {
            for b in a + 1..validators {
                network.connect(a, b);
            }
        }
        for household_node in validators..total {
            for validator in 0..validators {
                network.connect(household_node, validator);
            }
        }
        let per_mille = |kind| config.fault(kind).map_or(0, |fault| fault.intensity);
        network.config.loss_per_mille = per_mille(FaultKind::Loss);
        network.config.duplicate_per_mille = per_mille(FaultKind::Duplicate);
        network.config.reorder_per_mille = per_mille(FaultKind::Reorder);
        let keys: Vec<PublicKey> = validator_keys.iter().map(Keypair::public).collect();
        let sequencer = Sequencer::new(&genesis, &keys, market_config.block_time_ms);
        let registrations = registrations(&config, &genesis, &registrar_key, &accounts, &meters);
        let mut world = World {
            random: SplitMix64(seed ^ 0x005E_ED0F_5111_u64),
            scheduler: Scheduler::default(),
            network,
            nodes,
            peers,
            sequencer,
            registrar: Registrar {
                key: registrar_key,
                transactions: registrations,
                queue: Default::default(),
                outstanding: None,
                attempts: 0,
                done: false,
            },
            agents: Vec::new(),
            market: None,
            accounts,
            meters,
            journal: Journal::default(),
            flood: None,
            trading: None,
            planned: Vec::new(),
            clearings: BTreeMap::new(),
            reached_validator: BTreeSet::new(),
            agents_finished: 0,
            drain_deadline_us: None,
            drain_target: None,
            problems: Vec::new(),
            ladder,
            ended: false,
            genesis,
            config,
        };
        for node in 0..total {
            // Ticks spread over the tick interval, so nodes do not tick together.
            world.scheduler.at(1 + (node as u64 * 7_919) % TICK_US, Event::Tick(node));
            for peer in world.network.links(node).collect::<Vec<_>>() {
                world.push(node, Inbound { from: From::Local, message: Message::Connected(peer) });
            }
        }
        world.sequencer.height_started_us = world.sequencer.block_time_us;
        world.scheduler.at(world.sequencer.block_time_us, Event::StartRound { height: 1, round: 0 });
        world.scheduler.at(10_000, Event::RegistrarWake);
        Ok(world)
    }

    /// Runs until the end: the world, ready for the checks.
    pub fn run(&mut self) {
        let limit_us = REGISTRATION_LIMIT_US
            + (self.config.intervals + 4) * self.config.market.interval_ms * 1_000
            + DRAIN_LIMIT_US
            + 2 * SETTLE_US;
        while let Some((now_us, event)) = self.scheduler.pop() {
            if now_us > limit_us {
                self.problems
                    .push(format!("the run did not end within {} s of simulated time", limit_us / 1_000_000));
                break;
            }
            self.handle(event);
            if self.ended {
                break;
            }
        }
    }

    pub fn now_us(&self) -> TimeUs {
        self.scheduler.now_us()
    }

    /// The agents' clock (the true time).
    fn now_ms(&self) -> u64 {
        ORIGIN_MS + self.now_us() / 1_000
    }

    pub fn market(&self) -> Option<&Market> {
        self.market.as_deref()
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Arrive { node, inbound, deadline_us } => self.arrive(node, inbound, deadline_us),
            Event::Wake(node) => self.wake(node),
            Event::Tick(node) => {
                if self.nodes[node].is_up() {
                    self.push(node, Inbound { from: From::Local, message: Message::Tick });
                }
                self.scheduler.after(TICK_US, Event::Tick(node));
            }
            Event::Answer { client, attempt, result } => self.answered(client, attempt, result),
            Event::Timeout { client, attempt } => self.timed_out(client, attempt),
            Event::Resume(client) => self.send_next(client),
            Event::AgentWake(household) => self.agent_wake(household),
            Event::RegistrarWake => self.registrar_wake(),
            Event::StartRound { height, round } => self.start_round(height, round),
            Event::RoundTimeout { height, round } => {
                if self.sequencer.current(height, round) && !self.sequencer.stopped {
                    self.sequencer.rounds_timed_out += 1;
                    self.sequencer.round = round + 1;
                    self.start_round(height, round + 1);
                }
            }
            Event::Crash { node, down_us } => self.crash(node, down_us),
            Event::Restart(node) => self.restart(node),
            Event::PartitionStart { group, duration_us } => {
                let number = self.network.partition(group.clone());
                self.scheduler.after(duration_us, Event::PartitionEnd { number, group });
            }
            Event::PartitionEnd { number, group } => {
                self.network.heal(number);
                for &inside in &group {
                    let outside: Vec<NodeId> =
                        self.network.links(inside).filter(|peer| !group.contains(peer)).collect();
                    for peer in outside {
                        self.connect(inside, peer);
                    }
                }
            }
            Event::Flood => self.flood_send(),
            Event::DrainCheck => self.drain_check(),
            Event::End => self.ended = true,
        }
    }

    // ----- Nodes: inboxes, CPU, the core -----

    /// Puts `inbound` in `node`'s inbox now.
    fn push(&mut self, node: NodeId, inbound: Inbound) {
        self.nodes[node].inbox.push(inbound.message.source(), inbound);
        self.ensure_wake(node);
    }

    fn ensure_wake(&mut self, node: NodeId) {
        let state = &mut self.nodes[node];
        if state.wake_scheduled || state.inbox.is_empty() || !state.is_up() {
            return;
        }
        state.wake_scheduled = true;
        let at_us = state.busy_until_us.max(self.scheduler.now_us());
        self.scheduler.at(at_us, Event::Wake(node));
    }

    /// A message reaches `node`: dropped if the node is down, the sender is
    /// banned or cut off, or (gossip) it was seen already or its link's
    /// queue is full; queued otherwise.
    fn arrive(&mut self, node: NodeId, inbound: Inbound, deadline_us: Option<TimeUs>) {
        let now_us = self.now_us();
        if let From::Peer(peer) = inbound.from
            && (self.nodes[node].banned.contains(&peer) || self.network.cut(peer, node))
        {
            return;
        }
        let state = &mut self.nodes[node];
        if !state.is_up() {
            state.stats.lost_while_down += 1;
            return;
        }
        if let From::Peer(_) = inbound.from {
            state.stats.messages_received += 1;
            state.stats.bytes_received += inbound.message.wire_bytes();
        }
        match (&inbound.message, inbound.from, deadline_us) {
            (Message::Gossip { id, kind, .. }, From::Peer(peer), Some(deadline_us)) => {
                if state.seen.contains(id) {
                    state.stats.duplicates += 1;
                    return;
                }
                // Full (more arrived while these were in flight): refused
                // and counted by the inbox.
                let kind = *kind;
                let _ = state.inbox.push_gossip(peer, kind, deadline_us.max(now_us), inbound);
            }
            _ => state.inbox.push(inbound.message.source(), inbound),
        }
        self.ensure_wake(node);
    }

    /// `node`'s CPU takes the next item of its inbox (and, for a
    /// transaction, those queued right behind it, as one batch), hands them
    /// to the core and carries out the effects when it is done.
    fn wake(&mut self, node: NodeId) {
        let now_us = self.now_us();
        self.nodes[node].wake_scheduled = false;
        if !self.nodes[node].is_up() {
            return;
        }
        let random = &mut self.random;
        let Some((source, first)) = self.nodes[node].inbox.pop(now_us, |ready| random.next_u64() % ready)
        else {
            return;
        };
        let mut work = Work::default();
        let batching = first.message.is_transaction();
        self.handle_inbound(node, first, &mut work);
        // The loop takes the events of the same source already queued
        // behind a transaction, while the batch has room.
        while batching && self.nodes[node].core.as_ref().is_some_and(|core| core.batch_open()) {
            let Some(next) = self.nodes[node].inbox.pop_from(source, now_us, |_| true) else { break };
            self.handle_inbound(node, next, &mut work);
        }
        let now_ms = self.nodes[node].clock_ms(ORIGIN_MS, now_us);
        if let Some(core) = self.nodes[node].core.as_mut() {
            let effects = core.verify_batch(now_ms);
            self.carry_out(node, effects, true, &mut work);
        }
        let depart_us = now_us + work.cost_us;
        let state = &mut self.nodes[node];
        state.busy_until_us = depart_us;
        state.stats.cpu_us += work.cost_us;
        for output in work.outputs {
            self.dispatch(node, depart_us, output);
        }
        self.ensure_wake(node);
    }

    /// Sends `output` of `node` at `depart_us`.
    fn dispatch(&mut self, node: NodeId, depart_us: TimeUs, output: Output) {
        match output {
            Output::Gossip { to, topic, id, bytes, kind } => {
                let message = Message::Gossip { topic, id, bytes, kind };
                self.transmit(node, to, depart_us, message, Some(depart_us + kind.timeout_us()));
            }
            Output::Send { to, message } => self.transmit(node, to, depart_us, message, None),
            Output::Local(message) => {
                let inbound = Inbound { from: From::Local, message };
                self.scheduler.at(depart_us, Event::Arrive { node, inbound, deadline_us: None });
            }
            Output::Answer { client, attempt, result } => {
                self.scheduler.at(depart_us + API_LATENCY_US, Event::Answer { client, attempt, result });
            }
        }
    }

    fn transmit(
        &mut self,
        from: NodeId,
        to: NodeId,
        depart_us: TimeUs,
        message: Message,
        deadline_us: Option<TimeUs>,
    ) {
        if let Some(state) = self.nodes.get_mut(from) {
            state.stats.messages_sent += 1;
            state.stats.bytes_sent += message.wire_bytes();
        }
        let arrivals = self.network.transmit(&mut self.random, from, to, depart_us);
        for arrival_us in arrivals {
            let inbound = Inbound { from: From::Peer(from), message: message.clone() };
            self.scheduler.at(arrival_us, Event::Arrive { node: to, inbound, deadline_us });
        }
    }

    /// The peers `node` gossips to: linked, up, not cut off, not banned
    /// either way, and not `except`.
    fn gossip_peers(&self, node: NodeId, except: Option<NodeId>) -> Vec<NodeId> {
        self.network
            .links(node)
            .filter(|peer| {
                Some(*peer) != except
                    && self
                        .nodes
                        .get(*peer)
                        .is_some_and(|state| state.is_up() && !state.banned.contains(&node))
                    && !self.nodes[node].banned.contains(peer)
                    && !self.network.cut(node, *peer)
            })
            .collect()
    }

    fn node_of(&self, peer: &PeerId) -> Option<NodeId> {
        self.peers.get(peer).copied()
    }

    /// Hands one inbound item to `node`'s core or its part in the sequencer.
    fn handle_inbound(&mut self, node: NodeId, inbound: Inbound, work: &mut Work) {
        let now_us = self.now_us();
        let now_ms = self.nodes[node].clock_ms(ORIGIN_MS, now_us);
        let costs = self.config.costs;
        let Inbound { from, message } = inbound;
        match message {
            Message::Gossip { topic, id, bytes, .. } => {
                let From::Peer(peer) = from else { return };
                if !self.nodes[node].see(&id, now_us) {
                    self.nodes[node].stats.duplicates += 1;
                    return;
                }
                let source = self.nodes.get(peer).map_or_else(|| self.flood_peer_id(), |state| state.peer_id);
                let state = &mut self.nodes[node];
                state
                    .awaiting
                    .insert(id.clone(), AwaitingVerdict { topic, bytes: bytes.clone(), from: peer });
                let Some(core) = state.core.as_mut() else { return };
                let effects = core.handle_gossip(now_ms, topic, id, source, &bytes);
                work.cost_us += costs.cheap_us;
                self.carry_out(node, effects, false, work);
            }
            Message::Submit { tx, attempt } => {
                let From::Client(client) = from else { return };
                let state = &mut self.nodes[node];
                let submission = Submission(state.next_submission);
                state.next_submission += 1;
                state.submissions.insert(submission, (client, attempt));
                let Some(core) = state.core.as_mut() else { return };
                let effects = core.handle_submission(now_ms, submission, *tx);
                self.carry_out(node, effects, false, work);
            }
            Message::SyncRequest(request) => {
                let From::Peer(peer) = from else { return };
                let Some(core) = self.nodes[node].core.as_ref() else { return };
                let response = core.serve_sync(&request);
                work.cost_us += costs.serve_us;
                work.outputs
                    .push(Output::Send { to: peer, message: Message::SyncResponse(Arc::new(response)) });
            }
            Message::SyncResponse(response) => {
                let From::Peer(peer) = from else { return };
                let Some(peer_id) = self.nodes.get(peer).map(|state| state.peer_id) else { return };
                let Some(core) = self.nodes[node].core.as_mut() else { return };
                let effects = core.handle_sync_response(now_ms, peer_id, (*response).clone());
                work.cost_us += costs.serve_us;
                self.carry_out(node, effects, false, work);
            }
            Message::TransactionsRequest(request) => {
                let From::Peer(peer) = from else { return };
                let Some(core) = self.nodes[node].core.as_ref() else { return };
                let response = core.serve_transactions(&request);
                work.cost_us += costs.serve_us;
                if !response.transactions.is_empty() {
                    work.outputs
                        .push(Output::Send { to: peer, message: Message::Transactions(Arc::new(response)) });
                }
            }
            Message::Transactions(response) => {
                let From::Peer(peer) = from else { return };
                let Some(peer_id) = self.nodes.get(peer).map(|state| state.peer_id) else { return };
                let Some(core) = self.nodes[node].core.as_mut() else { return };
                work.cost_us += costs.cheap_us * response.transactions.len() as u64;
                let effects = core.handle_transactions(now_ms, peer_id, (*response).clone());
                self.carry_out(node, effects, false, work);
            }
            Message::Propose { height, round } => self.propose(node, height, round, now_ms, work),
            Message::Proposal { height, round, block, .. } => {
                let From::Peer(peer) = from else { return };
                self.on_proposal(node, peer, height, round, &block, now_ms, work);
            }
            Message::Vote { height, round, block_hash, signature } => {
                let From::Peer(peer) = from else { return };
                work.cost_us += costs.cheap_us;
                self.on_vote(node, peer, height, round, block_hash, signature, work);
            }
            Message::Commit { certified, .. } => {
                let sender = match from {
                    From::Peer(peer) => Some(peer),
                    _ => None,
                };
                self.on_commit(node, sender, &certified, now_ms, work);
            }
            Message::Connected(peer) => {
                let peer_id = self.nodes[peer].peer_id;
                let Some(core) = self.nodes[node].core.as_mut() else { return };
                let mut effects = core.handle_peer_connected(peer_id);
                effects.extend(core.handle_subscribed());
                work.cost_us += costs.cheap_us;
                self.carry_out(node, effects, false, work);
            }
            Message::Tick => {
                self.nodes[node].forget_seen(now_us);
                let Some(core) = self.nodes[node].core.as_mut() else { return };
                let effects = core.tick(now_ms);
                work.cost_us += costs.cheap_us;
                self.carry_out(node, effects, false, work);
            }
        }
    }

    /// Carries out the core's effects as the node's loop would; `verified`:
    /// they come from a batch verification, so each transaction judged cost
    /// its full price.
    fn carry_out(&mut self, node: NodeId, effects: Vec<Effect>, verified: bool, work: &mut Work) {
        let costs = self.config.costs;
        let now_us = self.now_us();
        for effect in effects {
            match effect {
                Effect::Publish { topic, bytes, transaction } => {
                    // As gossipsub's `publish`: refused as a duplicate if
                    // seen; with no peer, refused before the message is
                    // remembered; otherwise remembered, then queued to each
                    // peer whose queue has room, and failed if none had.
                    let id = message_id(&bytes);
                    if self.nodes[node].seen.contains(&id) {
                        // The node's loop takes a duplicate as published.
                        continue;
                    }
                    let peers = self.gossip_peers(node, None);
                    let queued: Vec<NodeId> = peers
                        .iter()
                        .copied()
                        .filter(|peer| !self.nodes[*peer].inbox.gossip_full(node, Gossip::Published))
                        .collect();
                    if !peers.is_empty() {
                        self.nodes[node].see(&id, now_us);
                        self.nodes[node].stats.publish_failed += (peers.len() - queued.len()) as u64;
                    }
                    if queued.is_empty() {
                        if let Some(transaction) = transaction
                            && let Some(core) = self.nodes[node].core.as_mut()
                        {
                            core.publish_failed(transaction);
                        }
                        continue;
                    }
                    let bytes: Arc<[u8]> = bytes.into();
                    for to in queued {
                        work.outputs.push(Output::Gossip {
                            to,
                            topic,
                            id: id.clone(),
                            bytes: bytes.clone(),
                            kind: Gossip::Published,
                        });
                    }
                }
                Effect::Verdict { topic, message_id, verdict, .. } => {
                    // A transaction judged after the batch verification cost
                    // its share of it; one judged at once, only the cheap
                    // look the gossip message got on arrival.
                    if topic == Topic::Transactions && verified {
                        work.cost_us += costs.gossip_tx_us;
                    }
                    let awaiting = self.nodes[node].awaiting.remove(&message_id);
                    if let Some(flood) = self.flood.as_mut()
                        && let Some(kind) = flood.kinds.get(&message_id)
                    {
                        *flood.verdicts.entry(format!("{kind} {}", verdict.label())).or_default() += 1;
                        if matches!(verdict, Verdict::Accept) {
                            flood.accepted += 1;
                        }
                    }
                    if topic == Topic::Transactions {
                        *self.nodes[node].verdicts.entry(verdict_key(&verdict)).or_default() += 1;
                        if matches!(verdict, Verdict::Accept) && self.nodes[node].is_validator() {
                            self.reached_validator.insert(message_id.clone());
                        }
                    }
                    if let (Verdict::Accept, Some(awaiting)) = (verdict, awaiting) {
                        for to in self.gossip_peers(node, Some(awaiting.from)) {
                            if self.nodes[to].inbox.gossip_full(node, Gossip::Forwarded) {
                                self.nodes[node].stats.forward_failed += 1;
                                continue;
                            }
                            work.outputs.push(Output::Gossip {
                                to,
                                topic: awaiting.topic,
                                id: message_id.clone(),
                                bytes: awaiting.bytes.clone(),
                                kind: Gossip::Forwarded,
                            });
                        }
                    }
                }
                Effect::Ban { peer } => {
                    if let Some(banned) = self.node_of_any(&peer) {
                        self.nodes[node].banned.insert(banned);
                        if let Some(flood) = self.flood.as_mut()
                            && flood.node == banned
                        {
                            flood.banned_by.insert(node);
                        }
                    }
                }
                Effect::Unban { peer } => {
                    if let Some(banned) = self.node_of_any(&peer) {
                        self.nodes[node].banned.remove(&banned);
                    }
                }
                Effect::RequestBlocks { peer, request } => {
                    if let Some(to) = self.node_of(&peer) {
                        work.cost_us += costs.cheap_us;
                        work.outputs.push(Output::Send { to, message: Message::SyncRequest(request) });
                    }
                }
                Effect::Event(event) => match event {
                    CoreEvent::Block { transactions, .. } => {
                        work.cost_us += costs.block_base_us + costs.block_tx_us * transactions as u64;
                    }
                    CoreEvent::Clearing { receipt, .. } => {
                        let done_ms = ORIGIN_MS + (now_us + work.cost_us) / 1_000;
                        let gate_ms = self.genesis.gate_closure_ms(receipt.interval).unwrap_or(done_ms);
                        self.clearings
                            .entry((node, receipt.interval))
                            .or_insert(done_ms.saturating_sub(gate_ms));
                    }
                    CoreEvent::Settlement { .. } => {}
                },
                Effect::Answer { submission, result } => {
                    work.cost_us += if verified { costs.submission_us } else { costs.cheap_us };
                    if let Some((client, attempt)) = self.nodes[node].submissions.remove(&submission) {
                        work.outputs.push(Output::Answer { client, attempt, result });
                    }
                }
                Effect::Count(Count::TransactionsReceived(count)) => {
                    // Verified in the batch like gossiped ones.
                    work.cost_us += costs.gossip_tx_us * count;
                }
                Effect::Count(_) => {}
                Effect::RequestTransactions { peer, request } => {
                    if let Some(to) = self.node_of(&peer) {
                        work.cost_us += costs.cheap_us;
                        work.outputs
                            .push(Output::Send { to, message: Message::TransactionsRequest(request) });
                    }
                }
                Effect::Announce { transactions } => {
                    let announced = Arc::new(TransactionsResponse { transactions });
                    for to in self.gossip_peers(node, None) {
                        work.outputs
                            .push(Output::Send { to, message: Message::Transactions(announced.clone()) });
                    }
                }
                Effect::Dropped { id, dropped } => {
                    self.journal.drop(id, Dropped { node, reason: dropped.reason, at_us: now_us });
                }
            }
        }
    }

    /// The node of `peer`, the flooding peer included.
    fn node_of_any(&self, peer: &PeerId) -> Option<NodeId> {
        self.node_of(peer)
            .or_else(|| self.flood.as_ref().filter(|flood| flood.peer_id == *peer).map(|flood| flood.node))
    }

    fn flood_peer_id(&self) -> PeerId {
        self.flood.as_ref().map_or_else(|| peer_id(self.config.seed, usize::MAX), |flood| flood.peer_id)
    }

    /// Asks `peer` for the blocks after `node`'s tip, unless it asked
    /// recently.
    fn request_sync(&mut self, node: NodeId, peer: NodeId, work: &mut Work) {
        let now_us = self.now_us();
        let state = &mut self.nodes[node];
        if now_us < state.sync_quiet_until_us {
            return;
        }
        state.sync_quiet_until_us = now_us + SYNC_QUIET_US;
        let request = SyncRequest { from_height: state.height() + 1, max_blocks: SYNC_BLOCKS_MAX };
        work.outputs.push(Output::Send { to: peer, message: Message::SyncRequest(request) });
    }

    /// `a` and `b` (re)connect: each core hears of the other.
    fn connect(&mut self, a: NodeId, b: NodeId) {
        if a >= self.nodes.len() || b >= self.nodes.len() {
            // The flooding peer is no node: nobody hears of its connections.
            return;
        }
        if !self.nodes[a].is_up() || !self.nodes[b].is_up() || !self.network.reachable(a, b) {
            return;
        }
        self.push(a, Inbound { from: From::Local, message: Message::Connected(b) });
        self.push(b, Inbound { from: From::Local, message: Message::Connected(a) });
    }

    // ----- The sequencer -----

    fn start_round(&mut self, height: u64, round: u32) {
        if self.sequencer.stopped || !self.sequencer.current(height, round) {
            return;
        }
        let proposer = self.sequencer.proposer(height, round);
        if self.nodes[proposer].is_up() {
            self.push(proposer, Inbound { from: From::Local, message: Message::Propose { height, round } });
        }
        self.scheduler.after(Sequencer::timeout_us(round), Event::RoundTimeout { height, round });
    }

    /// `node`'s turn to propose at (`height`, `round`): it builds from its
    /// mempool at its clock and sends the block to the other validators.
    fn propose(&mut self, node: NodeId, height: u64, round: u32, now_ms: u64, work: &mut Work) {
        if !self.sequencer.current(height, round) || self.sequencer.stopped {
            return;
        }
        let tip = self.nodes[node].height();
        if tip + 1 != height {
            // Behind: the blocks it lacks come from the next validator.
            if tip + 1 < height {
                let peer = self.sequencer.proposer(height, round + 1);
                if peer != node {
                    self.request_sync(node, peer, work);
                }
            }
            return;
        }
        let costs = self.config.costs;
        let state = &mut self.nodes[node];
        let (Some(core), Some(key)) = (state.core.as_mut(), state.key.as_ref()) else { return };
        let built = {
            let mut chain = core.at(now_ms);
            let time_ms = chain.next_block_time_ms();
            let candidates = chain.candidates(time_ms);
            chain.build(candidates, time_ms, key)
        };
        let effects = core.take_effects();
        let (block, after) = match built {
            Ok(built) => built,
            Err(error) => {
                self.problems.push(format!("{} could not build block {height}: {error}", state.name));
                return;
            }
        };
        let transactions = block.transactions.len() as u64;
        work.cost_us += costs.block_base_us + costs.build_tx_us * transactions;
        let hash = block.header.hash();
        let signature = sign_precommit(key, &self.genesis, height, round, hash);
        let power = self.sequencer.power[node];
        let bytes = to_bytes(&block).len();
        let block = Arc::new(block);
        state.validator.checked.insert(hash, after);
        state.validator.proposing = Some(Proposing {
            height,
            round,
            block: block.clone(),
            votes: vec![signature],
            power,
            decided: false,
        });
        self.carry_out(node, effects, false, work);
        for validator in 0..self.config.validators as usize {
            if validator != node {
                let message = Message::Proposal { height, round, block: block.clone(), bytes };
                work.outputs.push(Output::Send { to: validator, message });
            }
        }
        self.certify_if_quorum(node, work);
    }

    /// A proposal from `proposer`: checked against the tip and the
    /// validator's clock, and voted for if valid.
    #[allow(clippy::too_many_arguments)]
    fn on_proposal(
        &mut self,
        node: NodeId,
        proposer: NodeId,
        height: u64,
        round: u32,
        block: &gridshare_ledger::block::Block,
        now_ms: u64,
        work: &mut Work,
    ) {
        let costs = self.config.costs;
        work.cost_us += costs.cheap_us;
        if self.sequencer.proposer(height, round) != proposer {
            return;
        }
        let tip = self.nodes[node].height();
        if tip + 1 < height {
            self.request_sync(node, proposer, work);
            return;
        }
        if tip + 1 > height || block.header.height != height {
            return;
        }
        let state = &mut self.nodes[node];
        if !timely(block.header.timestamp_ms, now_ms, self.genesis.market.block_time_tolerance_ms) {
            state.stats.proposals_refused_time += 1;
            return;
        }
        let (Some(core), Some(key)) = (state.core.as_mut(), state.key.as_ref()) else { return };
        work.cost_us += costs.block_base_us + costs.block_tx_us * block.transactions.len() as u64;
        match core.at(now_ms).check(block) {
            Ok(after) => {
                let hash = block.header.hash();
                state.validator.checked.insert(hash, after);
                let signature = sign_precommit(key, &self.genesis, height, round, hash);
                let message = Message::Vote { height, round, block_hash: hash, signature };
                work.outputs.push(Output::Send { to: proposer, message });
            }
            Err(_) => state.stats.proposals_refused_invalid += 1,
        }
    }

    /// A precommit for `node`'s proposal.
    #[allow(clippy::too_many_arguments)]
    fn on_vote(
        &mut self,
        node: NodeId,
        voter: NodeId,
        height: u64,
        round: u32,
        block_hash: Hash,
        signature: CommitSignature,
        work: &mut Work,
    ) {
        let Some(voter_key) = self.nodes[voter].key.as_ref().map(Keypair::public) else { return };
        let power = self.sequencer.power[voter];
        let vote = Vote {
            kind: VoteKind::Precommit,
            height,
            round,
            block_hash: Some(block_hash),
            validator: voter_key,
        };
        if signature.validator != voter_key
            || voter_key
                .verify(&vote.signing_bytes(&self.genesis.community_id), &signature.signature)
                .is_err()
        {
            self.problems.push(format!("a precommit from {} does not verify", self.nodes[voter].name));
            return;
        }
        let Some(proposing) = self.nodes[node].validator.proposing.as_mut() else { return };
        if proposing.height != height
            || proposing.round != round
            || proposing.decided
            || proposing.block.header.hash() != block_hash
            || proposing.votes.iter().any(|vote| vote.validator == voter_key)
        {
            return;
        }
        proposing.votes.push(signature);
        proposing.power += power;
        self.certify_if_quorum(node, work);
    }

    /// Certifies `node`'s proposal once its votes are a quorum in the round
    /// in force, and sends the certified block to every validator.
    fn certify_if_quorum(&mut self, node: NodeId, work: &mut Work) {
        let sequencer = &self.sequencer;
        let Some(proposing) = self.nodes[node].validator.proposing.as_mut() else { return };
        if proposing.decided
            || !sequencer.quorum(proposing.power)
            || !sequencer.current(proposing.height, proposing.round)
        {
            return;
        }
        proposing.decided = true;
        let mut signatures = proposing.votes.clone();
        signatures.sort_by_key(|signature| signature.validator);
        let certificate = CommitCertificate {
            height: proposing.height,
            round: proposing.round,
            block_hash: proposing.block.header.hash(),
            signatures,
        };
        let certified = Arc::new(CertifiedBlock { block: (*proposing.block).clone(), certificate });
        let height = proposing.height;
        let bytes = to_bytes(&*certified).len();
        // The next height starts once the commits can have arrived.
        let decided_us = self.scheduler.now_us() + work.cost_us + self.network.config.latency_us_max;
        let next_us = self.sequencer.decided(height, decided_us);
        if !self.sequencer.stopped {
            self.scheduler.at(next_us, Event::StartRound { height: height + 1, round: 0 });
        }
        for validator in 0..self.config.validators as usize {
            let message = Message::Commit { certified: certified.clone(), bytes };
            if validator == node {
                work.outputs.push(Output::Local(message));
            } else {
                work.outputs.push(Output::Send { to: validator, message });
            }
        }
    }

    /// A certified block for a validator: committed if it is the next one.
    fn on_commit(
        &mut self,
        node: NodeId,
        sender: Option<NodeId>,
        certified: &CertifiedBlock,
        now_ms: u64,
        work: &mut Work,
    ) {
        let costs = self.config.costs;
        work.cost_us += costs.cheap_us;
        let height = certified.block.header.height;
        let tip = self.nodes[node].height();
        if height <= tip {
            return;
        }
        if height > tip + 1 {
            if let Some(sender) = sender {
                self.request_sync(node, sender, work);
            }
            return;
        }
        let state = &mut self.nodes[node];
        let name = state.name.clone();
        let Some(core) = state.core.as_mut() else { return };
        if let Err(error) = certified.certificate.verify(&self.genesis, &certified.block.header) {
            self.problems
                .push(format!("{name} got block {height} with a certificate that does not verify: {error}"));
            return;
        }
        let hash = certified.block.header.hash();
        let after = match state.validator.checked.remove(&hash) {
            Some(after) => after,
            None => match core.at(now_ms).check(&certified.block) {
                Ok(after) => after,
                Err(error) => {
                    self.problems.push(format!("{name} cannot execute certified block {height}: {error}"));
                    return;
                }
            },
        };
        if let Err(error) = core.at(now_ms).commit(certified.clone(), after) {
            self.problems.push(format!("{name} cannot commit block {height}: {error}"));
            return;
        }
        state.validator.checked.clear();
        if state.validator.proposing.as_ref().is_some_and(|proposing| proposing.height <= height) {
            state.validator.proposing = None;
        }
        let effects = core.take_effects();
        self.carry_out(node, effects, false, work);
    }

    // ----- Clients: the registrar and the households' agents -----

    /// The node a client submits to.
    fn client_node(&self, client: Client) -> NodeId {
        match client {
            Client::Registrar => 0,
            Client::Household(household) => self.agents[household as usize].node,
        }
    }

    /// Sends the client's next queued submission, if it waits for no answer.
    fn send_next(&mut self, client: Client) {
        let node = self.client_node(client);
        loop {
            if self.outstanding_mut(client).is_some() {
                return;
            }
            let Some(pending) = self.queue_mut(client).pop_front() else { return };
            if !self.nodes[node].is_up() {
                self.journal.skipped_node_down += 1;
                if matches!(pending, Pending::Offer { .. }) {
                    // No answer: the rest of the round waits for the next.
                    self.queue_mut(client).retain(|pending| !matches!(pending, Pending::Offer { .. }));
                }
                continue;
            }
            let tx = match &pending {
                Pending::Signed { tx, .. } => (**tx).clone(),
                Pending::Offer { offers, slice } => {
                    let Client::Household(household) = client else { return };
                    let account = self.agents[household as usize].account.public();
                    // Each round starts from the node's count, as the
                    // testnet's agent asks `/v1/nonces`.
                    let known = self.nodes[node].core.as_ref().and_then(|core| {
                        core.mempool().pending().accounts.get(&account).map(|known| known.last_nonce)
                    });
                    let agent = &mut self.agents[household as usize];
                    if *slice == 0
                        && let Some(known) = known
                    {
                        agent.nonce = known;
                    }
                    let offer = offers.offer(account, agent.nonce + 1, &offers.planned[*slice]);
                    SignedTx::sign(Tx::Offer(offer), &agent.account, &self.genesis.community_id)
                }
            };
            let attempt = match client {
                Client::Registrar => {
                    self.registrar.attempts += 1;
                    self.registrar.attempts
                }
                Client::Household(household) => {
                    let agent = &mut self.agents[household as usize];
                    agent.attempts += 1;
                    agent.attempts
                }
            };
            *self.outstanding_mut(client) = Some(Outstanding { attempt, pending, tx: tx.clone() });
            let inbound = Inbound {
                from: From::Client(client),
                message: Message::Submit { tx: Box::new(tx), attempt },
            };
            self.scheduler.after(API_LATENCY_US, Event::Arrive { node, inbound, deadline_us: None });
            self.scheduler.after(REQUEST_TIMEOUT_US, Event::Timeout { client, attempt });
            return;
        }
    }

    fn queue_mut(&mut self, client: Client) -> &mut std::collections::VecDeque<Pending> {
        match client {
            Client::Registrar => &mut self.registrar.queue,
            Client::Household(household) => &mut self.agents[household as usize].queue,
        }
    }

    fn outstanding_mut(&mut self, client: Client) -> &mut Option<Outstanding> {
        match client {
            Client::Registrar => &mut self.registrar.outstanding,
            Client::Household(household) => &mut self.agents[household as usize].outstanding,
        }
    }

    fn answered(&mut self, client: Client, attempt: u64, result: Result<Hash, SubmitError>) {
        let slot = self.outstanding_mut(client);
        if slot.as_ref().is_none_or(|outstanding| outstanding.attempt != attempt) {
            // Answered after the client gave up.
            return;
        }
        let Some(outstanding) = slot.take() else { return };
        let node = self.client_node(client);
        let kind = outstanding.tx.tx.kind();
        match result {
            Ok(id) => {
                let household = match client {
                    Client::Household(household) => {
                        if let (Pending::Offer { .. }, Some(nonce)) =
                            (&outstanding.pending, outstanding.tx.tx.nonce())
                        {
                            self.agents[household as usize].nonce = nonce;
                        }
                        Some(household)
                    }
                    Client::Registrar => None,
                };
                let acknowledged = Acknowledged {
                    kind,
                    message_id: message_id(&to_bytes(&outstanding.tx)),
                    household,
                    node,
                    interval: interval_of(&outstanding.tx),
                    acknowledged_us: self.now_us(),
                };
                self.journal.acknowledge(id, acknowledged);
            }
            Err(error) => {
                self.journal.refuse(kind, &error);
                match (client, &outstanding.pending) {
                    (Client::Registrar, _) if is_busy(&error) => self.registrar.queue.clear(),
                    (Client::Registrar, _) if matches!(error, SubmitError::Duplicate(_)) => {}
                    (Client::Registrar, _) => {
                        self.problems.push(format!("the registrar's {kind} was refused: {error}"));
                        self.registrar.queue.clear();
                    }
                    (Client::Household(household), Pending::Signed { give_up_ms, .. })
                        if is_early_reading(&error)
                            && self.now_ms() + READING_RETRY_US / 1_000 <= *give_up_ms =>
                    {
                        self.agents[household as usize].queue.push_front(outstanding.pending);
                        self.scheduler.after(READING_RETRY_US, Event::Resume(client));
                        return;
                    }
                    _ => {}
                }
            }
        }
        self.send_next(client);
    }

    fn timed_out(&mut self, client: Client, attempt: u64) {
        let slot = self.outstanding_mut(client);
        if slot.as_ref().is_none_or(|outstanding| outstanding.attempt != attempt) {
            return;
        }
        let Some(outstanding) = slot.take() else { return };
        self.journal.unanswered += 1;
        if let (Client::Household(household), Pending::Offer { .. }) = (client, &outstanding.pending) {
            // It may have been admitted: the round ends, the next one asks
            // the node for the nonce again.
            self.agents[household as usize].queue.retain(|pending| !matches!(pending, Pending::Offer { .. }));
        }
        self.send_next(client);
    }

    fn registrar_wake(&mut self) {
        if self.registrar.done {
            return;
        }
        let registrar = self.registrar.key.public();
        let total = self.registrar.transactions.len() as u64;
        let everywhere = self.nodes.iter().all(|node| {
            node.core
                .as_ref()
                .is_some_and(|core| core.state().registrar_nonces.get(&registrar).copied() == Some(total))
        });
        if everywhere || total == 0 {
            self.registrar.done = true;
            self.start_trading();
            return;
        }
        if self.now_us() > REGISTRATION_LIMIT_US {
            self.problems.push(format!(
                "the registrations were not on every node after {} s",
                REGISTRATION_LIMIT_US / 1_000_000
            ));
            self.ended = true;
            return;
        }
        if self.registrar.outstanding.is_none() && self.registrar.queue.is_empty() {
            let done = self.nodes[0].core.as_ref().map_or(0, |core| {
                core.mempool().pending().registrar_nonces.get(&registrar).copied().unwrap_or(0)
            });
            let done = usize::try_from(done).unwrap_or(usize::MAX).min(self.registrar.transactions.len());
            let queue: Vec<Pending> = self.registrar.transactions[done..]
                .iter()
                .map(|tx| Pending::Signed { tx: Box::new(tx.clone()), interval: None, give_up_ms: 0 })
                .collect();
            self.registrar.queue.extend(queue);
            self.send_next(Client::Registrar);
        }
        self.scheduler.after(self.sequencer.block_time_us, Event::RegistrarWake);
    }

    /// Trading starts now: the market's calendar, one agent per household,
    /// the faults.
    fn start_trading(&mut self) {
        let seed = self.config.seed;
        let market_config = self.config.market;
        let start_us = self.now_us();
        let start_ms = self.now_ms();
        let first_interval = self.genesis.interval_at(start_ms);
        let last_interval = first_interval + self.config.intervals;
        let market = Arc::new(Market {
            genesis: self.genesis.clone(),
            simulation: Simulation::new(seed, &market_config.profiles),
            tariffs: market_config.tariffs,
            seed,
            offers_per_interval: self.ladder,
            first_interval,
            last_interval,
            offset_spread_ms: (market_config.interval_ms / 4)
                .min(market_config.settlement_delay_ms / 2)
                .saturating_sub(100)
                .max(1),
        });
        let validators = self.config.validators as usize;
        let household_nodes = self.config.household_nodes as usize;
        for (index, traits) in
            community_traits(seed, &market_config.profiles, self.config.households).into_iter().enumerate()
        {
            let household = u32::try_from(index).unwrap_or(u32::MAX);
            // Its meter is billed from its registration on: the agent reports
            // every interval from there, at zero until trading starts.
            let meter = self.meters[index].public();
            let registered = self.nodes[0].core.as_ref().and_then(|core| {
                core.mempool().pending().meters.get(&meter).map(|meter| meter.registered_interval)
            });
            let household_state = Household::new(household, traits);
            let decisions = match registered {
                Some(interval) => Agent::reporting_from(household_state, &market, interval),
                None => Agent::new(household_state, &market),
            };
            let agent = HouseholdAgent {
                decisions,
                account: Keypair::from_seed(self.accounts[index].seed()),
                meter: Keypair::from_seed(self.meters[index].seed()),
                node: validators + index % household_nodes,
                nonce: 0,
                queue: Default::default(),
                outstanding: None,
                attempts: 0,
                finished: false,
            };
            self.agents.push(agent);
            let offset_ms = if first_interval > 0 { market.offset_ms(household) } else { 0 };
            self.scheduler.after(offset_ms * 1_000, Event::AgentWake(household));
        }
        let end_ms = self.genesis.interval_end_ms(last_interval).unwrap_or(start_ms);
        let end_us = end_ms.saturating_sub(ORIGIN_MS) * 1_000;
        let nodes = Nodes { validators, household_nodes };
        self.planned = plan(seed, &self.config.faults, nodes, start_us, end_us);
        for planned in self.planned.clone() {
            match planned {
                Planned::Skew { node, skew_ms } => self.nodes[node].skew_ms = skew_ms,
                Planned::Crash { node, at_us, down_us } => {
                    self.scheduler.at(at_us, Event::Crash { node, down_us })
                }
                Planned::Partition { group, at_us, duration_us } => {
                    self.scheduler.at(at_us, Event::PartitionStart { group, duration_us });
                }
                Planned::Flood { first_target, at_us, duration_us, rate_per_s } => {
                    let node = self.nodes.len();
                    let peer_id = peer_id(seed, node);
                    self.flood = Some(Flood {
                        node,
                        peer_id,
                        target: first_target,
                        until_us: at_us + duration_us,
                        interval_us: (1_000_000 / rate_per_s.max(1)).max(1),
                        sent: 0,
                        refused_by_ban: 0,
                        kinds: BTreeMap::new(),
                        verdicts: BTreeMap::new(),
                        accepted: 0,
                        banned_by: BTreeSet::new(),
                    });
                    self.network.connect(node, first_target);
                    self.scheduler.at(at_us, Event::Flood);
                }
            }
        }
        let committed = self.nodes[0].core.as_ref().map_or(0, committed_transactions);
        self.trading = Some(Trading {
            start_us,
            end_us,
            first_interval,
            last_interval,
            stats_at_start: self.nodes.iter().map(SimNode::stats).collect(),
            stats_at_end: None,
            committed_at_start: committed,
            committed_at_end: committed,
        });
        self.market = Some(market);
    }

    fn agent_wake(&mut self, household: u32) {
        let now_ms = self.now_ms();
        let Some(market) = self.market.clone() else { return };
        let agent = &mut self.agents[household as usize];
        if agent.finished {
            return;
        }
        let decision = agent.decisions.decide(&market, &agent.meter, now_ms);
        for signed in decision.readings {
            let interval = signed.reading.interval;
            let give_up_ms = self.genesis.settlement_ms(interval).unwrap_or(0).saturating_sub(500);
            let tx = SignedTx { tx: Tx::MeterReading(signed.reading), signature: signed.signature };
            agent.queue.push_back(Pending::Signed { tx: Box::new(tx), interval: Some(interval), give_up_ms });
        }
        if let Some(offers) = decision.offers {
            let offers = Arc::new(offers);
            for slice in 0..offers.planned.len() {
                agent.queue.push_back(Pending::Offer { offers: offers.clone(), slice });
            }
        }
        if decision.finished {
            agent.finished = true;
            self.agents_finished += 1;
            if self.agents_finished == self.agents.len() {
                self.trading_over();
            }
        } else {
            let wake_us = decision.wake_ms.saturating_sub(ORIGIN_MS) * 1_000;
            self.scheduler.at(wake_us, Event::AgentWake(household));
        }
        self.send_next(Client::Household(household));
    }

    /// Every agent reported its last interval: drain.
    fn trading_over(&mut self) {
        let committed = self.nodes[0].core.as_ref().map_or(0, committed_transactions);
        let stats: Vec<NodeStats> = self.nodes.iter().map(SimNode::stats).collect();
        let Some(trading) = self.trading.as_mut() else { return };
        trading.stats_at_end = Some(stats);
        trading.committed_at_end = committed;
        let settlement_ms = self.genesis.settlement_ms(trading.last_interval).unwrap_or(0);
        self.drain_deadline_us = Some(settlement_ms.saturating_sub(ORIGIN_MS) * 1_000 + DRAIN_LIMIT_US);
        self.scheduler.after(DRAIN_CHECK_US, Event::DrainCheck);
    }

    /// The run ends once the last interval settled on a validator and
    /// every node reached that height (or at the deadline): no new height
    /// starts, and messages in flight get a moment to arrive.
    fn drain_check(&mut self) {
        let Some(last_interval) = self.trading.as_ref().map(|trading| trading.last_interval) else { return };
        let reference = (0..self.config.validators as usize)
            .filter(|node| self.nodes[*node].is_up())
            .max_by_key(|node| (self.nodes[*node].height(), std::cmp::Reverse(*node)));
        if let Some(reference) = reference
            && let Some(core) = self.nodes[reference].core.as_ref()
            && core.state().next_settlement_interval > last_interval
        {
            let target = *self.drain_target.get_or_insert(core.state().height);
            if self.nodes.iter().all(|node| node.height() >= target) {
                self.stop();
                return;
            }
        }
        if self.drain_deadline_us.is_some_and(|deadline| self.now_us() > deadline) {
            self.stop();
            return;
        }
        self.scheduler.after(DRAIN_CHECK_US, Event::DrainCheck);
    }

    fn stop(&mut self) {
        self.sequencer.stopped = true;
        self.scheduler.after(SETTLE_US, Event::End);
    }

    // ----- Faults -----

    fn crash(&mut self, node: NodeId, down_us: TimeUs) {
        let now_us = self.now_us();
        let state = &mut self.nodes[node];
        let Some(core) = state.core.take() else { return };
        state.parked = Some(core.into_stores());
        state.inbox.clear();
        state.awaiting.clear();
        state.submissions.clear();
        state.seen.clear();
        state.seen_order.clear();
        state.validator = ValidatorState::default();
        state.busy_until_us = now_us;
        state.wake_scheduled = false;
        self.journal.crashes.push((node, now_us));
        self.scheduler.after(down_us, Event::Restart(node));
    }

    /// A crashed node starts again from its store and the record of what it
    /// acknowledged: a new core, a new index in memory, a mempool of what it
    /// acknowledged that still fits; it reconnects to its peers.
    fn restart(&mut self, node: NodeId) {
        let validator = node < self.config.validators as usize;
        let now_us = self.now_us();
        let now_ms = self.nodes[node].clock_ms(ORIGIN_MS, now_us);
        let state = &mut self.nodes[node];
        let Some((store, acknowledged)) = state.parked.take() else { return };
        let role = if validator { Role::Validator { households: None } } else { Role::Replica };
        let opened =
            Index::in_memory(&self.genesis.hash()).map_err(|error| error.to_string()).and_then(|index| {
                let mut core = ChainCore::new(self.genesis.clone(), store, index, acknowledged, role)
                    .map_err(|error| error.to_string())?;
                let effects = core.restore(now_ms).map_err(|error| error.to_string())?;
                Ok((core, effects))
            });
        let effects = match opened {
            Ok((core, effects)) => {
                state.core = Some(core);
                effects
            }
            Err(error) => {
                self.problems.push(format!("{} could not restart from its store: {error}", state.name));
                return;
            }
        };
        let mut work = Work::default();
        self.carry_out(node, effects, false, &mut work);
        for output in work.outputs {
            self.dispatch(node, now_us, output);
        }
        for peer in self.network.links(node).collect::<Vec<_>>() {
            if peer < self.nodes.len() {
                self.connect(node, peer);
            }
        }
    }

    /// The flooding peer sends its next invalid transaction, or moves on to
    /// another node if its target banned it.
    fn flood_send(&mut self) {
        let now_us = self.now_us();
        let total = self.nodes.len();
        let households = self.accounts.len();
        let Some(flood) = self.flood.as_mut() else { return };
        if now_us > flood.until_us {
            return;
        }
        let (flooder, target) = (flood.node, flood.target);
        if self.nodes[target].banned.contains(&flooder) {
            flood.refused_by_ban += 1;
            flood.target = (target + 1) % total;
            let next = flood.target;
            self.network.connect(flooder, next);
            self.scheduler.after(1_000_000, Event::Flood);
            return;
        }
        let number = flood.sent;
        flood.sent += 1;
        let interval_us = flood.interval_us;
        let (kind, bytes) = match number % 3 {
            0 => {
                let length = 40 + (self.random.next_u64() % 160) as usize;
                ("garbage", (0..length).map(|_| (self.random.next_u64() & 0xFF) as u8).collect::<Vec<u8>>())
            }
            1 if households > 0 => {
                let household = usize::try_from(number / 3).unwrap_or(0) % households;
                let meter = &self.meters[household];
                let reading = gridshare_ledger::tx::MeterReading {
                    meter: meter.public(),
                    interval: 0,
                    import_wh_total: 0,
                    export_wh_total: 0,
                };
                let attestation = gridshare_ledger::tx::SignedMeterReading::sign(
                    reading,
                    meter,
                    &self.genesis.community_id,
                );
                let account = &self.accounts[household];
                let offer = gridshare_ledger::tx::Offer {
                    account: account.public(),
                    nonce: 1_000_000 + number,
                    interval: self.genesis.interval_at(self.now_ms()) + 2,
                    side: gridshare_ledger::tx::Side::Sell,
                    energy_wh: 10,
                    price_micro_per_kwh: 100_000,
                    attestation,
                };
                let mut tx = SignedTx::sign(Tx::Offer(offer), account, &self.genesis.community_id);
                tx.signature.0[0] ^= 1;
                ("bad_signature", to_bytes(&tx))
            }
            _ => {
                let replay = self.nodes[0].core.as_ref().and_then(|core| {
                    let height = core.state().height;
                    (height > 0)
                        .then(|| core.store().block(1 + number % height).ok().flatten())
                        .flatten()
                        .and_then(|block| block.block.transactions.first().map(to_bytes))
                });
                match replay {
                    Some(bytes) => ("replay", bytes),
                    None => ("garbage", vec![0xFF; 64]),
                }
            }
        };
        let id = message_id(&bytes);
        if let Some(flood) = self.flood.as_mut() {
            flood.kinds.insert(id.clone(), kind);
        }
        let message =
            Message::Gossip { topic: Topic::Transactions, id, bytes: bytes.into(), kind: Gossip::Published };
        self.transmit(flooder, target, now_us, message, Some(now_us + PUBLISH_TIMEOUT_US));
        self.scheduler.after(interval_us, Event::Flood);
    }

    /// Whether the run ended before its time (a problem stopped it).
    pub fn ended_early(&self) -> bool {
        self.trading.as_ref().is_none_or(|trading| trading.stats_at_end.is_none())
    }
}

/// A gossip verdict as a counter's key: its label and the reason's code.
fn verdict_key(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Accept => "accept".into(),
        Verdict::Reject(invalid) => format!("reject {}", invalid.code()),
        Verdict::Ignore(ignored) => format!("ignore {}", ignored.code()),
    }
}

/// A validator's precommit signature for `block_hash` at (`height`, `round`).
fn sign_precommit(
    key: &Keypair,
    genesis: &Genesis,
    height: u64,
    round: u32,
    block_hash: Hash,
) -> CommitSignature {
    let vote = Vote {
        kind: VoteKind::Precommit,
        height,
        round,
        block_hash: Some(block_hash),
        validator: key.public(),
    };
    CommitSignature {
        validator: key.public(),
        signature: key.sign(&vote.signing_bytes(&genesis.community_id)),
    }
}

/// The transactions in `core`'s chain.
pub fn committed_transactions(core: &ChainCore<MemoryStore>) -> u64 {
    (1..=core.state().height)
        .filter_map(|height| core.store().block(height).ok().flatten())
        .map(|block| block.block.transactions.len() as u64)
        .sum()
}

/// The intervals cleared and settled in `core`'s chain, and its trades.
pub fn market_receipts(core: &ChainCore<MemoryStore>) -> (u64, u64, u64) {
    let (mut cleared, mut settled, mut trades) = (0, 0, 0);
    for height in 1..=core.state().height {
        let Some(block) = core.store().block(height).ok().flatten() else { continue };
        for receipt in &block.block.receipts {
            match receipt {
                Receipt::Clearing(clearing) => {
                    cleared += u64::from(clearing.offers > 0);
                    trades += clearing.trades.len() as u64;
                }
                Receipt::Settlement(_) => settled += 1,
            }
        }
    }
    (cleared, settled, trades)
}

/// The registrar's transactions: each household's account, meter (limits
/// scaled to the compressed day) and first credit, nonces 1, 2, 3, ...
fn registrations(
    config: &Config,
    genesis: &Genesis,
    registrar: &Keypair,
    accounts: &[Keypair],
    meters: &[Keypair],
) -> Vec<SignedTx> {
    let market = &config.market;
    let slot_ms = 86_400_000 / market.profiles.day_intervals.max(1);
    let limit = |power_w: u64| power_w.saturating_mul(slot_ms) / market.interval_ms.max(1);
    let key = registrar.public();
    let mut nonce = 0;
    let mut next = || {
        nonce += 1;
        nonce
    };
    let mut txs = Vec::with_capacity(accounts.len() * 3);
    for (account, meter) in accounts.iter().zip(meters) {
        let account = account.public();
        let bodies = [
            Tx::RegisterAccount { registrar: key, nonce: next(), account, credit_limit_nano: 0 },
            Tx::RegisterMeter {
                registrar: key,
                nonce: next(),
                meter: meter.public(),
                owner: account,
                max_import_w: limit(METER_IMPORT_W),
                max_export_w: limit(METER_EXPORT_W),
                zone: "main".into(),
            },
            Tx::Credit {
                registrar: key,
                nonce: next(),
                account,
                amount_nano: INITIAL_CREDIT_UNITS * NANOS_PER_UNIT,
                reference: "simulated deposit".into(),
            },
        ];
        txs.extend(bodies.into_iter().map(|body| SignedTx::sign(body, registrar, &genesis.community_id)));
    }
    txs
}
