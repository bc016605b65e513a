//! Proposal streams being reassembled, bounded per publisher: each
//! validator's peer has its own few streams, so no publisher can evict
//! another's (the round's proposer's block survives any flood), and each
//! stream is bounded in messages and in bytes, counting every part, not
//! only its data, so empty parts cannot grow memory either. The caller takes
//! parts only from the genesis validators' peers (`peers`), which bounds the
//! publishers.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use malachitebft_app_channel::app::streaming::{StreamContent, StreamMessage};
use malachitebft_app_channel::app::types::PeerId;

use super::context::ProposalPart;
use crate::network::GOSSIP_BYTES_MAX;

/// Bytes of block data per proposal part.
pub const PART_BYTES: usize = 128 * 1024;
/// Streams kept per publisher at most; a new one evicts that publisher's
/// oldest. An honest proposer streams one block per round.
pub const STREAMS_PER_PUBLISHER_MAX: usize = 2;
/// Messages in a stream at most: its `Init`, the data of a block of
/// `GOSSIP_BYTES_MAX`, its `Fin` part and the end of the stream.
pub const MESSAGES_PER_STREAM_MAX: u64 = MESSAGES_PER_STREAM as u64;
const MESSAGES_PER_STREAM: usize = GOSSIP_BYTES_MAX.div_ceil(PART_BYTES) + 3;
/// What any part counts against its stream's bytes besides its data.
const PART_OVERHEAD_BYTES: usize = 64;
/// Bytes a stream may count at most.
const STREAM_BYTES_MAX: usize = GOSSIP_BYTES_MAX + MESSAGES_PER_STREAM * PART_OVERHEAD_BYTES;

/// The parts of one stream received so far.
#[derive(Debug, Default)]
struct PartialStream {
    parts: BTreeMap<u64, ProposalPart>,
    /// The sequence number of the end of the stream, once it arrived.
    end: Option<u64>,
    bytes: usize,
}

impl PartialStream {
    /// Whether every message up to the end has arrived.
    fn is_complete(&self) -> bool {
        self.end.is_some_and(|end| {
            u64::try_from(self.parts.len()).is_ok_and(|count| count == end)
                && self.parts.keys().copied().eq(0..end)
        })
    }
}

/// The streams being reassembled, by publisher, oldest first.
#[derive(Debug, Default)]
pub struct Streams {
    by_publisher: BTreeMap<PeerId, VecDeque<(Bytes, PartialStream)>>,
}

impl Streams {
    /// Takes one message of `publisher`'s; returns the stream's parts in
    /// order when this message completed it. A stream that outgrows its
    /// bounds is dropped.
    pub fn receive(
        &mut self,
        publisher: PeerId,
        message: StreamMessage<ProposalPart>,
    ) -> Option<Vec<ProposalPart>> {
        let id = message.stream_id.to_bytes();
        let streams = self.by_publisher.entry(publisher).or_default();
        let index = match streams.iter().position(|(other, _)| *other == id) {
            Some(index) => index,
            None => {
                if streams.len() >= STREAMS_PER_PUBLISHER_MAX {
                    streams.pop_front();
                }
                streams.push_back((id, PartialStream::default()));
                streams.len() - 1
            }
        };
        let stream = &mut streams.get_mut(index)?.1;
        if message.sequence >= MESSAGES_PER_STREAM_MAX {
            tracing::debug!(%publisher, sequence = message.sequence, "a proposal stream is too long");
            streams.remove(index);
            return None;
        }
        match message.content {
            StreamContent::Fin => stream.end = Some(message.sequence),
            StreamContent::Data(part) => {
                let data = match &part {
                    ProposalPart::Data(chunk) => chunk.len(),
                    ProposalPart::Init { .. } | ProposalPart::Fin(_) => 0,
                };
                stream.bytes = stream.bytes.saturating_add(PART_OVERHEAD_BYTES + data);
                if stream.bytes > STREAM_BYTES_MAX {
                    tracing::debug!(%publisher, bytes = stream.bytes, "a proposal stream is too large");
                    streams.remove(index);
                    return None;
                }
                stream.parts.insert(message.sequence, part);
            }
        }
        if !stream.is_complete() {
            return None;
        }
        let (_, stream) = streams.remove(index)?;
        Some(stream.parts.into_values().collect())
    }

