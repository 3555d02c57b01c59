//! The symmetric chain (SPQR.md §4): one 32-byte key per message from the
//! auth key and the stream of epoch secrets, with separate directions and
//! an out-of-order window.

use std::collections::VecDeque;

use zeroize::Zeroizing;

use super::kdf::{Secret32, L_EPOCH, L_NEXT, L_START};
use super::SpqrError;
use crate::ratchet::hkdf;

/// Which party this chain belongs to: the initiator sends A→B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The initiator (processed the prekey bundle).
    A2B,
    /// The responder (accepted the prekey message).
    B2A,
}

/// One stored out-of-order key.
#[derive(Clone)]
pub(crate) struct StoredKey {
    pub(crate) index: u32,
    pub(crate) key: Secret32,
}

/// One direction of one chain epoch.
#[derive(Clone)]
pub(crate) struct Half {
    /// The last index derived (0: none yet).
    pub(crate) ctr: u32,
    /// The next chain key; `None` once wiped.
    pub(crate) next: Option<Secret32>,
    /// Keys skipped over and not yet used (receiving halves only).
    pub(crate) stored: Vec<StoredKey>,
}

impl Half {
    fn new(next: &[u8]) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(next);
        Half {
            ctr: 0,
            next: Some(key),
            stored: Vec::new(),
        }
    }

    /// One step: `(i, key)` with `i = ctr + 1`.
    fn step(&mut self) -> Result<(u32, Secret32), SpqrError> {
        let next = self.next.as_mut().ok_or(SpqrError::ChainNotAvailable)?;
        let i = self.ctr.checked_add(1).ok_or(SpqrError::IndexExhausted)?;
        let mut info = Vec::with_capacity(4 + L_NEXT.len());
        info.extend_from_slice(&i.to_be_bytes());
        info.extend_from_slice(L_NEXT);
        let mut out = Zeroizing::new([0u8; 64]);
        hkdf(None, next.as_ref(), &info, out.as_mut());
        next.copy_from_slice(&out[..32]);
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&out[32..]);
        self.ctr = i;
        Ok((i, key))
    }

    /// Removes stored entry `pos` without leaving a copy behind: it is
    /// swapped to the end and dropped (wiped) in place.
    fn remove_stored(&mut self, pos: usize) {
        let last = self.stored.len().saturating_sub(1);
        self.stored.swap(pos, last);
        self.stored.truncate(last);
    }

    /// Makes room for `additional` entries; a growth copies the entries
    /// into a new buffer and wipes the old ones in place.
    fn reserve_stored(&mut self, additional: usize) {
        let needed = self.stored.len().saturating_add(additional);
        if needed > self.stored.capacity() {
            let mut grown = Vec::with_capacity(needed);
            grown.extend(self.stored.iter().cloned());
            self.stored = grown;
        }
    }
}

/// One chain epoch: a sending and a receiving half.
#[derive(Clone)]
pub(crate) struct ChainEpoch {
    pub(crate) epoch: u64,
    pub(crate) send: Half,
    pub(crate) recv: Half,
}

/// The chain.
#[derive(Clone)]
pub(crate) struct Chain {
    pub(crate) direction: Direction,
    pub(crate) current_epoch: u64,
    pub(crate) send_epoch: u64,
    pub(crate) next_root: Secret32,
    /// Retained epochs, oldest first, the newest being `current_epoch`.
    pub(crate) epochs: VecDeque<ChainEpoch>,
    pub(crate) max_jump: u32,
    pub(crate) max_ooo_keys: u32,
}

/// `(next_root, epoch)` from 96 bytes of HKDF output.
fn split(okm: &[u8; 96], direction: Direction, epoch: u64) -> (Secret32, ChainEpoch) {
    let mut root = Zeroizing::new([0u8; 32]);
    root.copy_from_slice(&okm[..32]);
    let (a2b, b2a) = (&okm[32..64], &okm[64..]);
    let (send, recv) = match direction {
        Direction::A2B => (a2b, b2a),
        Direction::B2A => (b2a, a2b),
    };
    (
        root,
        ChainEpoch {
            epoch,
            send: Half::new(send),
            recv: Half::new(recv),
        },
    )
}

