//! Hostile peers on the market swarm: real libp2p nodes (our own swarm, in
//! this process) connected to real node processes. One publishes invalid
//! signatures, a replayed transaction, an oversized message and garbage to
//! a dev validator, which rejects the invalid ones and ignores the replay,
//! forwards none of them to the household behind it, and disconnects and
//! bans the peer; honest transactions from the household still go through.
//! Another sends a household's node a forged block at height u64::MAX and
//! then floods it with transactions of signers nobody registered: the node
//! refuses the block without believing its height, checks no signature of
//! the flood, bans the peer, and goes on following the chain and its
//! clearings. And peers from one address get no more incoming connections
//! than the node's per-address bound.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use common::{Client, admit, start, wait_for};
use gridshare_api::status::SyncStatus;
use gridshare_ledger::block::CertifiedBlock;
use gridshare_ledger::encoding::{from_bytes, to_bytes};
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::tx::{SignedTx, Tx};
use gridshare_node::chain::{INVALID_MESSAGES_BAN, WASTED_BURST};
use gridshare_node::network::{TX_BYTES_MAX, build_swarm};
use libp2p::futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, identity};

/// What the hostile peer reports back to the test.
#[derive(Debug)]
enum Report {
    Published(usize),
    Disconnected,
}

/// Where a hostile peer publishes a message.
#[derive(Clone, Copy, Debug)]
enum On {
    Transactions,
    Blocks,
}

/// Runs a hostile peer in its own thread: it dials `target` and publishes
/// each message it is sent on its topic.
fn hostile_peer(
    community: gridshare_ledger::ids::CommunityId,
    target: Multiaddr,
) -> (tokio::sync::mpsc::UnboundedSender<(On, Vec<u8>)>, std_mpsc::Receiver<Report>) {
    let (messages, mut inbox) = tokio::sync::mpsc::unbounded_channel::<(On, Vec<u8>)>();
    let (reports, outbox) = std_mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let (mut swarm, topics) = build_swarm(
                identity::Keypair::generate_ed25519(),
                &community,
                false,
                std::num::NonZeroUsize::MIN,
            )
            .unwrap();
            swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
            swarm.dial(target).unwrap();
            let mut waiting: std::collections::VecDeque<(On, Vec<u8>)> = Default::default();
            let mut published = 0;
            let mut retry = tokio::time::interval(Duration::from_millis(50));
            loop {
                tokio::select! {
                    message = inbox.recv() => match message {
                        Some(message) => waiting.push_back(message),
                        None => return,
                    },
                    _ = retry.tick() => {
                        // Publishing fails until the validator's subscription is known.
                        while let Some((on, message)) = waiting.front() {
                            let topic = match on {
                                On::Transactions => topics.transactions.clone(),
                                On::Blocks => topics.blocks.clone(),
                            };
                            if swarm.behaviour_mut().gossipsub.publish(topic, message.clone()).is_err() {
                                break;
                            }
                            waiting.pop_front();
                            published += 1;
                            let _ = reports.send(Report::Published(published));
                        }
                    }
                    event = swarm.select_next_some() => {
                        if let SwarmEvent::ConnectionClosed { num_established: 0, .. } = event {
                            let _ = reports.send(Report::Disconnected);
                        }
                    }
                }
            }
        });
    });
    (messages, outbox)
}

/// The count of a gossip verdict in a node's metrics (0 if absent).
fn gossip_count(api: &Client, topic: &str, verdict: &str) -> u64 {
    let text = api.metrics().unwrap();
    let prefix = format!("gridshare_gossip_messages_total{{topic=\"{topic}\",verdict=\"{verdict}\"}} ");
    text.lines().find_map(|line| line.strip_prefix(&prefix)).map_or(0, |count| count.parse().unwrap())
}

/// A dev validator (100 ms blocks, 1 s intervals) and a household's node
/// bootstrapped from it, under `dir`; and their genesis.
fn dev_validator_and_household(dir: &std::path::Path) -> (common::Node, common::Node, Genesis) {
    let validator_dir = dir.join("validator");
    let validator = start(&["--dev", "--block-time-ms", "100", "--interval-ms", "1000"], &validator_dir);
    let genesis_file = validator_dir.join("genesis.bin");
    let household =
        start(&["--genesis", genesis_file.to_str().unwrap(), "--bootstrap", &validator.p2p], &dir.join("h"));
    let genesis = from_bytes(&std::fs::read(&genesis_file).unwrap()).unwrap();
    (validator, household, genesis)
}

