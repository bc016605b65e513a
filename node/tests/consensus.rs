//! BFT consensus among four validators (Malachite), with real processes on
//! loopback: the validators and three households trade and agree; with one
//! validator killed the chain goes on, and restarted it catches up; paused
//! past several heights, one catches up; with two of four down the chain
//! stops without forking and resumes when one returns; every block's
//! certificate carries a quorum, and the audit of the export passes. A
//! stranger to the genesis that dials a validator's consensus port is
//! disconnected once it identifies, and so is a peer the validator lists
//! that proves a key the genesis does not name; the chain goes on.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod common;

use std::time::{Duration, Instant};

use common::{
    Client, Node, admit, free_port, height, init, kill, printed_consensus_id, run_to_end, signal, start,
    stop, wait_for,
};
use gridshare_api::Role;
use gridshare_api::harness::{BlockWatch, Signal};
use gridshare_ledger::audit::audit_export;
use gridshare_ledger::encoding::from_bytes;
use gridshare_ledger::genesis::Genesis;
use gridshare_ledger::testkit::{TestCommunity, test_market};
use gridshare_ledger::tx::Side;

const VALIDATORS: usize = 4;

struct Validator {
    dir: std::path::PathBuf,
    consensus: String,
    node: Option<Node>,
}

fn start_validator(validator: &Validator, peers: &[String]) -> Node {
    let mut args = vec!["--block-time-ms", "300", "--consensus-p2p", &validator.consensus];
    let own = format!("{}/p2p/", validator.consensus);
    for peer in peers.iter().filter(|peer| !peer.starts_with(&own)) {
        args.extend(["--consensus-peer", peer]);
    }
    start(&args, &validator.dir)
}

/// A peer of Malachite's own network stack (what any Malachite node runs):
/// its libp2p identity, where it listens, and the validator proof it sends
/// on connecting, if any.
struct Stranger {
    keypair: libp2p::identity::Keypair,
    listen: String,
    proof: Option<bytes::Bytes>,
}

impl Stranger {
    /// One with no proof.
    fn anonymous() -> Stranger {
        let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
        Stranger { keypair: libp2p::identity::Keypair::generate_ed25519(), listen, proof: None }
    }

    /// One that proves, for its own peer id, a ledger key that is no
    /// validator of `genesis`.
    fn impostor(genesis: &Genesis) -> Stranger {
        use gridshare_node::consensus::codec::BorshCodec;
        use gridshare_node::consensus::context::ValidatorSigner;
        use malachitebft_app_channel::app::types::codec::Codec;
        use malachitebft_signing::Signer;
        let mut stranger = Stranger::anonymous();
        let key = std::sync::Arc::new(gridshare_ledger::ids::Keypair::from_seed([77; 32]));
        assert!(genesis.voting_power_of(&key.public()).is_none());
        let signer = ValidatorSigner { key: key.clone(), community: genesis.community_id };
        let peer_id = stranger.keypair.public().to_peer_id().to_bytes();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let proof = runtime.block_on(signer.sign_validator_proof(key.public().0.to_vec(), peer_id)).unwrap();
        stranger.proof = Some(Codec::encode(&BorshCodec, &proof).unwrap());
        stranger
    }

    /// Its consensus address with its peer id, as a validator lists it.
    fn address(&self) -> String {
        format!("{}/p2p/{}", self.listen, self.keypair.public().to_peer_id())
    }
}

/// Runs `stranger`, dialing `target` (a validator's consensus address with
/// its peer id); whether the validator cuts it off within `deadline` once
/// it connected. (A peer the validator lists that proves a genesis
/// validator's key stays connected: validators meet each other this very
/// way.)
fn stranger_is_disconnected(stranger: Stranger, target: &str, deadline: Duration) -> bool {
    use malachitebft_network::handle::Handle;
    use malachitebft_network::{Config, DiscoveryConfig, Event, NetworkIdentity, TransportProtocol};
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let config = Config {
            listen_addr: stranger.listen.parse().unwrap(),
            persistent_peers: vec![target.parse().unwrap()],
            persistent_peers_only: false,
            discovery: DiscoveryConfig::new(false),
            idle_connection_timeout: Duration::from_secs(900),
            transport: TransportProtocol::Tcp,
            gossipsub: Default::default(),
            pubsub_protocol: Default::default(),
            channel_names: Default::default(),
            rpc_max_size: 10 << 20,
            pubsub_max_size: 4 << 20,
            pubsub_max_size_per_topic: Default::default(),
            sync_request_timeout: Duration::from_secs(10),
            sync_max_request_size: 1 << 20,
            sync_parallel_requests: 5,
            enable_consensus: true,
            enable_sync: true,
            protocol_names: Default::default(),
        };
        let identity = match stranger.proof {
            Some(proof) => {
                NetworkIdentity::new_validator("stranger".into(), stranger.keypair, "stranger".into(), proof)
            }
            None => NetworkIdentity::new("stranger".into(), stranger.keypair, None),
        };
        let registry = malachitebft_metrics::SharedRegistry::new(Default::default(), None);
        let mut handle: Handle = malachitebft_network::spawn(identity, config, registry).await.unwrap();
        let outcome = async {
            let mut connected = false;
            while let Some(event) = handle.recv().await {
                match event {
                    Event::PeerConnected(_) => connected = true,
                    Event::PeerDisconnected(_) if connected => return true,
                    _ => {}
                }
            }
            false
        };
        tokio::time::timeout(deadline, outcome).await.unwrap_or(false)
    })
}

