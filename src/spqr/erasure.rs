//! The erasure code of SPQR (SPQR.md §6): a systematic Reed–Solomon code
//! over GF(2¹⁶), one polynomial per 16-bit lane, evaluated chunk by chunk.
//!
//! A payload of `32·n` bytes is `n` chunks; chunk `c < n` is the payload's
//! bytes `32c .. 32c+32`, and any `n` distinct chunks give the payload back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use super::gf16;

/// Bytes per chunk (16 lanes of one 16-bit symbol).
pub(crate) const CHUNK_LEN: usize = 32;
/// Lanes per chunk.
const LANES: usize = CHUNK_LEN / 2;

/// One 32-byte chunk and its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The chunk index (the abscissa of its points).
    pub index: u16,
    /// The 16 big-endian 16-bit lane values.
    pub data: [u8; CHUNK_LEN],
}

/// Lagrange weights at `x` over the abscissae `xs` (distinct): the value at
/// `x` of the polynomial through `(xs[i], y[i])` is `Σ w[i]·y[i]`.
fn weights(xs: &[u16], x: u16) -> Vec<u16> {
    xs.iter()
        .enumerate()
        .map(|(i, &xi)| {
            let (mut num, mut den) = (1u16, 1u16);
            for (m, &xm) in xs.iter().enumerate() {
                if m != i {
                    num = gf16::mul(num, x ^ xm);
                    den = gf16::mul(den, xi ^ xm);
                }
            }
            gf16::mul(num, gf16::inv(den))
        })
        .collect()
}

/// The symbol of lane `lane` in `chunk`.
fn symbol(chunk: &[u8], lane: usize) -> u16 {
    match chunk.get(2 * lane..2 * lane + 2) {
        Some(&[hi, lo]) => u16::from_be_bytes([hi, lo]),
        _ => 0,
    }
}

/// The inverted Lagrange denominators `1 / Π_{m≠i} (i ⊕ m)` of the
/// abscissae `0..n` (an encoder's), cached per `n`: they do not depend on
/// the point evaluated, and an encoder evaluates one per parity chunk.
fn systematic_inverse_denominators(n: usize) -> Arc<Vec<u16>> {
    static CACHE: OnceLock<Mutex<BTreeMap<usize, Arc<Vec<u16>>>>> = OnceLock::new();
    let compute = || {
        Arc::new(
            (0..n)
                .map(|i| {
                    let den = (0..n)
                        .filter(|&m| m != i)
                        .fold(1u16, |d, m| gf16::mul(d, (i ^ m) as u16));
                    gf16::inv(den)
                })
                .collect::<Vec<u16>>(),
        )
    };
    // Payloads are at most a few dozen chunks; anything else is not cached.
    if n > 64 {
        return compute();
    }
    let mut cache = CACHE
        .get_or_init(|| Mutex::new(BTreeMap::new()))
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    cache.entry(n).or_insert_with(compute).clone()
}

/// [`weights`] for the abscissae `0..n`, in O(n) from the cached
/// denominators (prefix and suffix products of `x ⊕ m`).
fn systematic_weights(n: usize, x: u16) -> Vec<u16> {
    let inv = systematic_inverse_denominators(n);
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(1u16);
    for m in 0..n {
        let last = prefix[m];
        prefix.push(gf16::mul(last, x ^ m as u16));
    }
    let mut w = vec![0u16; n];
    let mut suffix = 1u16;
    for i in (0..n).rev() {
        w[i] = gf16::mul(gf16::mul(prefix[i], suffix), inv[i]);
        suffix = gf16::mul(suffix, x ^ i as u16);
    }
    w
}

/// Evaluates every lane at `x` from the points `(xs[i], chunks[i])`.
fn interpolate(xs: &[u16], chunks: &[&[u8]], x: u16) -> [u8; CHUNK_LEN] {
    evaluate(&weights(xs, x), chunks)
}

