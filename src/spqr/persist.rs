//! ratchetkit's own encoding of an [`SpqrState`] (SPQR.md §2.8 leaves the
//! format to each implementation). Empty bytes: SPQR off. Otherwise a
//! format byte (1), then fixed-order fields, all integers big-endian:
//!
//! ```text
//! flags(1: bit 0 negotiation, bit 1 braid, bit 2 chain)
//! [negotiation: AK(32) direction(1) min_version(1) max_jump(4) max_ooo(4)]
//! [braid: epoch(8) R(32) M(32) state(1) state data]
//! [chain: direction(1) current_epoch(8) send_epoch(8) next_root(32)
//!         max_jump(4) max_ooo(4) count(1) count × (epoch(8) send half, recv half)]
//! half    = ctr(4) has_next(1) [next(32)] stored(2) stored × (index(4) key(32))
//! encoder = len(2) payload(len) position(4)
//! decoder = len(2) count(1) count × (index(2) chunk(32))
//! ```
//!
//! Decoding checks every length, count and invariant (payload sizes per
//! state, at most 2,200 stored keys per half and all behind its counter,
//! at most [`MAX_EPOCHS`] consecutive chain epochs ending at the current
//! one) and refuses trailing bytes, with [`SpqrError::StateDecode`].
//! Decoded, a state takes at most about twice its encoded size.

use std::collections::VecDeque;

use zeroize::Zeroizing;

use super::braid::{Braid, BraidState, CT2_PAYLOAD_LEN, HDR_PAYLOAD_LEN};
use super::chain::{Chain, ChainEpoch, Direction, Half, StoredKey};
use super::erasure::{Chunk, Decoder, Encoder, CHUNK_LEN};
use super::kdf::{Authenticator, Secret32};
use super::kem::{DecapsulationKey, CT1_LEN, DK_LEN, EK_VECTOR_LEN, HDR_LEN};
use super::{Negotiation, SpqrError, SpqrState, MAX_OOO_KEYS};

const FORMAT: u8 = 1;
/// The most chain epochs a saved state may hold (three in practice:
/// SPQR.md §4.5 keeps the epochs from `send_epoch − 1` to `current_epoch`).
pub(crate) const MAX_EPOCHS: usize = 4;

// ---- encode ----------------------------------------------------------------

struct Out(Zeroizing<Vec<u8>>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    /// Appends `v`. The buffer holds secrets: it grows into a new buffer,
    /// and the old one is wiped as it drops (a plain `Vec` growth would
    /// free it with the secrets inside).
    fn bytes(&mut self, v: &[u8]) {
        let needed = self.0.len().saturating_add(v.len());
        if needed > self.0.capacity() {
            let capacity = needed.max(self.0.capacity().saturating_mul(2)).max(256);
            let mut grown = Zeroizing::new(Vec::with_capacity(capacity));
            grown.extend_from_slice(&self.0);
            self.0 = grown;
        }
        self.0.extend_from_slice(v);
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }
    fn direction(&mut self, d: Direction) {
        self.u8(match d {
            Direction::A2B => 0,
            Direction::B2A => 1,
        });
    }
    fn encoder(&mut self, e: &Encoder) {
        self.u16(e.payload().len() as u16);
        self.bytes(e.payload());
        self.u32(e.position());
    }
    fn decoder(&mut self, d: &Decoder) {
        self.u16(d.payload_len() as u16);
        self.u8(d.points().len() as u8);
        for p in d.points() {
            self.u16(p.index);
            self.bytes(&p.data);
        }
    }
    fn half(&mut self, h: &Half) {
        self.u32(h.ctr);
        match &h.next {
            Some(k) => {
                self.u8(1);
                self.bytes(k.as_ref());
            }
            None => self.u8(0),
        }
        self.u16(h.stored.len() as u16);
        for s in &h.stored {
            self.u32(s.index);
            self.bytes(s.key.as_ref());
        }
    }
}