/// The highest height any of `apis` reports.
fn top(apis: &[Client]) -> u64 {
    apis.iter().map(height).max().unwrap()
}

#[test]
fn four_validators_agree_survive_one_fault_and_stop_safely_without_quorum() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);

    // Four validator keys, one genesis.
    let (mut keys, mut ids) = (Vec::new(), Vec::new());
    for index in 0..VALIDATORS {
        let printed = init(&path(&format!("v{index}")), None);
        let line = printed.iter().find(|line| line.starts_with("Validator key:")).unwrap();
        keys.push(line.trim_start_matches("Validator key:").trim().to_string());
        ids.push(printed_consensus_id(&printed));
    }
    let mut community = TestCommunity::new(21, 3, test_market(), 0);
    let registrar = community.registrar.public().to_string();
    let genesis_file = path("genesis.bin");
    let mut args = vec!["genesis", "new", "--name", "Four Oaks", "--registrar", &registrar];
    for key in &keys {
        args.extend(["--validator", key]);
    }
    args.extend(["--interval-ms", "2000", "--gate-closure-lead-ms", "800", "--settlement-delay-ms", "1000"]);
    args.extend(["--out", genesis_file.to_str().unwrap()]);
    run_to_end(&args);
    let genesis: Genesis = from_bytes(&std::fs::read(&genesis_file).unwrap()).unwrap();
    community.genesis = genesis.clone();

    let mut validators: Vec<Validator> = (0..VALIDATORS)
        .map(|index| Validator {
            dir: path(&format!("v{index}")),
            consensus: format!("/ip4/127.0.0.1/tcp/{}", free_port()),
            node: None,
        })
        .collect();
    let peers: Vec<String> = validators
        .iter()
        .zip(&ids)
        .map(|(validator, id)| format!("{}/p2p/{id}", validator.consensus))
        .collect();
    // Validator 0 also lists a peer that holds no genesis validator's key:
    // listed or not, it must be cut off.
    let impostor = Stranger::impostor(&genesis);
    let with_impostor: Vec<String> = peers.iter().cloned().chain([impostor.address()]).collect();
    for (index, validator) in validators.iter_mut().enumerate() {
        init(&validator.dir, Some(&genesis_file));
        validator.node = Some(start_validator(validator, if index == 0 { &with_impostor } else { &peers }));
    }
    let api = |validators: &[Validator], index: usize| validators[index].node.as_ref().unwrap().api.clone();
    let p2p: Vec<String> =
        validators.iter().map(|validator| validator.node.as_ref().unwrap().p2p.clone()).collect();
    let mut households: Vec<Node> = (0..3)
        .map(|index| {
            let dir = path(&format!("h{index}"));
            init(&dir, Some(&genesis_file));
            let mut args = Vec::new();
            for address in &p2p {
                args.extend(["--bootstrap", address.as_str()]);
            }
            start(&args, &dir)
        })
        .collect();
    for validator in &validators {
        assert_eq!(validator.node.as_ref().unwrap().api.status().unwrap().role, Role::Validator);
    }
    let all =
        |validators: &[Validator]| (0..VALIDATORS).map(|index| api(validators, index)).collect::<Vec<_>>();
    wait_for("blocks from the four validators", &api(&validators, 0), Duration::from_secs(60), || {
        (all(&validators).iter().all(|api| height(api) >= 3)).then_some(())
    });

    // Trade: registrations and offers through the households.
    for tx in community.registrations() {
        admit(&households[0].api, &tx);
    }
    wait_for("the registrations", &api(&validators, 0), Duration::from_secs(60), || {
        (households[2].api.status().unwrap().accounts == 3).then_some(())
    });
    let target = genesis.interval_at(gridshare_node::node::now_ms()) + 3;
    for (index, node) in households.iter().enumerate() {
        // One sells 400 Wh at 0.10; two buy 400 Wh each at up to 0.20.
        let (side, price) = if index == 0 { (Side::Sell, 100_000) } else { (Side::Buy, 200_000) };
        let attestation = community.reading(index, target - 3, 0, 0);
        let offer = community.offer_tx(index, 1, target, side, 400, price, attestation);
        admit(&node.api, &offer);
    }
    let clearing = wait_for("the clearing", &api(&validators, 0), Duration::from_secs(60), || {
        households[1].api.interval(target).unwrap().clearing
    });
    assert_eq!(clearing.receipt.offers, 3, "{clearing:?}");
    assert_eq!(clearing.receipt.volume_wh, 400, "{clearing:?}");

    // Every node has the same block at a common height, with a quorum.
    let common =
        all(&validators).iter().chain(households.iter().map(|node| &node.api)).map(height).min().unwrap();
    let reference = api(&validators, 0).block(common).unwrap();
    for node_api in all(&validators).iter().chain(households.iter().map(|node| &node.api)) {
        let block = node_api.block(common).unwrap();
        assert_eq!((block.hash, block.state_root), (reference.hash, reference.state_root));
    }
    assert!(reference.certificate_signatures >= 3, "{reference:?}");

    // A stranger on the consensus port is cut off, and so is a listed peer
    // that proves a key the genesis does not name; blocks go on.
    let before = top(&all(&validators));
    assert!(
        stranger_is_disconnected(Stranger::anonymous(), &peers[0], Duration::from_secs(15)),
        "a peer that is no validator stays connected to the consensus port"
    );
    assert!(
        stranger_is_disconnected(impostor, &peers[0], Duration::from_secs(15)),
        "a listed peer proving a key that is no validator's stays connected"
    );
    wait_for("blocks after the stranger", &api(&validators, 0), Duration::from_secs(30), || {
        (top(&all(&validators)) > before + 2).then_some(())
    });

    // One validator killed: the chain goes on; restarted, it catches up.
    kill(validators[3].node.as_mut().unwrap());
    validators[3].node = None;
    let live: Vec<Client> = (0..3).map(|index| api(&validators, index)).collect();
    let before = top(&live);
    wait_for("progress with one validator down", &live[0], Duration::from_secs(60), || {
        (live.iter().all(|api| height(api) >= before + 5)).then_some(())
    });
    validators[3].node = Some(start_validator(&validators[3], &peers));
    let goal = top(&live);
    wait_for("the restarted validator to catch up", &live[0], Duration::from_secs(90), || {
        (height(&api(&validators, 3)) >= goal).then_some(())
    });

    // One validator paused past several heights catches up after.
    signal(validators[2].node.as_ref().unwrap(), Signal::Stop);
    let others: Vec<Client> = [0, 1, 3].iter().map(|&index| api(&validators, index)).collect();
    let paused_at = top(&others);
    wait_for("progress while one is paused", &others[0], Duration::from_secs(60), || {
        (others.iter().all(|api| height(api) >= paused_at + 5)).then_some(())
    });
    signal(validators[2].node.as_ref().unwrap(), Signal::Cont);
    let goal = top(&others);
    wait_for("the paused validator to catch up", &others[0], Duration::from_secs(90), || {
        (height(&api(&validators, 2)) >= goal).then_some(())
    });

    // Two of four down: no quorum, so the chain stops, without forking.
    kill(validators[2].node.as_mut().unwrap());
    kill(validators[3].node.as_mut().unwrap());
    validators[2].node = None;
    validators[3].node = None;
    let live: Vec<Client> = (0..2).map(|index| api(&validators, index)).collect();
    // A block already precommitted may still land; then nothing.
    let stalled = top(&live) + 1;
    let window = Instant::now() + Duration::from_secs(8);
    // Every block a live validator reports in the window is checked.
    let blocks = BlockWatch::subscribe(&live[0]).unwrap();
    while blocks.next_before(window).is_some() {
        assert!(top(&live) <= stalled, "the chain went on without a quorum");
    }
    assert!(top(&live) <= stalled, "the chain went on without a quorum");
    let stopped_at = top(&live);
    // One returns: a quorum again, and the chain resumes.
    validators[3].node = Some(start_validator(&validators[3], &peers));
    wait_for("the chain to resume", &live[0], Duration::from_secs(90), || {
        (live.iter().all(|api| height(api) >= stopped_at + 3)).then_some(())
    });
    let resumed = top(&live);
    wait_for("the households to follow", &live[0], Duration::from_secs(60), || {
        (households.iter().all(|node| height(&node.api) >= resumed)).then_some(())
    });
    for index in [0, 1, 3] {
        let block = api(&validators, index).block(resumed).unwrap();
        let on_household = households[0].api.block(resumed).unwrap();
        assert_eq!(block.hash, on_household.hash, "validator {index} forked");
    }

    // The whole ledger, exported by a household, passes the audit.
    let mut export = Vec::new();
    households[0].api.export(&mut export).unwrap();
    let report = audit_export(export.as_slice(), |_| ()).unwrap();
    assert!(report.passed(), "{:?}", report.findings);
    assert!(report.blocks >= resumed && report.trades >= 2, "{report:?}");

    for node in
        households.iter_mut().chain(validators.iter_mut().filter_map(|validator| validator.node.as_mut()))
    {
        stop(node);
    }
}
