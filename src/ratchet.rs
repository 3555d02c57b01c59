//! Double Ratchet key derivation as deployed: root keys, chain keys and
//! message keys.

use std::sync::OnceLock;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::Result;
use crate::keys::{PrivateKey, PublicKey};

/// HMAC-SHA256 as the crate uses it.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// A message more than this many steps ahead of its chain is rejected.
pub const MAX_FORWARD_JUMPS: u32 = 25_000;
/// Each receiving chain keeps at most this many skipped message keys.
pub const MAX_SKIPPED_KEYS: usize = 2_000;
/// A session keeps at most this many receiving chains.
pub const MAX_RECEIVER_CHAINS: usize = 5;

/// An HMAC-SHA256 instance keyed with a 32-byte key. (Its state holds the
/// key-equivalent inner and outer hash states, which the `hmac` crate does
/// not zeroize; SECURITY.md says so.)
pub(crate) fn hmac_keyed(key: &[u8; 32]) -> HmacSha256 {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; the
    // zero-padded block is the same key, for the impossible error.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| {
        let mut block = Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(key);
        <HmacSha256 as hmac::digest::KeyInit>::new(block.as_ref().into())
    })
}

/// HMAC-SHA256 under a 32-byte key over the concatenation of `parts`.
#[cfg(test)]
pub(crate) fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = hmac_keyed(key);
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// HMAC keyed with HKDF's default salt (32 zero bytes): the extract step of
/// every salt-less HKDF starts from this state, computed once.
fn zero_salt_hmac() -> &'static HmacSha256 {
    static STATE: OnceLock<HmacSha256> = OnceLock::new();
    STATE.get_or_init(|| hmac_keyed(&[0u8; 32]))
}

/// HKDF-SHA256 with the given salt (`None` = 32 zero bytes) filling `out`.
pub(crate) fn hkdf(salt: Option<&[u8; 32]>, ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let mut extract = match salt {
        Some(salt) => hmac_keyed(salt),
        None => zero_salt_hmac().clone(),
    };
    extract.update(ikm);
    let mut prk = <[u8; 32]>::from(extract.finalize().into_bytes());
    // A 32-byte PRK is always accepted, and outputs here are at most 80
    // bytes, far below HKDF's 8160-byte limit; on the impossible error the
    // output is zeros rather than a panic.
    match Hkdf::<Sha256>::from_prk(&prk) {
        Ok(hk) if hk.expand(info, out).is_ok() => {}
        _ => zeroize::zeroize_bytes(out),
    }
    zeroize::zeroize_bytes(&mut prk);
}

/// A root key.
#[derive(Clone)]
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
#[derive(Clone)]
pub struct ChainKey {
    pub(crate) key: [u8; 32],
    pub(crate) index: u32,
}

impl ChainKey {
    /// The index of the next message key this chain yields.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// One chain step with a single HMAC key schedule: the message key seed
    /// for this index (`HMAC(CK, 0x01)`) and the next chain key
    /// (`HMAC(CK, 0x02)`, index + 1).
    pub(crate) fn step(&self) -> (MessageKeySeed, ChainKey) {
        let mac = hmac_keyed(&self.key);
        let mut seed_mac = mac.clone();
        seed_mac.update(&[0x01]);
        let mut next_mac = mac;
        next_mac.update(&[0x02]);
        (
            MessageKeySeed {
                seed: seed_mac.finalize().into_bytes().into(),
                counter: self.index,
            },
            ChainKey {
                key: next_mac.finalize().into_bytes().into(),
                index: self.index.wrapping_add(1),
            },
        )
    }
}

/// The 32-byte seed a message key is derived from, with its counter. Skipped
/// message keys are stored in this form.
#[derive(Clone)]
pub struct MessageKeySeed {
    pub(crate) seed: [u8; 32],
    pub(crate) counter: u32,
}

impl MessageKeySeed {
    /// `HKDF(no salt, seed, "WhisperMessageKeys", 80)` → AES key, MAC key, IV,
    /// expanded straight into the returned keys (no intermediate copy).
    #[cfg(test)]
    pub(crate) fn derive(&self) -> MessageKeys {
        self.derive_salted(None)
    }

    /// The message keys of a version-4 message with SPQR: the SPQR message
    /// key is HKDF's salt (`None`: unsalted, as [`derive`](Self::derive)).
    pub(crate) fn derive_salted(&self, salt: Option<&[u8; 32]>) -> MessageKeys {
        let mut keys = MessageKeys {
            okm: [0u8; MESSAGE_KEYS_LEN],
            counter: self.counter,
        };
        hkdf(salt, &self.seed, b"WhisperMessageKeys", &mut keys.okm);
        keys
    }
}