/// `Σ w[i]·chunks[i]`, lane by lane.
fn evaluate(w: &[u16], chunks: &[&[u8]]) -> [u8; CHUNK_LEN] {
    let mut out = [0u8; CHUNK_LEN];
    for lane in 0..LANES {
        let y = w.iter().zip(chunks).fold(0u16, |acc, (&wi, chunk)| {
            acc ^ gf16::mul(wi, symbol(chunk, lane))
        });
        out[2 * lane..2 * lane + 2].copy_from_slice(&y.to_be_bytes());
    }
    out
}

/// The sending side of one payload: hands out chunk 0, 1, 2, … in turn.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Encoder {
    payload: Vec<u8>,
    /// The number of chunks handed out so far (the next index, mod 2¹⁶).
    next: u32,
}

impl Encoder {
    /// An encoder for `payload`, whose length is a non-zero multiple of 32.
    pub(crate) fn new(payload: Vec<u8>) -> Self {
        Encoder { payload, next: 0 }
    }

    /// An encoder restored at position `next`.
    pub(crate) fn restore(payload: Vec<u8>, next: u32) -> Option<Self> {
        (!payload.is_empty() && payload.len().is_multiple_of(CHUNK_LEN))
            .then_some(Encoder { payload, next })
    }

    /// The payload.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The position (chunks handed out so far).
    pub(crate) fn position(&self) -> u32 {
        self.next
    }

    /// The next chunk.
    pub(crate) fn next_chunk(&mut self) -> Chunk {
        let index = self.next as u16; // the index wraps at 2^16 (SPQR.md §6.3)
        self.next = self.next.wrapping_add(1);
        Chunk {
            index,
            data: self.chunk(index),
        }
    }

    /// Chunk `index` of the payload.
    pub(crate) fn chunk(&self, index: u16) -> [u8; CHUNK_LEN] {
        let n = self.payload.len() / CHUNK_LEN;
        if let Some(systematic) = self
            .payload
            .get(CHUNK_LEN * usize::from(index)..)
            .and_then(<[u8]>::first_chunk::<CHUNK_LEN>)
        {
            return *systematic;
        }
        let chunks: Vec<&[u8]> = self.payload.chunks(CHUNK_LEN).collect();
        evaluate(&systematic_weights(n, index), &chunks)
    }
}

/// The receiving side of one payload: collects chunks until any `n` have
/// arrived. Holds at most `2n` chunks (every systematic one, and others
/// only while short of `n`).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Decoder {
    /// Chunks needed (`n`).
    need: usize,
    /// The chunks held, in arrival order, with distinct indices.
    points: Vec<Chunk>,
}

impl Decoder {
    /// A decoder for a payload of `len` bytes (a non-zero multiple of 32).
    pub(crate) fn new(len: usize) -> Self {
        let need = len / CHUNK_LEN;
        Decoder {
            need,
            points: Vec::with_capacity(need),
        }
    }

    /// A decoder restored with the chunks it held; `None` if they break
    /// the decoder's invariants (duplicate indices, too many, too few to
    /// be held yet complete).
    pub(crate) fn restore(len: usize, points: Vec<Chunk>) -> Option<Self> {
        let mut d = Decoder::new(len);
        if d.need == 0 || !len.is_multiple_of(CHUNK_LEN) || points.len() > 2 * d.need {
            return None;
        }
        for p in points {
            if d.points.iter().any(|q| q.index == p.index) {
                return None;
            }
            if !d.accepts(p.index) {
                return None;
            }
            d.points.push(p);
        }
        (!d.is_complete()).then_some(d)
    }

    /// The payload length.
    pub(crate) fn payload_len(&self) -> usize {
        self.need * CHUNK_LEN
    }

    /// The chunks held.
    pub(crate) fn points(&self) -> &[Chunk] {
        &self.points
    }

    fn accepts(&self, index: u16) -> bool {
        usize::from(index) < self.need || self.points.len() < self.need
    }

    /// Adds a chunk (SPQR.md §6.4): systematic chunks always (replacing one
    /// of the same index), others only while short of `n`.
    pub(crate) fn add(&mut self, chunk: Chunk) {
        if !self.accepts(chunk.index) {
            return;
        }
        match self.points.iter_mut().find(|p| p.index == chunk.index) {
            Some(p) => *p = chunk,
            None => self.points.push(chunk),
        }
    }

