//! The market swarm: libp2p over TCP + Noise + Yamux with identify, ping,
//! Kademlia, mDNS (optional, for a LAN without internet), gossipsub for
//! transactions and certified blocks, request-response for catch-up by
//! height range, and request-response for transactions sent to a peer
//! directly (a nonce gap's missing transactions, and transactions announced
//! again because they waited too long). Gossip is validated by the node before it is forwarded:
//! message ids are the blake3 of the bytes, and peer scoring is on, so peers
//! that send invalid data lose their mesh place.

use std::time::Duration;

use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    Multiaddr, StreamProtocol, Swarm, SwarmBuilder, allow_block_list, connection_limits, identify, identity,
    kad, mdns, noise, ping, tcp, yamux,
};
use serde::{Deserialize, Serialize};

use gridshare_ledger::ids::CommunityId;

use crate::ip_limits::IpLimits;

/// The largest gossip message: the largest block the ledger allows
/// (`BLOCK_BYTES_MAX`, 16 MiB) with its certificate, with room to spare.
pub const GOSSIP_BYTES_MAX: usize = gridshare_ledger::execute::BLOCK_BYTES_MAX + (1 << 20);
/// The largest gossiped transaction (an offer is about 300 bytes); a larger
/// one is rejected and counts against its sender.
pub const TX_BYTES_MAX: usize = 4 * 1024;
/// At most this many peers are banned for sending invalid data.
pub const BANNED_PEERS_MAX: usize = 1_024;
/// Established connections at most: in total, incoming, and per peer.
pub const CONNECTIONS_MAX: u32 = 512;
pub const INCOMING_CONNECTIONS_MAX: u32 = 256;
pub const CONNECTIONS_PER_PEER_MAX: u32 = 2;
/// The most blocks one catch-up response carries.
pub const SYNC_BLOCKS_MAX: u32 = 64;
/// The most bytes of blocks one catch-up response carries, unless its one
/// block is larger (a response always carries at least one).
pub const SYNC_RESPONSE_BYTES_MAX: usize = 8 << 20;
/// The largest catch-up response read: one block of `GOSSIP_BYTES_MAX`, or
/// blocks of `SYNC_RESPONSE_BYTES_MAX`, with room for their framing.
pub const SYNC_FRAME_BYTES_MAX: usize = GOSSIP_BYTES_MAX + (1 << 20);
/// The sync protocol. Version 2 sends blocks as CBOR byte strings.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/gridshare/sync/2");
/// The protocol for transactions sent directly (version 2: transactions
/// as CBOR byte strings).
pub const TRANSACTIONS_PROTOCOL: StreamProtocol = StreamProtocol::new("/gridshare/txs/2");
/// Gridshare's own Kademlia protocol: a community's DHT is not the IPFS one.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/gridshare/kad/1");

/// The catch-up protocol's codec: a response may carry one block of the
/// largest size, beyond the codec's default of 10 MiB.
fn sync_codec() -> request_response::cbor::codec::Codec<SyncRequest, SyncResponse> {
    request_response::cbor::codec::Codec::default()
        .set_response_size_maximum(u64::try_from(SYNC_FRAME_BYTES_MAX).unwrap_or(u64::MAX))
}

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

/// Certified blocks in height order, each its canonical (borsh) bytes, and
/// the responder's height (so the requester knows whether to ask again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    #[serde(with = "byte_strings")]
    pub blocks: Vec<Vec<u8>>,
    pub tip_height: u64,
}

/// The most transactions one [`TransactionsResponse`] carries: what one
/// signer may have waiting in a mempool.
pub const TRANSACTIONS_RESPONSE_MAX: usize = crate::mempool::MEMPOOL_PER_SIGNER_MAX;

/// Asks a peer for the transactions of `signer` waiting in its mempool with
/// a nonce from `from_nonce` on: what a gap in that signer's nonces lacks
/// here (the chain core sends it as [`crate::chain::Effect::RequestTransactions`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionsRequest {
    /// The signer's public key.
    pub signer: [u8; 32],
    pub from_nonce: u64,
}

/// Transactions sent to a peer directly rather than by gossip, each its
/// canonical (borsh) bytes: the answer to a [`TransactionsRequest`] (in
/// nonce order), or transactions announced again because they waited too
/// long ([`crate::chain::Effect::Announce`]). At most
/// [`TRANSACTIONS_RESPONSE_MAX`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionsResponse {
    #[serde(with = "byte_strings")]
    pub transactions: Vec<Vec<u8>>,
}

/// A list of canonical encodings on the wire as a CBOR array of byte
/// strings: serde's default writes a `Vec<u8>` as an array of integers,
/// about twice the bytes.
mod byte_strings {
    use serde::de::{SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserializer, Serializer};