/// The length of HKDF's output for one message: AES key, MAC key, IV.
const MESSAGE_KEYS_LEN: usize = 32 + 32 + 16;

/// The keys of one message, kept as the 80 bytes HKDF produced them in:
/// the AES-256 key, the HMAC-SHA256 key, the CBC IV.
#[derive(Clone)]
pub struct MessageKeys {
    okm: [u8; MESSAGE_KEYS_LEN],
    pub(crate) counter: u32,
}

impl MessageKeys {
    /// Keys from their three parts (tests build known keys this way).
    #[cfg(test)]
    pub(crate) fn from_parts(cipher_key: [u8; 32], mac_key: [u8; 32], iv: [u8; 16]) -> Self {
        let mut okm = [0u8; MESSAGE_KEYS_LEN];
        okm[..32].copy_from_slice(&cipher_key);
        okm[32..64].copy_from_slice(&mac_key);
        okm[64..].copy_from_slice(&iv);
        MessageKeys { okm, counter: 0 }
    }
    /// The AES-256-CBC key.
    pub(crate) fn cipher_key(&self) -> &[u8; 32] {
        okm_part(&self.okm, 0)
    }
    /// The HMAC-SHA256 key of the message MAC.
    pub(crate) fn mac_key(&self) -> &[u8; 32] {
        okm_part(&self.okm, 32)
    }
    /// The AES-CBC IV.
    pub(crate) fn iv(&self) -> &[u8; 16] {
        okm_part(&self.okm, 64)
    }
}

/// The `N` bytes of `okm` from `start`. Only called with constant, in-range
/// arguments, so the `None` arm is unreachable.
fn okm_part<const N: usize>(okm: &[u8; MESSAGE_KEYS_LEN], start: usize) -> &[u8; N] {
    match okm.get(start..).and_then(<[u8]>::first_chunk::<N>) {
        Some(part) => part,
        None => unreachable!("message key parts lie within the 80 bytes"),
    }
}

/// `Zeroize` and zeroize-on-drop for a key type: its bytes are wiped with
/// `zeroize_bytes` (one bulk write behind an optimization barrier) rather
/// than the derived impls' one volatile write per byte, which costs tens of
/// nanoseconds on every message; its counter (not secret) is reset too.
macro_rules! zeroize_on_drop {
    ($($t:ty => $bytes:tt $(, $counter:ident)?;)*) => {$(
        impl Zeroize for $t {
            fn zeroize(&mut self) {
                zeroize::zeroize_bytes(&mut self.$bytes);
                $(self.$counter = 0;)?
            }
        }
        impl Drop for $t {
            fn drop(&mut self) {
                self.zeroize();
            }
        }
        impl ZeroizeOnDrop for $t {}
    )*};
}
zeroize_on_drop! {
    RootKey => 0;
    ChainKey => key, index;
    MessageKeySeed => seed, counter;
    MessageKeys => okm, counter;
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
        let (s, n) = ck.step();
        assert_eq!(n.index, 1);
        assert_ne!(n.key, ck.key);
        assert_eq!(s.seed, hmac_sha256(&ck.key, &[&[1]]));
        assert_eq!(n.key, hmac_sha256(&ck.key, &[&[2]]));
        assert_ne!(s.seed, n.key);
        let mk = s.derive();
        assert_ne!(mk.cipher_key(), mk.mac_key());
        let mut okm = [0u8; 80];
        hkdf(None, &s.seed, b"WhisperMessageKeys", &mut okm);
        assert_eq!(mk.cipher_key()[..], okm[..32]);
        assert_eq!(mk.mac_key()[..], okm[32..64]);
        assert_eq!(mk.iv()[..], okm[64..]);
    }

    #[test]
    fn hkdf_matches_the_plain_crate() {
        for salt in [None, Some([3u8; 32])] {
            let mut ours = [0u8; 80];
            hkdf(
                salt.as_ref(),
                b"input keying material",
                b"WhisperMessageKeys",
                &mut ours,
            );
            let mut plain = [0u8; 80];
            Hkdf::<Sha256>::new(Some(&salt.unwrap_or([0u8; 32])), b"input keying material")
                .expand(b"WhisperMessageKeys", &mut plain)
                .unwrap();
            assert_eq!(ours, plain);
        }
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
