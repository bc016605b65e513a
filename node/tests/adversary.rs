//! A hostile peer on the market swarm: a real libp2p node (our own swarm,
//! in this process) connected to a dev validator that publishes invalid
//! signatures, a replayed transaction, an oversized message and garbage.
//! The validator rejects the invalid ones and ignores the replay, forwards
//! none of them to the household behind it, and disconnects and bans the
//! peer; honest transactions from the household still go through.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use common::{Client, admit, start, wait_for};
use gridshare_ledger::block::CertifiedBlock;
use gridshare_ledger::encoding::{from_bytes, to_bytes};
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::ids::Keypair;
use gridshare_ledger::tx::{SignedTx, Tx};
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

/// Runs a hostile peer in its own thread: it dials `target` and publishes
/// each message it is sent on the transaction topic.
fn hostile_peer(
    community: gridshare_ledger::ids::CommunityId,
    target: Multiaddr,
) -> (tokio::sync::mpsc::UnboundedSender<Vec<u8>>, std_mpsc::Receiver<Report>) {
    let (messages, mut inbox) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
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
            let mut waiting: Vec<Vec<u8>> = Vec::new();
            let mut published = 0;
            let mut retry = tokio::time::interval(Duration::from_millis(50));
            loop {
                tokio::select! {
                    message = inbox.recv() => match message {
                        Some(message) => waiting.push(message),
                        None => return,
                    },
                    _ = retry.tick() => {
                        // Publishing fails until the validator's subscription is known.
                        while let Some(message) = waiting.first() {
                            let topic = topics.transactions.clone();
                            if swarm.behaviour_mut().gossipsub.publish(topic, message.clone()).is_err() {
                                break;
                            }
                            waiting.remove(0);
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

#[test]
fn a_peer_sending_invalid_gossip_is_rejected_not_forwarded_and_banned() {
    let dir = tempfile::tempdir().unwrap();
    let validator_dir = dir.path().join("validator");
    let validator = start(&["--dev", "--block-time-ms", "100", "--interval-ms", "1000"], &validator_dir);
    let genesis_file = validator_dir.join("genesis.bin");
    let household = start(
        &["--genesis", genesis_file.to_str().unwrap(), "--bootstrap", &validator.p2p],
        &dir.path().join("h"),
    );
    let genesis: Genesis = from_bytes(&std::fs::read(&genesis_file).unwrap()).unwrap();
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
        messages.send(message.clone()).unwrap();
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
    let seed = std::fs::read_to_string(validator_dir.join("dev-keys/registrar.seed")).unwrap();
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
