//! [`Raw`]: an encoded protobuf message carried through Volley's typed call API as it is.

use bytes::{Buf, BufMut};
use prost::DecodeError;
use prost::encoding::{DecodeContext, WireType, decode_varint, encode_key, encode_varint};

/// A message's encoding, opaque: encoding writes the bytes, decoding keeps them (field by
/// field, as read). The CLI turns JSON into these bytes and back with `prost-reflect`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Raw(pub Vec<u8>);

// prost has no other way to make a `DecodeError` in a `Message` of one's own.
#[allow(deprecated)]
impl prost::Message for Raw {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        _ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        encode_key(tag, wire_type, &mut self.0);
        let take = |n: usize, buf: &mut dyn Buf, out: &mut Vec<u8>| {
            if buf.remaining() < n {
                return Err(DecodeError::new("buffer underflow"));
            }
            out.extend_from_slice(&buf.copy_to_bytes(n));
            Ok(())
        };
        match wire_type {
            WireType::Varint => {
                let value = decode_varint(buf)?;
                encode_varint(value, &mut self.0);
                Ok(())
            }
            WireType::SixtyFourBit => take(8, buf, &mut self.0),
            WireType::ThirtyTwoBit => take(4, buf, &mut self.0),
            WireType::LengthDelimited => {
                let len = decode_varint(buf)?;
                encode_varint(len, &mut self.0);
                let len = usize::try_from(len).map_err(|_| DecodeError::new("length overflow"))?;
                take(len, buf, &mut self.0)
            }
            WireType::StartGroup | WireType::EndGroup => {
                Err(DecodeError::new("groups are not supported"))
            }
        }
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn bytes_survive_a_decode_and_an_encode() {
        // A message of every wire type but groups: varint, 64-bit, length-delimited,
        // 32-bit, and a nested message.
        let original = prost_types::FileDescriptorProto {
            name: Some("a.proto".into()),
            message_type: vec![prost_types::DescriptorProto {
                name: Some("M".into()),
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec();
        let mut fixed = original.clone();
        // field 20, fixed64 and field 21, fixed32 (unknown to the message; kept as is).
        encode_key(20, WireType::SixtyFourBit, &mut fixed);
        fixed.extend_from_slice(&7u64.to_le_bytes());
        encode_key(21, WireType::ThirtyTwoBit, &mut fixed);
        fixed.extend_from_slice(&9u32.to_le_bytes());
        let raw = Raw::decode(&fixed[..]).expect("decodes");
        assert_eq!(raw.0, fixed);
        assert_eq!(raw.encode_to_vec(), fixed);
    }

    #[test]
    fn truncated_input_is_an_error() {
        let mut bytes = Vec::new();
        encode_key(1, WireType::LengthDelimited, &mut bytes);
        encode_varint(10, &mut bytes);
        bytes.extend_from_slice(b"abc");
        assert!(Raw::decode(&bytes[..]).is_err());
    }
}

/// An encoded request shared by many calls (`volley bench`): cloning it shares the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded(pub bytes::Bytes);

impl prost::Message for Encoded {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // Only sent, never read: a decode skips what it is given.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// A response that is read and dropped (`volley bench`): its fields are checked for
/// well-formedness and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Discard;

impl prost::Message for Discard {
    fn encode_raw(&self, _buf: &mut impl BufMut) {}

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        0
    }

    fn clear(&mut self) {}
}