    struct AsBytes<'a>(&'a [u8]);

    impl serde::Serialize for AsBytes<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    struct ByteString(Vec<u8>);

    impl<'de> serde::Deserialize<'de> for ByteString {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ByteString, D::Error> {
            struct Bytes;
            impl Visitor<'_> for Bytes {
                type Value = ByteString;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a byte string")
                }
                fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<ByteString, E> {
                    Ok(ByteString(bytes.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<ByteString, E> {
                    Ok(ByteString(bytes))
                }
            }
            deserializer.deserialize_byte_buf(Bytes)
        }
    }

    pub(super) fn serialize<S: Serializer>(items: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(items.len()))?;
        for item in items {
            seq.serialize_element(&AsBytes(item))?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Vec<u8>>, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = Vec<Vec<u8>>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of byte strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Vec<u8>>, A::Error> {
                // What the length claims is not trusted for the allocation.
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(ByteString(item)) = seq.next_element()? {
                    items.push(item);
                }
                Ok(items)
            }
        }
        deserializer.deserialize_seq(List)
    }
}

/// A request on the transactions protocol ([`TRANSACTIONS_PROTOCOL`]),
/// answered with a [`TransactionsResponse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirectRequest {
    /// Asks for a signer's waiting transactions behind a nonce gap: the
    /// answer holds them.
    Fetch(TransactionsRequest),
    /// Transactions the sender announces again: the answer is empty.
    Announce(TransactionsResponse),
}

/// Every protocol of the market swarm.
#[derive(NetworkBehaviour)]
#[allow(missing_debug_implementations)] // libp2p behaviours are not Debug.
pub struct Behaviour {
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub limits: connection_limits::Behaviour,
    pub per_ip: IpLimits,
    pub gossipsub: gossipsub::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kademlia: kad::Behaviour<kad::store::MemoryStore>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
    pub transactions: request_response::cbor::Behaviour<DirectRequest, TransactionsResponse>,
}

/// Gossip scoring for a community's topics. Traffic is sparse (a block a
/// second, offers now and then), so the delivery-rate penalties that suit
/// busy topics are off; what counts is invalid messages (garbage, oversized,
/// bad signatures: nothing an honest peer sends), their count squared times
/// -10, so three in quick succession take a peer below the graylist
/// threshold (-80), where gossipsub ignores it; the node bans a peer after
/// three invalid messages of its own count. The IP colocation penalty is off: a community's nodes on one
/// host, or behind one NAT, share an address.
fn peer_score_params(topics: &Topics) -> gossipsub::PeerScoreParams {
    let topic = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 0.1,
        first_message_deliveries_cap: 100.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.9,
        ..gossipsub::TopicScoreParams::default()
    };
    let mut params = gossipsub::PeerScoreParams { ip_colocation_factor_weight: 0.0, ..Default::default() };
    for topic_hash in [topics.transactions.hash(), topics.blocks.hash()] {
        params.topics.insert(topic_hash, topic.clone());
    }
    params
}

/// Why the swarm could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the libp2p swarm: {0}")]
pub struct NetworkError(pub String);

fn failed(error: impl std::fmt::Display) -> NetworkError {
    NetworkError(error.to_string())
}

/// A TCP port another process listens on.
#[derive(Debug, thiserror::Error)]
#[error("TCP port {port} is taken ({error}): another process, perhaps another gridshare-node, listens there")]
pub struct PortTaken {
    pub port: u16,
    pub error: std::io::Error,
}

/// Refuses a TCP port another process already listens on. libp2p listens
/// with `SO_REUSEPORT`, so a second node started with the same port would
/// share it silently, the kernel handing each incoming connection to one of
/// the two at random; a plain bind (no `SO_REUSEPORT`) fails on a port in
/// use, which is what an operator needs to hear. Port 0 and addresses that
/// are not IP + TCP are left to libp2p.
pub fn check_port_free(address: &Multiaddr) -> Result<(), PortTaken> {
    use libp2p::multiaddr::Protocol;
    let Some(ip) = crate::ip_limits::ip_of(address) else { return Ok(()) };
    let Some(Protocol::Tcp(port)) = address.iter().nth(1) else { return Ok(()) };
    if port == 0 {
        return Ok(());
    }
    std::net::TcpListener::bind((ip, port)).map(drop).map_err(|error| PortTaken { port, error })
}

