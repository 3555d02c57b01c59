//! The labels and key derivations of SPQR (SPQR.md §4.1, §5.3–5.5) and the
//! authenticator.

use hmac::Mac;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::ratchet::{hkdf, hmac_keyed};

/// A 32-byte secret, wiped when dropped.
pub(crate) type Secret32 = Zeroizing<[u8; 32]>;

pub(crate) const L_START: &[u8] = b"Signal PQ Ratchet V1 Chain  Start";
pub(crate) const L_NEXT: &[u8] = b"Signal PQ Ratchet V1 Chain Next";
pub(crate) const L_EPOCH: &[u8] = b"Signal PQ Ratchet V1 Chain Add Epoch";
pub(crate) const L_AUTH: &[u8] = b"Signal_PQCKA_V1_MLKEM768:Authenticator Update";
pub(crate) const L_HDRMAC: &[u8] = b"Signal_PQCKA_V1_MLKEM768:ekheader";
pub(crate) const L_CTMAC: &[u8] = b"Signal_PQCKA_V1_MLKEM768:ciphertext";
pub(crate) const L_KEY: &[u8] = b"Signal_PQCKA_V1_MLKEM768:SCKA Key";

/// `label ‖ BE64(e)`.
fn label_epoch(label: &[u8], epoch: u64) -> Vec<u8> {
    let mut info = Vec::with_capacity(label.len() + 8);
    info.extend_from_slice(label);
    info.extend_from_slice(&epoch.to_be_bytes());
    info
}

/// `S_e = HKDF(Z32, K, L_KEY ‖ BE64(e), 32)`.
pub(crate) fn epoch_secret(shared_key: &[u8; 32], epoch: u64) -> Secret32 {
    let mut out = Zeroizing::new([0u8; 32]);
    hkdf(None, shared_key, &label_epoch(L_KEY, epoch), out.as_mut());
    out
}

/// The authenticator `(R, M)` both parties evolve identically.
#[derive(Clone)]
pub(crate) struct Authenticator {
    pub(crate) root: Secret32,
    pub(crate) mac: Secret32,
}

impl Authenticator {
    /// `auth_init(AK)`: zeros, then `auth_update(1, AK)`.
    pub(crate) fn new(auth_key: &[u8; 32]) -> Self {
        let mut a = Authenticator {
            root: Zeroizing::new([0u8; 32]),
            mac: Zeroizing::new([0u8; 32]),
        };
        a.update(1, auth_key);
        a
    }

    /// `auth_update(e, k)`.
    pub(crate) fn update(&mut self, epoch: u64, key: &[u8; 32]) {
        let mut ikm = Zeroizing::new([0u8; 64]);
        ikm[..32].copy_from_slice(self.root.as_ref());
        ikm[32..].copy_from_slice(key);
        let mut okm = Zeroizing::new([0u8; 64]);
        hkdf(
            None,
            ikm.as_ref(),
            &label_epoch(L_AUTH, epoch),
            okm.as_mut(),
        );
        self.root.copy_from_slice(&okm[..32]);
        self.mac.copy_from_slice(&okm[32..]);
    }

    fn mac_over(&self, label: &[u8], epoch: u64, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = hmac_keyed(&self.mac);
        mac.update(label);
        mac.update(&epoch.to_be_bytes());
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// `hdr_mac(e, hdr)`.
    pub(crate) fn hdr_mac(&self, epoch: u64, hdr: &[u8]) -> [u8; 32] {
        self.mac_over(L_HDRMAC, epoch, &[hdr])
    }

    /// `ct_mac(e, ct1, ct2)`.
    pub(crate) fn ct_mac(&self, epoch: u64, ct1: &[u8], ct2: &[u8]) -> [u8; 32] {
        self.mac_over(L_CTMAC, epoch, &[ct1, ct2])
    }
}

/// Constant-time equality of two MACs.
pub(crate) fn mac_eq(a: &[u8; 32], b: &[u8]) -> bool {
    bool::from(a.as_slice().ct_eq(b))
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
    fn label_lengths() {
        assert_eq!(
            [L_START, L_NEXT, L_EPOCH, L_AUTH, L_HDRMAC, L_CTMAC, L_KEY].map(<[u8]>::len),
            [33, 31, 36, 45, 33, 35, 33]
        );
    }

    #[test]
    fn appendix_a4_authenticator() {
        let mut a = Authenticator::new(&[0x29; 32]);
        assert_eq!(
            a.root.to_vec(),
            hex("486eb283e739a2b7baea016d6a70df801616dfbf3f022b77a27cfaa3360348a0")
        );
        assert_eq!(
            a.mac.to_vec(),
            hex("5a368111ae4f8d5d407e4b9a369e67af9e01d9449cf2b5e50cede3f7ab525a1e")
        );
        assert_eq!(
            a.hdr_mac(1, &[0; 64]).to_vec(),
            hex("acebb57584e9bdd9a44b42652a3b951409cf5f0ba62024fbd42eafe083196369")
        );
        assert_eq!(
            a.ct_mac(1, &[0; 960], &[0; 128]).to_vec(),
            hex("71c26a085734e11a7583fae71477977b9ba8eacea95a698cfb2371b60e6c92f0")
        );
        a.update(1, &[0x42; 32]);
        assert_eq!(
            a.root.to_vec(),
            hex("34ea30ab3de9081343883113910446540d6cb899c07864d8a760dfa350097a9a")
        );
        assert_eq!(
            a.mac.to_vec(),
            hex("5f563dd70700b9633bed1c0f54466e9f385d465a72e96606c39c74c2461b1a71")
        );
        assert_eq!(
            epoch_secret(&[0x11; 32], 1).to_vec(),
            hex("d32dfea923f78b37a9433e5c30c049ebc767ed19d050bdd3de360f8b31129d94")
        );
    }
}
