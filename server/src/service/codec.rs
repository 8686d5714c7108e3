//! A tonic codec that writes pre-encoded `SubscribeResponse` bytes as they are and decodes
//! `SubscribeRequest` with prost.

use bytes::{Buf, BufMut};
use kinesis_relay_api::v1;
use prost::Message;
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

use super::encode::EncodedResponse;

/// The Subscribe codec.
#[derive(Debug, Clone, Copy)]
pub struct SubscribeCodec {
    /// Largest request accepted.
    pub max_request_bytes: usize,
}

impl Codec for SubscribeCodec {
    type Encode = EncodedResponse;
    type Decode = v1::SubscribeRequest;
    type Encoder = SegmentEncoder;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        SegmentEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder {
            max_request_bytes: self.max_request_bytes,
        }
    }
}

/// Copies the segments of an [`EncodedResponse`] into the frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct SegmentEncoder;

impl Encoder for SegmentEncoder {
    type Item = EncodedResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.reserve(item.len());
        for segment in &item.segments {
            dst.put_slice(segment);
        }
        Ok(())
    }
}

/// Decodes a `SubscribeRequest`, refusing oversized ones.
#[derive(Debug, Clone, Copy)]
pub struct RequestDecoder {
    /// Largest request accepted.
    max_request_bytes: usize,
}

impl Decoder for RequestDecoder {
    type Item = v1::SubscribeRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        if src.remaining() > self.max_request_bytes {
            return Err(Status::resource_exhausted(format!(
                "the request is {} bytes; this relay accepts at most {} (--max-request-bytes)",
                src.remaining(),
                self.max_request_bytes
            )));
        }
        let request =
            v1::SubscribeRequest::decode(src.copy_to_bytes(src.remaining())).map_err(|err| {
                Status::invalid_argument(format!(
                    "the request is not a valid SubscribeRequest: {err}"
                ))
            })?;
        Ok(Some(request))
    }
}