/// Builds the swarm for `community` with the node's libp2p identity (which
/// is separate from every ledger key) and subscribes to its topics.
pub fn build_swarm(
    identity: identity::Keypair,
    community: &CommunityId,
    enable_mdns: bool,
    connections_per_ip_max: std::num::NonZeroUsize,
) -> Result<(Swarm<Behaviour>, Topics), NetworkError> {
    let topics = Topics::new(community);
    let mut swarm = SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(failed)?
        .with_behaviour(|key| {
            // Messages are anonymous: every transaction and block carries its
            // own ed25519 signatures, which admission checks, and its id is the
            // blake3 of its bytes, so a libp2p signature, author and sequence
            // number per message would only cost a third signature check per
            // transaction on every node. Peer scoring follows the peer that
            // forwarded a message, which anonymity leaves intact.
            let gossip_config = gossipsub::ConfigBuilder::default()
                .validation_mode(ValidationMode::Anonymous)
                .validate_messages()
                .message_id_fn(|message| {
                    gossipsub::MessageId::from(blake3::hash(&message.data).as_bytes().to_vec())
                })
                .max_transmit_size(GOSSIP_BYTES_MAX)
                .heartbeat_interval(Duration::from_millis(500))
                .build()
                .map_err(failed)?;
            let mut gossipsub =
                gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config).map_err(failed)?;
            gossipsub
                .with_peer_score(peer_score_params(&topics), gossipsub::PeerScoreThresholds::default())
                .map_err(failed)?;
            let peer_id = key.public().to_peer_id();
            let mdns = if enable_mdns {
                Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id).map_err(failed)?)
            } else {
                None
            };
            Ok(Behaviour {
                blocked: allow_block_list::Behaviour::default(),
                limits: connection_limits::Behaviour::new(
                    connection_limits::ConnectionLimits::default()
                        .with_max_established(Some(CONNECTIONS_MAX))
                        .with_max_established_incoming(Some(INCOMING_CONNECTIONS_MAX))
                        .with_max_established_per_peer(Some(CONNECTIONS_PER_PEER_MAX)),
                ),
                per_ip: IpLimits::new(connections_per_ip_max),
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
                sync: request_response::cbor::Behaviour::with_codec(
                    sync_codec(),
                    [(SYNC_PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
                ),
                transactions: request_response::cbor::Behaviour::new(
                    [(TRANSACTIONS_PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
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

#[cfg(test)]
mod tests {
    use libp2p::futures::executor::block_on;
    use libp2p::futures::io::Cursor;
    use libp2p::request_response::Codec;

    use super::*;

    /// A response as the real codec writes it, and read back.
    fn wire<Req, Resp>(response: &Resp) -> (Vec<u8>, std::io::Result<Resp>)
    where
        Req: Send + Serialize + serde::de::DeserializeOwned,
        Resp: Send + Clone + Serialize + serde::de::DeserializeOwned,
    {
        let mut codec = request_response::cbor::codec::Codec::<Req, Resp>::default();
        let mut written = Vec::new();
        block_on(codec.write_response(&SYNC_PROTOCOL, &mut written, response.clone())).unwrap();
        let read = block_on(codec.read_response(&SYNC_PROTOCOL, &mut Cursor::new(written.clone())));
        (written, read)
    }

    #[test]
    fn blocks_and_transactions_travel_as_byte_strings() {
        let block = vec![0xAB_u8; 100_000];
        let response = SyncResponse { blocks: vec![block.clone(), vec![], vec![7]], tip_height: 9 };
        let (written, read) = wire::<SyncRequest, SyncResponse>(&response);
        assert_eq!(read.unwrap(), response);
        // One byte per byte and a little framing, not an integer per byte.
        assert!(written.len() < block.len() + 100, "{} bytes on the wire", written.len());
        let transactions = TransactionsResponse { transactions: vec![vec![1, 2, 3]; 64] };
        let (_, read) = wire::<DirectRequest, TransactionsResponse>(&transactions);
        assert_eq!(read.unwrap(), transactions);
        // The old encoding, an array of integers, is refused.
        let mut codec = request_response::cbor::codec::Codec::<SyncRequest, SyncResponse>::default();
        let old = [0xA2, 0x66, b'b', b'l', b'o', b'c', b'k', b's', 0x81, 0x81, 0x07, 0x6A];
        let mut old = old.to_vec();
        old.extend_from_slice(b"tip_height");
        old.push(0x09);
        assert!(block_on(codec.read_response(&SYNC_PROTOCOL, &mut Cursor::new(old))).is_err());
    }

    /// A catch-up response with one block of the largest size the ledger
    /// allows is read back (the codec's default limit, 10 MiB, refused it).
    #[test]
    fn a_response_with_the_largest_block_is_read() {
        let block = vec![0xCD_u8; GOSSIP_BYTES_MAX];
        let response = SyncResponse { blocks: vec![block], tip_height: 1 };
        let mut codec = sync_codec();
        let mut written = Vec::new();
        block_on(codec.write_response(&SYNC_PROTOCOL, &mut written, response.clone())).unwrap();
        let read = block_on(codec.read_response(&SYNC_PROTOCOL, &mut Cursor::new(written.clone())));
        assert_eq!(read.unwrap(), response);
        let mut default = request_response::cbor::codec::Codec::<SyncRequest, SyncResponse>::default();
        assert!(block_on(default.read_response(&SYNC_PROTOCOL, &mut Cursor::new(written))).is_err());
    }

    #[test]
    fn a_port_in_use_is_refused_and_a_free_one_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let error = check_port_free(&address).unwrap_err();
        assert_eq!(error.port, port);
        assert!(error.to_string().starts_with(&format!("TCP port {port} is taken")), "{error}");
        drop(listener);
        assert!(check_port_free(&address).is_ok());
        assert!(check_port_free(&"/ip4/127.0.0.1/tcp/0".parse().unwrap()).is_ok());
        assert!(check_port_free(&"/dns4/localhost/tcp/4700".parse().unwrap()).is_ok());
    }
}