#[test]
fn a_peer_sending_invalid_gossip_is_rejected_not_forwarded_and_banned() {
    let dir = tempfile::tempdir().unwrap();
    let (validator, household, genesis) = dev_validator_and_household(dir.path());
    wait_for("the household to connect", &validator.api, Duration::from_secs(30), || {
        (household.api.status().unwrap().peers >= 1).then_some(())
    });

    // A real transaction of the chain (the registrar's first, nonce 1).
    let first: CertifiedBlock = wait_for("the first block", &validator.api, Duration::from_secs(30), || {
        let block = validator.api.block(1).ok()?;
        Some(from_bytes(&hex::decode(&block.certified_block_hex).unwrap()).unwrap())
    });
    let replayed = first.block.transactions[0].clone();
    assert!(matches!(replayed.tx, Tx::RegisterAccount { nonce: 1, .. }));
    // A forgery with a fresh nonce is verified and rejected; one with a used
    // nonce is ignored before its signatures are checked (it costs a lookup
    // and is not forwarded either way).
    let mut forged = replayed.clone();
    let Tx::RegisterAccount { nonce, .. } = &mut forged.tx else { unreachable!() };
    *nonce = 1_000;
    let mut forged_replay = replayed.clone();
    forged_replay.signature.0[0] ^= 1;

    let hostile = [
        to_bytes(&forged),
        to_bytes(&forged_replay),
        to_bytes(&replayed),
        vec![7; TX_BYTES_MAX + 1],
        b"not a transaction".to_vec(),
    ];
    let (messages, reports) = hostile_peer(genesis.community_id, validator.p2p.parse().unwrap());
    for message in &hostile {
        messages.send((On::Transactions, message.clone())).unwrap();
    }
    let mut disconnected = false;
    let mut published = 0;
    while published < hostile.len() {
        match reports.recv_timeout(Duration::from_secs(30)).expect("the hostile peer stalled") {
            Report::Published(count) => published = count,
            Report::Disconnected => disconnected = true,
        }
    }
    // The fresh forgery, the oversized message and the garbage are rejected;
    // the replays are ignored (a late honest copy looks the same) but counted.
    wait_for(
        "the validator to reject three and ignore the replays",
        &validator.api,
        Duration::from_secs(30),
        || {
            (gossip_count(&validator.api, "tx", "reject") >= 3
                && gossip_count(&validator.api, "tx", "ignore") >= 2)
                .then_some(())
        },
    );
    assert!(validator.api.metrics().unwrap().contains("gridshare_gossip_replays_total 2"));
    assert_eq!(gossip_count(&validator.api, "tx", "accept"), 0);
    // Banned: its connection is closed and it cannot come back.
    if !disconnected {
        loop {
            match reports
                .recv_timeout(Duration::from_secs(30))
                .expect("the hostile peer was not disconnected")
            {
                Report::Disconnected => break,
                Report::Published(_) => {}
            }
        }
    }

    // Honest traffic goes on: the registrar, through the household's node,
    // registers a new account, which the validator includes.
    let seed = std::fs::read_to_string(dir.path().join("validator/dev-keys/registrar.seed")).unwrap();
    let mut bytes = [0_u8; 32];
    hex::decode_to_slice(seed.trim(), &mut bytes).unwrap();
    let registrar = Keypair::from_seed(bytes);
    let nonce = household.api.last_nonce(&registrar.public()).unwrap().unwrap();
    // A real key: registration refuses bytes that are not a point of prime
    // order (docs/PROTOCOL.md §3).
    let account = Keypair::from_seed([42; 32]).public();
    let tx = SignedTx::sign(
        Tx::RegisterAccount {
            registrar: registrar.public(),
            nonce: nonce + 1,
            account,
            credit_limit_nano: 0,
        },
        &registrar,
        &genesis.community_id,
    );
    admit(&household.api, &tx);
    wait_for("the honest registration on the validator", &validator.api, Duration::from_secs(30), || {
        validator.api.account(&account).unwrap().map(|_| ())
    });
    // None of the hostile messages reached the household: the only gossip
    // it got is the transaction it published itself, echoed by nobody.
    assert_eq!(gossip_count(&household.api, "tx", "reject"), 0);
    assert_eq!(gossip_count(&household.api, "tx", "accept"), 0);
    assert!(gossip_count(&validator.api, "tx", "accept") >= 1);
}

