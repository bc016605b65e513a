//! One borsh codec for everything Malachite writes to its WAL and sends on
//! its network: consensus messages, proposal parts and their streams,
//! validator proofs and sync messages. Decoding is strict (trailing bytes
//! are an error), like every other decoder of outside bytes in Gridshare.

use bytes::Bytes;
use malachitebft_app_channel::app::consensus::{LivenessMsg, SignedConsensusMsg};
use malachitebft_app_channel::app::streaming::StreamMessage;
use malachitebft_app_channel::app::types::ProposedValue;
use malachitebft_app_channel::app::types::codec::{Codec, HasEncodedLen};
use malachitebft_app_channel::app::types::core::{
    ExtendedCommitCertificate, ExtendedCommitSignature, PolkaCertificate, Round, ValidatorProof,
};
use malachitebft_app_channel::app::types::sync;
use malachitebft_sync::ValueResponse;

use super::context::{Address, BlockId, GridshareContext, Height, ProposalPart};
use gridshare_ledger::ids::Signature;

/// The codec.
#[derive(Clone, Copy, Debug, Default)]
pub struct BorshCodec;

/// Bytes that are not the canonical encoding of the expected message.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode {type_name}: {message}")]
pub struct CodecError {
    type_name: &'static str,
    message: String,
}

fn encode<T: borsh::BorshSerialize>(message: &T) -> Result<Bytes, CodecError> {
    borsh::to_vec(message)
        .map(Bytes::from)
        .map_err(|error| CodecError { type_name: std::any::type_name::<T>(), message: error.to_string() })
}

fn decode<T: borsh::BorshDeserialize>(bytes: &[u8]) -> Result<T, CodecError> {
    borsh::from_slice(bytes)
        .map_err(|error| CodecError { type_name: std::any::type_name::<T>(), message: error.to_string() })
}

macro_rules! borsh_codec {
    ($($type:ty),* $(,)?) => {$(
        impl Codec<$type> for BorshCodec {
            type Error = CodecError;

            fn decode(&self, bytes: Bytes) -> Result<$type, CodecError> {
                decode(&bytes)
            }

            fn encode(&self, message: &$type) -> Result<Bytes, CodecError> {
                encode(message)
            }
        }
    )*};
}

borsh_codec!(
    ProposalPart,
    SignedConsensusMsg<GridshareContext>,
    LivenessMsg<GridshareContext>,
    StreamMessage<ProposalPart>,
    ProposedValue<GridshareContext>,
    PolkaCertificate<GridshareContext>,
    sync::Status<GridshareContext>,
    sync::Request<GridshareContext>,
);

/// A decided value as it travels in a sync response: the block's bytes and
/// the certificate's height, round, block and signatures. Malachite's
/// `ExtendedCommitCertificate` has no borsh encoding, and vote extensions
/// are off, so none is carried.
type SyncedValue = (Vec<u8>, Height, Round, BlockId, Vec<(Address, Signature)>);

fn sync_response(
    response: &sync::Response<GridshareContext>,
) -> Result<(Height, Vec<SyncedValue>), CodecError> {
    let sync::Response::ValueResponse(response) = response;
    let values = response
        .values
        .iter()
        .map(|value| {
            let certificate = &value.certificate;
            let signatures = certificate
                .commit_signatures
                .iter()
                .map(|signature| match signature.extension {
                    None => Ok((signature.address, signature.signature)),
                    Some(_) => Err(CodecError {
                        type_name: "sync::Response",
                        message: "vote extensions are not part of Gridshare".into(),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((
                value.value_bytes.to_vec(),
                certificate.height,
                certificate.round,
                certificate.value_id,
                signatures,
            ))
        })
        .collect::<Result<Vec<_>, CodecError>>()?;
    Ok((response.start_height, values))
}

impl Codec<sync::Response<GridshareContext>> for BorshCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<sync::Response<GridshareContext>, CodecError> {
        let (start_height, values) = decode::<(Height, Vec<SyncedValue>)>(&bytes)?;
        let values = values
            .into_iter()
            .map(|(value_bytes, height, round, value_id, signatures)| {
                let commit_signatures = signatures
                    .into_iter()
                    .map(|(address, signature)| ExtendedCommitSignature {
                        address,
                        signature,
                        extension: None,
                    })
                    .collect();
                let certificate = ExtendedCommitCertificate { height, round, value_id, commit_signatures };
                sync::RawDecidedValue::new(Bytes::from(value_bytes), certificate)
            })
            .collect();
        Ok(sync::Response::ValueResponse(ValueResponse::new(start_height, values)))
    }

    fn encode(&self, response: &sync::Response<GridshareContext>) -> Result<Bytes, CodecError> {
        encode(&sync_response(response)?)
    }
}

impl HasEncodedLen<sync::Response<GridshareContext>> for BorshCodec {
    fn encoded_len(&self, response: &sync::Response<GridshareContext>) -> Result<usize, CodecError> {
        borsh::object_length(&sync_response(response)?)
            .map_err(|error| CodecError { type_name: "sync::Response", message: error.to_string() })
    }
}

/// Malachite's validator proof has no borsh encoding of its own: its three
/// fields in order.
impl Codec<ValidatorProof<GridshareContext>> for BorshCodec {
    type Error = CodecError;

    fn decode(&self, bytes: Bytes) -> Result<ValidatorProof<GridshareContext>, CodecError> {
        let (public_key, peer_id, signature) = decode::<(Vec<u8>, Vec<u8>, Signature)>(&bytes)?;
        Ok(ValidatorProof::new(public_key, peer_id, signature))
    }

    fn encode(&self, proof: &ValidatorProof<GridshareContext>) -> Result<Bytes, CodecError> {
        encode(&(&proof.public_key, &proof.peer_id, &proof.signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachitebft_app_channel::app::streaming::StreamContent;
    use malachitebft_app_channel::app::types::streaming::StreamId;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let part = StreamMessage::new(
            StreamId::new(Bytes::from_static(b"stream")),
            3,
            StreamContent::Data(ProposalPart::Data(vec![1, 2, 3])),
        );
        let bytes = BorshCodec.encode(&part).unwrap();
        let decoded: StreamMessage<ProposalPart> = BorshCodec.decode(bytes.clone()).unwrap();
        assert_eq!(decoded, part);
        let mut longer = bytes.to_vec();
        longer.push(0);
        let error =
            Codec::<StreamMessage<ProposalPart>>::decode(&BorshCodec, Bytes::from(longer)).unwrap_err();
        assert!(error.to_string().contains("cannot decode"), "{error}");
        assert!(Codec::<ProposalPart>::decode(&BorshCodec, Bytes::from_static(&[9, 9])).is_err());
    }

    #[test]
    fn a_sync_response_keeps_its_certificate() {
        let certificate = ExtendedCommitCertificate {
            height: Height(5),
            round: Round::new(1),
            value_id: BlockId(gridshare_ledger::Hash([3; 32])),
            commit_signatures: vec![ExtendedCommitSignature {
                address: Address(gridshare_ledger::ids::PublicKey([4; 32])),
                signature: Signature([5; 64]),
                extension: None,
            }],
        };
        let response = sync::Response::ValueResponse(ValueResponse::new(
            Height(5),
            vec![sync::RawDecidedValue::new(Bytes::from_static(b"block"), certificate)],
        ));
        let bytes = BorshCodec.encode(&response).unwrap();
        assert_eq!(BorshCodec.encoded_len(&response).unwrap(), bytes.len());
        let decoded: sync::Response<GridshareContext> = BorshCodec.decode(bytes).unwrap();
        assert_eq!(decoded, response);
    }
}
