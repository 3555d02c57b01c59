//! The SPQR message (SPQR.md §3), carried in `SignalMessage` field 5:
//! `version(1) ‖ epoch(varint) ‖ index(varint) ‖ type(1) [‖ chunk_index(varint) ‖ chunk(32)]`.

use super::erasure::{Chunk, CHUNK_LEN};
use super::SpqrError;

/// The version byte of SPQR V1 messages.
pub(crate) const V1: u8 = 1;

/// What a message transfers (the message types 0–6 of SPQR.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// 0: nothing.
    None,
    /// 1: a chunk of `hdr ‖ hdr_mac`.
    Hdr(Chunk),
    /// 2: a chunk of `ek_vector`.
    Ek(Chunk),
    /// 3: a chunk of `ek_vector`, and "I have all of ct1".
    EkCt1Ack(Chunk),
    /// 4: "I have all of ct1".
    Ct1Ack,
    /// 5: a chunk of `ct1`.
    Ct1(Chunk),
    /// 6: a chunk of `ct2 ‖ ct_mac`.
    Ct2(Chunk),
}

impl Payload {
    fn type_and_chunk(&self) -> (u8, Option<&Chunk>) {
        match self {
            Payload::None => (0, None),
            Payload::Hdr(c) => (1, Some(c)),
            Payload::Ek(c) => (2, Some(c)),
            Payload::EkCt1Ack(c) => (3, Some(c)),
            Payload::Ct1Ack => (4, None),
            Payload::Ct1(c) => (5, Some(c)),
            Payload::Ct2(c) => (6, Some(c)),
        }
    }
}

/// A parsed V1 SPQR message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpqrMessage {
    /// The sender's braid epoch (at least 1).
    pub epoch: u64,
    /// The sender's chain counter in chain epoch `epoch − 1` (0 only from a
    /// sender without a chain yet).
    pub index: u32,
    /// What it transfers.
    pub payload: Payload,
}

/// Appends `v` as an unsigned LEB128 varint (minimal form).
fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint as the reference decoder does: at most 10 bytes, a
/// terminating byte required, bits beyond 64 dropped.
fn get_varint(buf: &mut &[u8]) -> Result<u64, SpqrError> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some((&b, rest)) = buf.split_first() else {
            return Err(SpqrError::MessageDecode);
        };
        *buf = rest;
        value |= u64::from(b & 0x7f).checked_shl(7 * i).unwrap_or(0);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(SpqrError::MessageDecode)
}

impl SpqrMessage {
    /// The V1 encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 3 + CHUNK_LEN + 8);
        out.push(V1);
        put_varint(self.epoch, &mut out);
        put_varint(u64::from(self.index), &mut out);
        let (ty, chunk) = self.payload.type_and_chunk();
        out.push(ty);
        if let Some(c) = chunk {
            put_varint(u64::from(c.index), &mut out);
            out.extend_from_slice(&c.data);
        }
        out
    }

    /// Parses a V1 message (the version byte included). Trailing bytes
    /// after a complete message are ignored, as by the reference decoder.
    pub fn decode(bytes: &[u8]) -> Result<Self, SpqrError> {
        let Some((&V1, mut buf)) = bytes.split_first() else {
            return Err(SpqrError::MessageDecode);
        };
        let epoch = get_varint(&mut buf)?;
        if epoch == 0 {
            return Err(SpqrError::MessageDecode);
        }
        let index = u32::try_from(get_varint(&mut buf)?).map_err(|_| SpqrError::MessageDecode)?;
        let Some((&ty, mut rest)) = buf.split_first() else {
            return Err(SpqrError::MessageDecode);
        };
        let mut chunk = || -> Result<Chunk, SpqrError> {
            let index =
                u16::try_from(get_varint(&mut rest)?).map_err(|_| SpqrError::MessageDecode)?;
            let data = *rest
                .first_chunk::<CHUNK_LEN>()
                .ok_or(SpqrError::MessageDecode)?;
            Ok(Chunk { index, data })
        };
        let payload = match ty {
            0 => Payload::None,
            1 => Payload::Hdr(chunk()?),
            2 => Payload::Ek(chunk()?),
            3 => Payload::EkCt1Ack(chunk()?),
            4 => Payload::Ct1Ack,
            5 => Payload::Ct1(chunk()?),
            6 => Payload::Ct2(chunk()?),
            _ => return Err(SpqrError::MessageDecode),
        };
        Ok(SpqrMessage {
            epoch,
            index,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appendix_a5() {
        let m = SpqrMessage {
            epoch: 1,
            index: 1,
            payload: Payload::None,
        };
        assert_eq!(m.encode(), [1, 1, 1, 0]);
        let m = SpqrMessage {
            epoch: 300,
            index: 70_000,
            payload: Payload::Ct1Ack,
        };
        assert_eq!(m.encode(), [0x01, 0xac, 0x02, 0xf0, 0xa2, 0x04, 0x04]);
        assert_eq!(SpqrMessage::decode(&m.encode()).unwrap(), m);
        let m = SpqrMessage {
            epoch: 2,
            index: 129,
            payload: Payload::Ek(Chunk {
                index: 200,
                data: [0xab; 32],
            }),
        };
        let mut expected = vec![0x01, 0x02, 0x81, 0x01, 0x02, 0xc8, 0x01];
        expected.extend_from_slice(&[0xab; 32]);
        assert_eq!(m.encode(), expected);
        assert_eq!(SpqrMessage::decode(&expected).unwrap(), m);
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            &[][..],
            &[2, 1, 1, 0],
            &[1, 0, 1, 0],                            // epoch 0
            &[1, 1, 1],                               // no type
            &[1, 1, 1, 7],                            // unknown type
            &[1, 1, 1, 2, 0, 0, 0],                   // truncated chunk
            &[1, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 0], // index > u32
            &[1, 1, 1, 2, 0x80, 0x80, 0x04],          // chunk index 65536 (and no data)
            &[
                1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 1, 0,
            ],
            &[1, 0x81],
        ] {
            assert!(SpqrMessage::decode(bad).is_err(), "{bad:02x?}");
        }
        // Non-minimal varints are accepted, trailing bytes ignored.
        let m = SpqrMessage::decode(&[1, 0x81, 0x00, 0x01, 0x00, 0xff]).unwrap();
        assert_eq!((m.epoch, m.index, m.payload), (1, 1, Payload::None));
        // Bits beyond 64 are dropped (10th byte).
        let m = SpqrMessage::decode(&[
            1, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7e, 1, 0,
        ])
        .unwrap();
        assert_eq!(m.epoch, 1);
    }
}
