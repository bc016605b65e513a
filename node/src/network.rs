//! The market swarm: libp2p over TCP + Noise + Yamux with identify, ping,
//! Kademlia, mDNS (optional, for a LAN without internet), gossipsub for
//! transactions and certified blocks, and request-response for catch-up by
//! height range. Gossip is validated by the node before it is forwarded:
//! message ids are the blake3 of the bytes, and peer scoring is on, so peers
//! that send invalid data lose their mesh place.

use std::time::Duration;

use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{StreamProtocol, Swarm, SwarmBuilder, identify, identity, kad, mdns, noise, ping, tcp, yamux};
use serde::{Deserialize, Serialize};

use gridshare_ledger::ids::CommunityId;

/// The largest gossip message: a block of the largest size we produce.
pub const GOSSIP_BYTES_MAX: usize = 8 << 20;
/// The most blocks one catch-up response carries.
pub const SYNC_BLOCKS_MAX: u32 = 64;
/// The sync protocol.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/gridshare/sync/1");
/// Gridshare's own Kademlia protocol: a community's DHT is not the IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/gridshare/kad/1");

/// Kademlia without periodic bootstrap: peers come from the bootstrap list,
/// identify and mDNS, and a lone validator has nobody to bootstrap from.
fn kad_config() -> kad::Config {
    let mut config = kad::Config::new(KAD_PROTOCOL);
    config.set_periodic_bootstrap_interval(None);
    config
}

/// The gossip topics of a community.
#[derive(Clone, Debug)]
pub struct Topics {
    pub transactions: IdentTopic,
    pub blocks: IdentTopic,
}

impl Topics {
    pub fn new(community: &CommunityId) -> Topics {
        Topics {
            transactions: IdentTopic::new(format!("gridshare/{community}/tx/1")),
            blocks: IdentTopic::new(format!("gridshare/{community}/blocks/1")),
        }
    }
}

/// Asks a peer for certified blocks from a height on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub from_height: u64,
    pub max_blocks: u32,
}

/// Certified blocks in height order, each its canonical (borsh) bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    pub blocks: Vec<Vec<u8>>,
}

/// Every protocol of the market swarm.
#[derive(NetworkBehaviour)]
#[allow(missing_debug_implementations)] // libp2p behaviours are not Debug.
pub struct Behaviour {
    pub gossipsub: gossipsub::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kademlia: kad::Behaviour<kad::store::MemoryStore>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
}

/// Why the swarm could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the libp2p swarm: {0}")]
pub struct NetworkError(pub String);

fn failed(error: impl std::fmt::Display) -> NetworkError {
    NetworkError(error.to_string())
}

/// Builds the swarm for `community` with the node's libp2p identity (which
/// is separate from every ledger key) and subscribes to its topics.
pub fn build_swarm(
    identity: identity::Keypair,
    community: &CommunityId,
    enable_mdns: bool,
) -> Result<(Swarm<Behaviour>, Topics), NetworkError> {
    let topics = Topics::new(community);
    let mut swarm = SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(failed)?
        .with_behaviour(|key| {
            let gossip_config = gossipsub::ConfigBuilder::default()
                .validation_mode(ValidationMode::Strict)
                .validate_messages()
                .message_id_fn(|message| {
                    gossipsub::MessageId::from(blake3::hash(&message.data).as_bytes().to_vec())
                })
                .max_transmit_size(GOSSIP_BYTES_MAX)
                .heartbeat_interval(Duration::from_millis(500))
                .build()
                .map_err(failed)?;
            let mut gossipsub =
                gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)
                    .map_err(failed)?;
            gossipsub
                .with_peer_score(
                    gossipsub::PeerScoreParams::default(),
                    gossipsub::PeerScoreThresholds::default(),
                )
                .map_err(failed)?;
            let peer_id = key.public().to_peer_id();
            let mdns = if enable_mdns {
                Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id).map_err(failed)?)
            } else {
                None
            };
            Ok(Behaviour {
                gossipsub,
                identify: identify::Behaviour::new(identify::Config::new(
                    "/gridshare/1".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(ping::Config::new()),
                kademlia: kad::Behaviour::with_config(
                    peer_id,
                    kad::store::MemoryStore::new(peer_id),
                    kad_config(),
                ),
                mdns: Toggle::from(mdns),
                sync: request_response::cbor::Behaviour::new(
                    [(SYNC_PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
                ),
            })
        })
        .map_err(failed)?
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    for topic in [&topics.transactions, &topics.blocks] {
        swarm.behaviour_mut().gossipsub.subscribe(topic).map_err(failed)?;
    }
    Ok((swarm, topics))
}