impl Chain {
    /// `Chain.new(AK, direction)`.
    pub(crate) fn new(
        auth_key: &[u8; 32],
        direction: Direction,
        max_jump: u32,
        max_ooo_keys: u32,
    ) -> Self {
        let mut okm = Zeroizing::new([0u8; 96]);
        hkdf(None, auth_key, L_START, okm.as_mut());
        let (next_root, epoch0) = split(&okm, direction, 0);
        Chain {
            direction,
            current_epoch: 0,
            send_epoch: 0,
            next_root,
            epochs: VecDeque::from([epoch0]),
            max_jump,
            max_ooo_keys,
        }
    }

    /// `add_epoch(e, S_e)`; `e` must be `current_epoch + 1`.
    pub(crate) fn add_epoch(&mut self, epoch: u64, secret: &[u8; 32]) -> Result<(), SpqrError> {
        if Some(epoch) != self.current_epoch.checked_add(1) {
            return Err(SpqrError::EpochOutOfRange(epoch));
        }
        let mut okm = Zeroizing::new([0u8; 96]);
        hkdf(Some(&self.next_root), secret, L_EPOCH, okm.as_mut());
        let (next_root, e) = split(&okm, self.direction, epoch);
        self.next_root = next_root;
        self.epochs.push_back(e);
        self.current_epoch = epoch;
        Ok(())
    }

    fn position(&self, epoch: u64) -> Result<usize, SpqrError> {
        self.epochs
            .iter()
            .position(|e| e.epoch == epoch)
            .ok_or(SpqrError::EpochOutOfRange(epoch))
    }

    /// `send_key(e)`: the index and key of the next message keyed from
    /// chain epoch `e`.
    pub(crate) fn send_key(&mut self, epoch: u64) -> Result<(u32, Secret32), SpqrError> {
        if epoch < self.send_epoch {
            return Err(SpqrError::SendEpochDecreased);
        }
        self.position(epoch)?;
        if epoch != self.send_epoch {
            self.send_epoch = epoch;
            while self
                .epochs
                .front()
                .is_some_and(|e| e.epoch.saturating_add(1) < epoch)
            {
                self.epochs.pop_front();
            }
            if let Some(prev) = self.epochs.iter_mut().find(|e| e.epoch + 1 == epoch) {
                prev.send.next = None;
            }
        }
        let pos = self.position(epoch)?;
        self.epochs[pos].send.step()
    }