pub(crate) fn encode(s: &SpqrState) -> Vec<u8> {
    if s.braid.is_none() && s.chain.is_none() && s.negotiation.is_none() {
        return Vec::new();
    }
    let mut o = Out(Zeroizing::new(Vec::new()));
    o.u8(FORMAT);
    o.u8(u8::from(s.negotiation.is_some())
        | u8::from(s.braid.is_some()) << 1
        | u8::from(s.chain.is_some()) << 2);
    if let Some(n) = &s.negotiation {
        o.bytes(n.auth_key.as_ref());
        o.direction(n.direction);
        o.u8(n.min_version);
        o.u32(n.max_jump);
        o.u32(n.max_ooo_keys);
    }
    if let Some(b) = &s.braid {
        o.u64(b.epoch);
        o.bytes(b.auth.root.as_ref());
        o.bytes(b.auth.mac.as_ref());
        match &b.state {
            BraidState::EIdle => o.u8(0),
            BraidState::ESendHdr { dk, enc_hdr } => {
                o.u8(1);
                o.bytes(dk.as_bytes());
                o.encoder(enc_hdr);
            }
            BraidState::ESendEk {
                dk,
                enc_ek,
                dec_ct1,
            } => {
                o.u8(2);
                o.bytes(dk.as_bytes());
                o.encoder(enc_ek);
                o.decoder(dec_ct1);
            }
            BraidState::ESendEkCt1Done { dk, ct1, enc_ek } => {
                o.u8(3);
                o.bytes(dk.as_bytes());
                o.bytes(ct1);
                o.encoder(enc_ek);
            }
            BraidState::EWaitCt2 { dk, ct1, dec_ct2 } => {
                o.u8(4);
                o.bytes(dk.as_bytes());
                o.bytes(ct1);
                o.decoder(dec_ct2);
            }
            BraidState::CWaitHdr { dec_hdr } => {
                o.u8(5);
                o.decoder(dec_hdr);
            }
            BraidState::CHdrReady { hdr } => {
                o.u8(6);
                o.bytes(hdr);
            }
            BraidState::CSendCt1 {
                hdr,
                m,
                enc_ct1,
                dec_ek,
            } => {
                o.u8(7);
                o.bytes(hdr);
                o.bytes(m.as_ref());
                o.encoder(enc_ct1);
                o.decoder(dec_ek);
            }
            BraidState::CSendCt1EkDone {
                hdr,
                m,
                ek_vector,
                enc_ct1,
            } => {
                o.u8(8);
                o.bytes(hdr);
                o.bytes(m.as_ref());
                o.bytes(ek_vector);
                o.encoder(enc_ct1);
            }
            BraidState::CWaitEk {
                hdr,
                m,
                ct1,
                dec_ek,
            } => {
                o.u8(9);
                o.bytes(hdr);
                o.bytes(m.as_ref());
                o.bytes(ct1);
                o.decoder(dec_ek);
            }
            BraidState::CSendCt2 { enc_ct2 } => {
                o.u8(10);
                o.encoder(enc_ct2);
            }
        }
    }
    if let Some(c) = &s.chain {
        o.direction(c.direction);
        o.u64(c.current_epoch);
        o.u64(c.send_epoch);
        o.bytes(c.next_root.as_ref());
        o.u32(c.max_jump);
        o.u32(c.max_ooo_keys);
        o.u8(c.epochs.len() as u8);
        for e in &c.epochs {
            o.u64(e.epoch);
            o.half(&e.send);
            o.half(&e.recv);
        }
    }
    std::mem::take(&mut *o.0)
}

// ---- decode ----------------------------------------------------------------

const BAD: SpqrError = SpqrError::StateDecode;

struct In<'a>(&'a [u8]);

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SpqrError> {
        if n > self.0.len() {
            return Err(BAD);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], SpqrError> {
        <[u8; N]>::try_from(self.take(N)?).map_err(|_| BAD)
    }
    fn u8(&mut self) -> Result<u8, SpqrError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, SpqrError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, SpqrError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, SpqrError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn secret(&mut self) -> Result<Secret32, SpqrError> {
        Ok(Zeroizing::new(self.array()?))
    }
    fn flag(&mut self) -> Result<bool, SpqrError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(BAD),
        }
    }
    fn direction(&mut self) -> Result<Direction, SpqrError> {
        Ok(if self.flag()? {
            Direction::B2A
        } else {
            Direction::A2B
        })
    }
    fn vec(&mut self, n: usize) -> Result<Vec<u8>, SpqrError> {
        Ok(self.take(n)?.to_vec())
    }
    fn dk(&mut self) -> Result<DecapsulationKey, SpqrError> {
        DecapsulationKey::from_bytes(self.take(DK_LEN)?)
    }
    fn encoder(&mut self, len: usize) -> Result<Encoder, SpqrError> {
        if usize::from(self.u16()?) != len {
            return Err(BAD);
        }
        let payload = self.vec(len)?;
        Encoder::restore(payload, self.u32()?).ok_or(BAD)
    }
    fn decoder(&mut self, len: usize) -> Result<Decoder, SpqrError> {
        if usize::from(self.u16()?) != len {
            return Err(BAD);
        }
        let count = usize::from(self.u8()?);
        if count > 2 * len / CHUNK_LEN {
            return Err(BAD);
        }
        let mut points = Vec::with_capacity(count);
        for _ in 0..count {
            let index = self.u16()?;
            points.push(Chunk {
                index,
                data: self.array()?,
            });
        }
        Decoder::restore(len, points).ok_or(BAD)
    }
    fn half(&mut self, max_ooo: u32) -> Result<Half, SpqrError> {
        let ctr = self.u32()?;
        let next = if self.flag()? {
            Some(self.secret()?)
        } else {
            None
        };
        let count = usize::from(self.u16()?);
        if count > (u64::from(max_ooo) * 11 / 10) as usize {
            return Err(BAD);
        }
        let mut stored: Vec<StoredKey> = Vec::with_capacity(count);
        for _ in 0..count {
            let index = self.u32()?;
            if index >= ctr || stored.iter().any(|s| s.index == index) {
                return Err(BAD);
            }
            stored.push(StoredKey {
                index,
                key: self.secret()?,
            });
        }
        Ok(Half { ctr, next, stored })
    }
}