#[test]
fn a_forged_far_future_block_and_a_flood_of_strangers_transactions_are_shed() {
    let dir = tempfile::tempdir().unwrap();
    let (validator, household, genesis) = dev_validator_and_household(dir.path());
    let first: CertifiedBlock = wait_for("the first block", &household.api, Duration::from_secs(30), || {
        let block = household.api.block(1).ok()?;
        Some(from_bytes(&hex::decode(&block.certified_block_hex).unwrap()).unwrap())
    });

    // A real block claiming the last height there is, then registrations
    // by registrars the genesis does not name (each signed, each new, so
    // gossip carries every one), more than the budget of useless work
    // allows a peer at once, three times over.
    let mut forged = first.clone();
    forged.block.header.height = u64::MAX;
    let strangers = usize::try_from(u64::from(INVALID_MESSAGES_BAN) * (WASTED_BURST + 1)).unwrap();
    let (messages, reports) = hostile_peer(genesis.community_id, household.p2p.parse().unwrap());
    messages.send((On::Blocks, to_bytes(&forged))).unwrap();
    for n in 0..strangers {
        let registrar = Keypair::from_seed(seed(n));
        let tx = Tx::RegisterAccount {
            registrar: registrar.public(),
            nonce: 1,
            account: Keypair::from_seed(seed(n + strangers)).public(),
            credit_limit_nano: 0,
        };
        messages
            .send((On::Transactions, to_bytes(&SignedTx::sign(tx, &registrar, &genesis.community_id))))
            .unwrap();
    }
    // Banned before the flood is over: its connection is closed.
    loop {
        match reports.recv_timeout(Duration::from_secs(60)).expect("the flooding peer was not disconnected") {
            Report::Disconnected => break,
            Report::Published(_) => {}
        }
    }
    drop(messages);

    // The forged block was refused (its height never believed) and the
    // flood ignored with no signature checked and nothing forwarded.
    assert_eq!(gossip_count(&household.api, "blocks", "reject"), 1);
    assert!(gossip_count(&household.api, "tx", "ignore") >= 2 * WASTED_BURST);
    assert_eq!(gossip_count(&household.api, "tx", "accept"), 0);
    assert_eq!(gossip_count(&validator.api, "tx", "ignore"), 0, "the household forwarded none");
    let status = household.api.status().unwrap();
    assert_eq!(status.sync, SyncStatus::Synced, "{status:?}");
    // The household follows the chain and its clearings.
    let (height, cleared) = (status.height, status.intervals_cleared);
    wait_for("blocks and a clearing after the attack", &household.api, Duration::from_secs(30), || {
        let status = household.api.status().unwrap();
        (status.height > height + 5
            && status.intervals_cleared > cleared
            && status.sync == SyncStatus::Synced)
            .then_some(())
    });
}

#[test]
fn one_address_gets_no_more_incoming_connections_than_its_bound() {
    const BOUND: usize = 2;
    const DIALERS: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let bound = BOUND.to_string();
    let validator =
        start(&["--dev", "--block-time-ms", "100", "--p2p-connections-per-ip-max", &bound], dir.path());
    let genesis: Genesis = from_bytes(&std::fs::read(dir.path().join("genesis.bin")).unwrap()).unwrap();
    let target: Multiaddr = validator.p2p.parse().unwrap();

    // Peers with peer ids of their own, all on 127.0.0.1, dial one at a
    // time and stay connected if they can.
    let (outcomes, outcome) = std_mpsc::channel::<bool>();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut connected = 0;
    for _ in 0..DIALERS {
        let (outcomes, target) = (outcomes.clone(), target.clone());
        runtime.spawn(async move {
            let (mut swarm, _) = build_swarm(
                identity::Keypair::generate_ed25519(),
                &genesis.community_id,
                false,
                std::num::NonZeroUsize::MIN,
            )
            .unwrap();
            swarm.dial(target).unwrap();
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { .. } => {
                        let _ = outcomes.send(true);
                    }
                    SwarmEvent::OutgoingConnectionError { .. } => {
                        let _ = outcomes.send(false);
                        return;
                    }
                    _ => {}
                }
            }
        });
        if outcome.recv_timeout(Duration::from_secs(30)).expect("a dial ended in neither way") {
            connected += 1;
        }
    }
    assert_eq!(connected, BOUND, "{DIALERS} dialers from one address");
    wait_for("the node to count its peers", &validator.api, Duration::from_secs(10), || {
        (validator.api.status().unwrap().peers == u64::try_from(BOUND).unwrap()).then_some(())
    });
    // The node goes on: it was refused before any handshake, not stalled.
    let height = validator.api.status().unwrap().height;
    wait_for("blocks after the dials", &validator.api, Duration::from_secs(10), || {
        (validator.api.status().unwrap().height > height + 3).then_some(())
    });
    drop(runtime);
}

/// A distinct key seed for `n`.
fn seed(n: usize) -> [u8; 32] {
    let mut seed = [0xA5; 32];
    seed[..8].copy_from_slice(&u64::try_from(n).unwrap().to_le_bytes());
    seed
}