    /// Streams held now, over every publisher.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_publisher.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachitebft_app_channel::app::streaming::StreamId;

    fn peer() -> PeerId {
        let peer = libp2p::identity::Keypair::generate_ed25519().public().to_peer_id();
        PeerId::from_bytes(&peer.to_bytes()).unwrap()
    }

    fn message(
        stream: u8,
        sequence: u64,
        content: StreamContent<ProposalPart>,
    ) -> StreamMessage<ProposalPart> {
        StreamMessage::new(StreamId::new(Bytes::from(vec![stream])), sequence, content)
    }

    fn data(stream: u8, sequence: u64, bytes: usize) -> StreamMessage<ProposalPart> {
        message(stream, sequence, StreamContent::Data(ProposalPart::Data(vec![7; bytes])))
    }

    /// A stream completes whatever order its messages come in, and only
    /// when every message up to its end has come.
    #[test]
    fn a_stream_completes_in_any_order() {
        let mut streams = Streams::default();
        let publisher = peer();
        assert!(streams.receive(publisher, message(1, 2, StreamContent::Fin)).is_none());
        assert!(streams.receive(publisher, data(1, 1, 10)).is_none());
        let parts = streams.receive(publisher, data(1, 0, 5)).expect("complete");
        assert_eq!(parts, vec![ProposalPart::Data(vec![7; 5]), ProposalPart::Data(vec![7; 10])]);
        assert_eq!(streams.len(), 0, "a completed stream is forgotten");
    }

    /// A flood of streams from one publisher evicts only its own: the
    /// honest proposer's half-received stream survives and completes.
    #[test]
    fn a_publisher_cannot_evict_another_s_stream() {
        let mut streams = Streams::default();
        let (honest, hostile) = (peer(), peer());
        assert!(streams.receive(honest, data(0, 0, 100)).is_none());
        for stream in 1..=200_u8 {
            assert!(streams.receive(hostile, data(stream, 0, 100)).is_none());
        }
        assert_eq!(streams.len(), 1 + STREAMS_PER_PUBLISHER_MAX);
        assert!(streams.receive(honest, message(0, 1, StreamContent::Fin)).is_some());
    }

    /// Empty parts count against a stream's bytes, and a stream cannot
    /// have more messages than a maximal block needs.
    #[test]
    fn empty_parts_and_long_streams_are_bounded() {
        let mut streams = Streams::default();
        let publisher = peer();
        assert!(streams.receive(publisher, data(1, MESSAGES_PER_STREAM_MAX, 0)).is_none());
        assert_eq!(streams.len(), 0, "a message past the bound drops its stream");

        for sequence in 0..MESSAGES_PER_STREAM_MAX {
            assert!(streams.receive(publisher, data(2, sequence, 0)).is_none());
        }
        assert_eq!(streams.len(), 1, "within the bound, empty parts are kept");
        let stream = &streams.by_publisher[&publisher][0].1;
        assert_eq!(stream.bytes, MESSAGES_PER_STREAM * PART_OVERHEAD_BYTES);

        // A full block's data and then one part more is too large.
        let mut streams = Streams::default();
        let chunks = GOSSIP_BYTES_MAX / PART_BYTES;
        for sequence in 0..chunks as u64 {
            assert!(streams.receive(publisher, data(3, sequence, PART_BYTES)).is_none());
        }
        assert_eq!(streams.len(), 1, "a maximal block fits");
        assert!(streams.receive(publisher, data(3, chunks as u64, PART_BYTES)).is_none());
        assert_eq!(streams.len(), 0, "a stream past the byte bound is dropped");
    }
}