    /// Whether `n` chunks are held.
    pub(crate) fn is_complete(&self) -> bool {
        self.points.len() >= self.need
    }

    /// The payload, once complete.
    pub(crate) fn decode(&self) -> Option<Vec<u8>> {
        if !self.is_complete() {
            return None;
        }
        let mut basis: Vec<&Chunk> = self.points.iter().collect();
        basis.sort_by_key(|p| p.index);
        basis.truncate(self.need);
        let xs: Vec<u16> = basis.iter().map(|p| p.index).collect();
        let chunks: Vec<&[u8]> = basis.iter().map(|p| &p.data[..]).collect();
        let mut out = Vec::with_capacity(self.need * CHUNK_LEN);
        for x in 0..self.need as u16 {
            match self.points.iter().find(|p| p.index == x) {
                Some(p) => out.extend_from_slice(&p.data),
                None => out.extend_from_slice(&interpolate(&xs, &chunks, x)),
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn appendix_a2_and_a3() {
        let p: Vec<u8> = (0..64).collect();
        let e = Encoder::new(p.clone());
        assert_eq!(e.chunk(2).to_vec(), (0x40..0x60).collect::<Vec<u8>>());
        assert_eq!(e.chunk(5).to_vec(), (0xa0..0xc0).collect::<Vec<u8>>());
        let mut d = Decoder::new(64);
        d.add(Chunk {
            index: 2,
            data: e.chunk(2),
        });
        assert!(!d.is_complete());
        d.add(Chunk {
            index: 1,
            data: e.chunk(1),
        });
        assert_eq!(d.decode().unwrap(), p);

        let p: Vec<u8> = (0..96u32).map(|i| (7 * i % 256) as u8).collect();
        let e = Encoder::new(p.clone());
        assert_eq!(
            e.chunk(3).to_vec(),
            hex("20272e353cc3cad1d8df666d747b020910171ea5acb3ba41484f565de4ebf2f9")
        );
        assert_eq!(
            e.chunk(4).to_vec(),
            hex("d5a0dbb2cf8499ac8ba2e4dbf6cde2e9f0f7fb05593449061b320520665d704f")
        );
        let mut d = Decoder::new(96);
        for c in [1, 2, 3] {
            d.add(Chunk {
                index: c,
                data: e.chunk(c),
            });
        }
        assert_eq!(d.decode().unwrap(), p);
    }

    #[test]
    fn any_n_chunks_decode() {
        for len in [96usize, 160, 960, 1152] {
            let n = len / CHUNK_LEN;
            let p: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
            let e = Encoder::new(p.clone());
            // Windows of n chunks out of n + 8, shifted and strided.
            for start in 0..8u16 {
                let mut d = Decoder::new(len);
                for k in 0..n as u16 {
                    let c = (start + k * 3) % (n as u16 + 8);
                    let c = if d.points().iter().any(|q| q.index == c) {
                        c + n as u16 + 8
                    } else {
                        c
                    };
                    d.add(Chunk {
                        index: c,
                        data: e.chunk(c),
                    });
                    if d.is_complete() {
                        break;
                    }
                }
                assert_eq!(d.decode().unwrap(), p, "len {len} start {start}");
            }
        }
    }

    #[test]
    fn redundancy_is_refused_once_full_and_systematic_replaces() {
        let mut d = Decoder::new(96);
        d.add(Chunk {
            index: 7,
            data: [1; 32],
        });
        d.add(Chunk {
            index: 8,
            data: [2; 32],
        });
        d.add(Chunk {
            index: 7,
            data: [3; 32],
        });
        assert_eq!(d.points().len(), 2);
        assert_eq!(d.points()[0].data, [3; 32]);
        d.add(Chunk {
            index: 9,
            data: [4; 32],
        });
        assert!(d.is_complete());
        d.add(Chunk {
            index: 10,
            data: [5; 32],
        });
        assert_eq!(d.points().len(), 3);
        d.add(Chunk {
            index: 0,
            data: [6; 32],
        });
        assert_eq!(d.points().len(), 4);
    }
}
