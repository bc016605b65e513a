//! Who may speak on the consensus swarm: the peers the operator configured
//! (`consensus_peers`), each named by address and peer id
//! (`ADDRESS/p2p/PEER_ID`, the other validators' `Consensus id` that
//! `gridshare-node init` prints). A validator accepts connections from no
//! one else (Malachite's `persistent_peers_only`) and takes proposal parts
//! only from them (docs/NETWORK.md §9); votes and proposals also carry the
//! genesis validators' signatures, which the engine checks.

use std::collections::BTreeSet;

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use malachitebft_app_channel::app::types::PeerId;

/// Why the configured consensus peers cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(
        "consensus peer {address} does not end in /p2p/PEER_ID (the peer's `Consensus id`, printed by \
         `gridshare-node init`): only named peers may connect"
    )]
    Unnamed { address: Multiaddr },
    #[error("consensus peer {address} names this validator's own consensus id")]
    Itself { address: Multiaddr },
}

/// The peer ids that `peers` name, none of them `own`.
pub fn allowed(own: &libp2p::PeerId, peers: &[Multiaddr]) -> Result<BTreeSet<PeerId>, PeerError> {
    let mut allowed = BTreeSet::new();
    for address in peers {
        let named = address.iter().last().and_then(|protocol| match protocol {
            Protocol::P2p(peer) => Some(peer),
            _ => None,
        });
        let peer = named.ok_or_else(|| PeerError::Unnamed { address: address.clone() })?;
        if peer == *own {
            return Err(PeerError::Itself { address: address.clone() });
        }
        // Both types hold a multihash; every libp2p peer id converts.
        if let Ok(peer) = PeerId::from_bytes(&peer.to_bytes()) {
            allowed.insert(peer);
        }
    }
    Ok(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configured peer must be named by its peer id, and not be this
    /// node; the named ones are allowed.
    #[test]
    fn only_named_peers_are_allowed() {
        let own = libp2p::identity::Keypair::generate_ed25519().public().to_peer_id();
        let other = libp2p::identity::Keypair::generate_ed25519().public().to_peer_id();
        let named: Multiaddr = format!("/ip4/127.0.0.1/tcp/4800/p2p/{other}").parse().unwrap();
        let allowed = allowed(&own, std::slice::from_ref(&named)).unwrap();
        assert_eq!(allowed.len(), 1);
        assert!(allowed.contains(&PeerId::from_bytes(&other.to_bytes()).unwrap()));

        let unnamed: Multiaddr = "/ip4/127.0.0.1/tcp/4800".parse().unwrap();
        let error = super::allowed(&own, &[named.clone(), unnamed]).unwrap_err();
        assert!(matches!(error, PeerError::Unnamed { .. }), "{error}");
        assert!(error.to_string().contains("Consensus id"), "the error says where ids come from: {error}");

        let itself: Multiaddr = format!("/ip4/127.0.0.1/tcp/4801/p2p/{own}").parse().unwrap();
        assert!(matches!(super::allowed(&own, &[itself]), Err(PeerError::Itself { .. })));
    }
}