    /// `recv_key(e, i)` (SPQR.md §4.5).
    pub(crate) fn recv_key(&mut self, epoch: u64, index: u32) -> Result<Secret32, SpqrError> {
        let pos = self.position(epoch)?;
        // The jump is walked before the message's MAC can be checked: even
        // a self-session (saved with an unlimited jump, as libsignal keeps
        // it) walks at most MAX_JUMP steps, as its Double Ratchet does.
        let (max_jump, max_ooo) = (self.max_jump.min(super::MAX_JUMP), self.max_ooo_keys);
        let h = &mut self.epochs[pos].recv;
        if index == h.ctr {
            return Err(SpqrError::KeyAlreadyRequested(index));
        }
        if index < h.ctr {
            if u64::from(index) + u64::from(max_ooo) < u64::from(h.ctr) {
                return Err(SpqrError::KeyTrimmed(index));
            }
            let found = h.stored.iter().position(|k| k.index == index);
            return match found {
                Some(p) => {
                    let key = h.stored[p].key.clone();
                    h.remove_stored(p);
                    Ok(key)
                }
                None => Err(SpqrError::KeyAlreadyRequested(index)),
            };
        }
        if index - h.ctr > max_jump {
            return Err(SpqrError::KeyJump { ctr: h.ctr, index });
        }
        if u64::from(index) > u64::from(h.ctr) + u64::from(max_ooo) {
            h.stored.clear(); // Zeroizing entries wipe themselves in place
        }
        let to_store = (index - h.ctr - 1).min(max_ooo);
        h.reserve_stored(to_store as usize);
        while h.ctr + 1 < index {
            let (j, key) = h.step()?;
            if u64::from(j) + u64::from(max_ooo) >= u64::from(index) {
                h.stored.push(StoredKey { index: j, key });
            }
        }
        let gc_threshold = (u64::from(max_ooo) * 11 / 10) as usize + 1;
        if h.stored.len() >= gc_threshold {
            let floor = u64::from(h.ctr).saturating_sub(u64::from(max_ooo));
            let mut p = 0;
            while p < h.stored.len() {
                if u64::from(h.stored[p].index) < floor {
                    h.remove_stored(p);
                } else {
                    p += 1;
                }
            }
        }
        Ok(h.step()?.1)
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
    fn appendix_a4_chain() {
        let mut a = Chain::new(&[0x29; 32], Direction::A2B, 25_000, 2_000);
        assert_eq!(
            a.next_root.to_vec(),
            hex("c6f396ad3b038d7bb7eedbabd7c45c83eef0c9c42fca9f44d6f056e4b68be30c")
        );
        let mut b = Chain::new(&[0x29; 32], Direction::B2A, 25_000, 2_000);
        let (i, k) = a.send_key(0).unwrap();
        assert_eq!(i, 1);
        assert_eq!(
            k.to_vec(),
            hex("9bcdfae095d09aa8ab367dd231d1d271fe580b555bcc6f64ff079d53d9a9db5d")
        );
        let (i, k2) = a.send_key(0).unwrap();
        assert_eq!(i, 2);
        assert_eq!(
            k2.to_vec(),
            hex("6af868be8ea72f8ca3bb819c9623c0c9ffebd6f8503937d8f4fac142ac42a48e")
        );
        assert_eq!(*b.recv_key(0, 2).unwrap(), *k2);
        assert_eq!(*b.recv_key(0, 1).unwrap(), *k);
        assert_eq!(
            b.recv_key(0, 1).unwrap_err(),
            SpqrError::KeyAlreadyRequested(1)
        );
        a.add_epoch(1, &[0x42; 32]).unwrap();
        assert_eq!(
            a.next_root.to_vec(),
            hex("97c99aadfaa6d42f1af2b1aa6edb4fe460bf703ad16a8943e217e5548108fda0")
        );
        let (i, k) = a.send_key(1).unwrap();
        assert_eq!(i, 1);
        assert_eq!(
            k.to_vec(),
            hex("a7f25d5c3c98ff7da268b4e8f2290cc35f76f4293f9cbc2e86a9a40751cf872a")
        );
        assert_eq!(a.send_key(0).unwrap_err(), SpqrError::SendEpochDecreased);
    }

    #[test]
    fn out_of_order_window() {
        let mut a = Chain::new(&[1; 32], Direction::A2B, 25_000, 2_000);
        let mut b = Chain::new(&[1; 32], Direction::B2A, 25_000, 2_000);
        let keys: Vec<_> = (0..4_100).map(|_| a.send_key(0).unwrap().1).collect();
        // Jump to 3000: keys 1000..2999 are kept.
        assert_eq!(*b.recv_key(0, 3000).unwrap(), *keys[2999]);
        assert_eq!(b.epochs[0].recv.stored.len(), 2000);
        assert_eq!(b.recv_key(0, 999).unwrap_err(), SpqrError::KeyTrimmed(999));
        assert_eq!(*b.recv_key(0, 1000).unwrap(), *keys[999]);
        // A jump of 1000 more: 2999 entries, below the GC threshold.
        assert_eq!(*b.recv_key(0, 4000).unwrap(), *keys[3999]);
        // 2,998 entries reach the GC threshold: those below 4000 - 2000 go.
        assert_eq!(b.epochs[0].recv.stored.len(), 2000);
        assert_eq!(
            b.recv_key(0, 1999).unwrap_err(),
            SpqrError::KeyTrimmed(1999)
        );
        assert_eq!(*b.recv_key(0, 2000).unwrap(), *keys[1999]);
        assert_eq!(
            b.recv_key(0, 4000).unwrap_err(),
            SpqrError::KeyAlreadyRequested(4000)
        );
        assert_eq!(
            b.recv_key(0, 30_001).unwrap_err(),
            SpqrError::KeyJump {
                ctr: 4000,
                index: 30_001
            }
        );
    }
}
