//! Double Ratchet key derivation as deployed: root keys, chain keys and
//! message keys.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::Result;
use crate::keys::{PrivateKey, PublicKey};

type HmacSha256 = Hmac<Sha256>;

/// A message more than this many steps ahead of its chain is rejected.
pub const MAX_FORWARD_JUMPS: u32 = 25_000;
/// Each receiving chain keeps at most this many skipped message keys.
pub const MAX_SKIPPED_KEYS: usize = 2_000;
/// A session keeps at most this many receiving chains.
pub const MAX_RECEIVER_CHAINS: usize = 5;

/// HMAC-SHA256 under a 32-byte key. HMAC pads keys shorter than the block
/// with zeros, so the key is given as a zero-padded block (infallible).
pub(crate) fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new(block.as_ref().into());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// HKDF-SHA256 with the given salt (`None` = 32 zero bytes) filling `out`.
pub(crate) fn hkdf(salt: Option<&[u8]>, ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(Some(salt.unwrap_or(&[0u8; 32])), ikm);
    // Outputs here are at most 80 bytes, far below HKDF's 8160-byte limit.
    if hk.expand(info, out).is_err() {
        out.zeroize();
    }
}

/// A root key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RootKey(pub(crate) [u8; 32]);

impl RootKey {
    /// The root step: `HKDF(salt = RK, DH(ours, theirs), "WhisperRatchet", 64)`
    /// gives the next root key and a new chain key at index 0.
    pub(crate) fn create_chain(
        &self,
        their_ratchet_key: &PublicKey,
        our_ratchet_key: &PrivateKey,
    ) -> Result<(RootKey, ChainKey)> {
        let shared = our_ratchet_key.agree(their_ratchet_key)?;
        let mut okm = Zeroizing::new([0u8; 64]);
        hkdf(
            Some(&self.0),
            shared.as_ref(),
            b"WhisperRatchet",
            okm.as_mut(),
        );
        let mut rk = [0u8; 32];
        let mut ck = [0u8; 32];
        rk.copy_from_slice(&okm[..32]);
        ck.copy_from_slice(&okm[32..]);
        Ok((RootKey(rk), ChainKey { key: ck, index: 0 }))
    }
}

/// A sending or receiving chain key with its index.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ChainKey {
    pub(crate) key: [u8; 32],
    pub(crate) index: u32,
}

impl ChainKey {
    /// The index of the next message key this chain yields.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The message key seed for this index: `HMAC(CK, 0x01)`.
    pub(crate) fn message_key_seed(&self) -> MessageKeySeed {
        MessageKeySeed {
            seed: hmac_sha256(&self.key, &[&[0x01]]),
            counter: self.index,
        }
    }

    /// The next chain key: `HMAC(CK, 0x02)`, index + 1.
    pub(crate) fn next(&self) -> ChainKey {
        ChainKey {
            key: hmac_sha256(&self.key, &[&[0x02]]),
            index: self.index.wrapping_add(1),
        }
    }
}

/// The 32-byte seed a message key is derived from, with its counter. Skipped
/// message keys are stored in this form.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MessageKeySeed {
    pub(crate) seed: [u8; 32],
    pub(crate) counter: u32,
}

impl MessageKeySeed {
    /// `HKDF(no salt, seed, "WhisperMessageKeys", 80)` → AES key, MAC key, IV.
    pub(crate) fn derive(&self) -> MessageKeys {
        let mut okm = Zeroizing::new([0u8; 80]);
        hkdf(None, &self.seed, b"WhisperMessageKeys", okm.as_mut());
        let mut keys = MessageKeys {
            cipher_key: [0u8; 32],
            mac_key: [0u8; 32],
            iv: [0u8; 16],
            counter: self.counter,
        };
        keys.cipher_key.copy_from_slice(&okm[..32]);
        keys.mac_key.copy_from_slice(&okm[32..64]);
        keys.iv.copy_from_slice(&okm[64..]);
        keys
    }
}

/// The keys of one message.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MessageKeys {
    pub(crate) cipher_key: [u8; 32],
    pub(crate) mac_key: [u8; 32],
    pub(crate) iv: [u8; 16],
    pub(crate) counter: u32,
}

macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), "(<redacted>)"))
            }
        }
    )*};
}
redacted_debug!(RootKey, ChainKey, MessageKeySeed, MessageKeys);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_steps_are_distinct() {
        let ck = ChainKey {
            key: [7u8; 32],
            index: 0,
        };
        let n = ck.next();
        assert_eq!(n.index, 1);
        assert_ne!(n.key, ck.key);
        let s = ck.message_key_seed();
        assert_ne!(s.seed, n.key);
        let mk = s.derive();
        assert_ne!(mk.cipher_key, mk.mac_key);
    }

    #[test]
    fn debug_is_redacted() {
        let ck = ChainKey {
            key: [7u8; 32],
            index: 3,
        };
        assert_eq!(format!("{ck:?}"), "ChainKey(<redacted>)");
        assert_eq!(format!("{:?}", RootKey([1; 32])), "RootKey(<redacted>)");
    }
}
