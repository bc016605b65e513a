//! The market swarm's per-address bound: at most `max` incoming connections
//! from one IP address at once, so one host cannot take every incoming slot
//! (`INCOMING_CONNECTIONS_MAX`) with made-up peer ids. A connection beyond
//! it is refused before its handshake. Nodes that share an address (a test
//! network on one host, households behind one carrier NAT) need a higher
//! bound: `p2p_connections_per_ip_max`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::task::{Context, Poll};

use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent,
    ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// A connection refused because its address has as many as it may.
#[derive(Debug, thiserror::Error)]
#[error("{ip} has {max} incoming connections already, as many as one address may have")]
pub struct TooManyFromAddress {
    pub ip: IpAddr,
    pub max: usize,
}

/// Counts incoming connections by remote IP address and refuses those
/// beyond the bound.
#[derive(Debug)]
pub struct IpLimits {
    max: usize,
    by_ip: BTreeMap<IpAddr, usize>,
    connections: BTreeMap<ConnectionId, IpAddr>,
}

impl IpLimits {
    pub fn new(max: NonZeroUsize) -> IpLimits {
        IpLimits { max: max.get(), by_ip: BTreeMap::new(), connections: BTreeMap::new() }
    }

    /// Takes a slot for `connection` from `remote`, or refuses it.
    fn admit(&mut self, connection: ConnectionId, remote: &Multiaddr) -> Result<(), TooManyFromAddress> {
        let Some(ip) = ip_of(remote) else { return Ok(()) };
        let count = self.by_ip.entry(ip).or_default();
        if *count >= self.max {
            return Err(TooManyFromAddress { ip, max: self.max });
        }
        *count += 1;
        self.connections.insert(connection, ip);
        Ok(())
    }

    /// Gives back the slot of `connection`, if it held one.
    fn release(&mut self, connection: ConnectionId) {
        let Some(ip) = self.connections.remove(&connection) else { return };
        if let Some(count) = self.by_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }
}

/// The IP address of a multiaddress, if it starts with one.
pub(crate) fn ip_of(address: &Multiaddr) -> Option<IpAddr> {
    match address.iter().next()? {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    }
}

impl NetworkBehaviour for IpLimits {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.admit(connection_id, remote_addr).map_err(ConnectionDenied::new)
    }

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(closed) => self.release(closed.connection_id),
            // An incoming connection that failed before it was established
            // (its handshake, or another behaviour refusing it).
            FromSwarm::ListenFailure(failure) => self.release(failure.connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address gets `max` slots; one more is refused until one is given
    /// back; other addresses, and addresses without an IP, are not held up.
    #[test]
    fn one_address_gets_at_most_its_share() {
        let mut limits = IpLimits::new(NonZeroUsize::new(2).unwrap());
        let host: Multiaddr = "/ip4/203.0.113.7/tcp/4001".parse().unwrap();
        let other: Multiaddr = "/ip6/2001:db8::1/tcp/4001".parse().unwrap();
        let unix: Multiaddr = "/memory/7".parse().unwrap();
        let ids: Vec<ConnectionId> = (0..6).map(|_| ConnectionId::new_unchecked(next_id())).collect();
        assert!(limits.admit(ids[0], &host).is_ok());
        assert!(limits.admit(ids[1], &host).is_ok());
        let refused = limits.admit(ids[2], &host).unwrap_err();
        assert_eq!(refused.max, 2);
        assert!(limits.admit(ids[3], &other).is_ok());
        assert!(limits.admit(ids[4], &unix).is_ok());
        limits.release(ids[0]);
        limits.release(ids[2]); // never admitted: nothing to give back
        assert!(limits.admit(ids[5], &host).is_ok());
        assert_eq!(limits.by_ip.get(&ip_of(&host).unwrap()), Some(&2));
    }

    fn next_id() -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(1_000_000);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}