fn hdr(input: &mut In<'_>) -> Result<[u8; HDR_LEN], SpqrError> {
    input.array()
}

pub(crate) fn decode(bytes: &[u8]) -> Result<SpqrState, SpqrError> {
    if bytes.is_empty() {
        return Ok(SpqrState::default());
    }
    let mut i = In(bytes);
    if i.u8()? != FORMAT {
        return Err(BAD);
    }
    let flags = i.u8()?;
    if flags & !7 != 0 {
        return Err(BAD);
    }
    let negotiation = if flags & 1 != 0 {
        let auth_key = i.secret()?;
        let direction = i.direction()?;
        let min_version = i.u8()?;
        if min_version > 1 {
            return Err(BAD);
        }
        let max_jump = i.u32()?;
        let max_ooo_keys = i.u32()?;
        if max_ooo_keys > MAX_OOO_KEYS {
            return Err(BAD);
        }
        Some(Negotiation {
            auth_key,
            direction,
            min_version,
            max_jump,
            max_ooo_keys,
        })
    } else {
        None
    };
    let braid = if flags & 2 != 0 {
        let epoch = i.u64()?;
        // Epoch 0 never exists; u64::MAX has no successor.
        if epoch == 0 || epoch == u64::MAX {
            return Err(BAD);
        }
        let auth = Authenticator {
            root: i.secret()?,
            mac: i.secret()?,
        };
        let state = match i.u8()? {
            0 => BraidState::EIdle,
            1 => BraidState::ESendHdr {
                dk: i.dk()?,
                enc_hdr: i.encoder(HDR_PAYLOAD_LEN)?,
            },
            2 => BraidState::ESendEk {
                dk: i.dk()?,
                enc_ek: i.encoder(EK_VECTOR_LEN)?,
                dec_ct1: i.decoder(CT1_LEN)?,
            },
            3 => BraidState::ESendEkCt1Done {
                dk: i.dk()?,
                ct1: i.vec(CT1_LEN)?,
                enc_ek: i.encoder(EK_VECTOR_LEN)?,
            },
            4 => BraidState::EWaitCt2 {
                dk: i.dk()?,
                ct1: i.vec(CT1_LEN)?,
                dec_ct2: i.decoder(CT2_PAYLOAD_LEN)?,
            },
            5 => BraidState::CWaitHdr {
                dec_hdr: i.decoder(HDR_PAYLOAD_LEN)?,
            },
            6 => BraidState::CHdrReady { hdr: hdr(&mut i)? },
            7 => BraidState::CSendCt1 {
                hdr: hdr(&mut i)?,
                m: i.secret()?,
                enc_ct1: i.encoder(CT1_LEN)?,
                dec_ek: i.decoder(EK_VECTOR_LEN)?,
            },
            8 => BraidState::CSendCt1EkDone {
                hdr: hdr(&mut i)?,
                m: i.secret()?,
                ek_vector: i.vec(EK_VECTOR_LEN)?,
                enc_ct1: i.encoder(CT1_LEN)?,
            },
            9 => BraidState::CWaitEk {
                hdr: hdr(&mut i)?,
                m: i.secret()?,
                ct1: i.vec(CT1_LEN)?,
                dec_ek: i.decoder(EK_VECTOR_LEN)?,
            },
            10 => BraidState::CSendCt2 {
                enc_ct2: i.encoder(CT2_PAYLOAD_LEN)?,
            },
            _ => return Err(BAD),
        };
        Some(Braid { epoch, auth, state })
    } else {
        None
    };
    let chain = if flags & 4 != 0 {
        let direction = i.direction()?;
        let current_epoch = i.u64()?;
        let send_epoch = i.u64()?;
        let next_root = i.secret()?;
        let max_jump = i.u32()?;
        let max_ooo_keys = i.u32()?;
        let count = usize::from(i.u8()?);
        if count == 0
            || count > MAX_EPOCHS
            || send_epoch > current_epoch
            || current_epoch == u64::MAX
            || max_ooo_keys > MAX_OOO_KEYS
        {
            return Err(BAD);
        }
        let mut epochs = VecDeque::with_capacity(count);
        for k in 0..count {
            let epoch = i.u64()?;
            // Consecutive, ending at the current epoch.
            if Some(epoch) != current_epoch.checked_sub((count - 1 - k) as u64) {
                return Err(BAD);
            }
            epochs.push_back(ChainEpoch {
                epoch,
                send: i.half(max_ooo_keys)?,
                recv: i.half(max_ooo_keys)?,
            });
        }
        if epochs.front().is_some_and(|e| e.epoch > send_epoch) {
            return Err(BAD);
        }
        Some(Chain {
            direction,
            current_epoch,
            send_epoch,
            next_root,
            epochs,
            max_jump,
            max_ooo_keys,
        })
    } else {
        None
    };
    if !i.0.is_empty() {
        return Err(BAD);
    }
    if braid.is_none() || (chain.is_none() && negotiation.is_none()) {
        return Err(BAD);
    }
    Ok(SpqrState {
        braid: braid.map(Box::new),
        chain: chain.map(Box::new),
        negotiation: negotiation.map(Box::new),
    })
}
