//! A thin adapter over libcrux's incremental ML-KEM-768 (SPQR.md §5.1–5.2).

use libcrux_ml_kem::mlkem768::incremental as inc;
use zeroize::{Zeroize, Zeroizing};

use super::SpqrError;

/// The FIPS 203 decapsulation key length.
pub const DK_LEN: usize = 2400;
/// `hdr = ρ ‖ H(ek)`.
pub(crate) const HDR_LEN: usize = 64;
/// `ek_vector = ByteEncode12(t̂)`.
pub(crate) const EK_VECTOR_LEN: usize = 1152;
/// The first ciphertext part.
pub(crate) const CT1_LEN: usize = 960;
/// The second ciphertext part.
pub(crate) const CT2_LEN: usize = 128;
/// libcrux's encapsulation state.
const ENCAPS_STATE_LEN: usize = 2080;

const _: () = assert!(inc::key_pair_compressed_len() == DK_LEN);
const _: () = assert!(inc::pk1_len() == HDR_LEN);
const _: () = assert!(inc::pk2_len() == EK_VECTOR_LEN);
const _: () = assert!(inc::encaps_state_len() == ENCAPS_STATE_LEN);

/// An ML-KEM-768 decapsulation key (FIPS 203 `dk`, 2,400 bytes), wiped when
/// dropped.
#[derive(Clone)]
pub struct DecapsulationKey(Box<[u8; DK_LEN]>);

impl Drop for DecapsulationKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl DecapsulationKey {
    /// Key generation from a 64-byte seed `d ‖ z`.
    pub fn from_seed(seed: [u8; 64]) -> Self {
        let seed = Zeroizing::new(seed);
        let mut bytes = inc::KeyPairCompressedBytes::from_seed(*seed).to_bytes();
        let dk = DecapsulationKey(Box::new(bytes));
        bytes.zeroize();
        dk
    }

    /// A key from its 2,400 bytes (tests inject recorded keys this way).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SpqrError> {
        let arr = <&[u8; DK_LEN]>::try_from(bytes).map_err(|_| SpqrError::StateDecode)?;
        Ok(DecapsulationKey(Box::new(*arr)))
    }

    /// The 2,400 bytes.
    pub(crate) fn as_bytes(&self) -> &[u8; DK_LEN] {
        &self.0
    }

    /// `hdr = dk[2304..2368]`.
    pub(crate) fn hdr(&self) -> [u8; HDR_LEN] {
        let mut out = [0u8; HDR_LEN];
        out.copy_from_slice(&self.0[2304..2368]);
        out
    }

    /// `ek_vector = dk[1152..2304]`.
    pub(crate) fn ek_vector(&self) -> Vec<u8> {
        self.0[1152..2304].to_vec()
    }

    /// Decapsulation of `ct1 ‖ ct2` (implicit rejection: never fails).
    pub(crate) fn decapsulate(
        &self,
        ct1: &[u8; CT1_LEN],
        ct2: &[u8; CT2_LEN],
    ) -> Zeroizing<[u8; 32]> {
        let c1 = inc::Ciphertext1 { value: *ct1 };
        let c2 = inc::Ciphertext2 { value: *ct2 };
        Zeroizing::new(inc::decapsulate_compressed_key(&self.0, &c1, &c2))
    }
}

/// `ct1`, the shared key `K`, and libcrux's encapsulation state.
type Encaps1 = ([u8; CT1_LEN], Zeroizing<[u8; 32]>, Zeroizing<Vec<u8>>);

/// `Encaps1(hdr, m)`: `ct1`, the shared key `K`, and libcrux's state.
fn encaps1_state(hdr: &[u8; HDR_LEN], m: &[u8; 32]) -> Result<Encaps1, SpqrError> {
    let mut state = Zeroizing::new(vec![0u8; ENCAPS_STATE_LEN]);
    let mut key = Zeroizing::new([0u8; 32]);
    let ct1 = inc::encapsulate1(hdr, *m, &mut state[..], &mut key[..])
        .map_err(|_| SpqrError::ErroneousData)?;
    Ok((ct1.value, key, state))
}

/// `Encaps1(hdr, m)` → `(ct1, K)`.
pub(crate) fn encaps1(
    hdr: &[u8; HDR_LEN],
    m: &[u8; 32],
) -> Result<([u8; CT1_LEN], Zeroizing<[u8; 32]>), SpqrError> {
    let (ct1, key, _) = encaps1_state(hdr, m)?;
    Ok((ct1, key))
}

/// `Encaps2` after recomputing `Encaps1(hdr, m)` (deterministic), so that
/// only `m` is kept between the two.
pub(crate) fn encaps2(
    hdr: &[u8; HDR_LEN],
    m: &[u8; 32],
    ek_vector: &[u8],
) -> Result<[u8; CT2_LEN], SpqrError> {
    let ekv = <&[u8; EK_VECTOR_LEN]>::try_from(ek_vector).map_err(|_| SpqrError::ErroneousData)?;
    let (_, _, state) = encaps1_state(hdr, m)?;
    let state = <&[u8; ENCAPS_STATE_LEN]>::try_from(state.as_slice())
        .map_err(|_| SpqrError::ErroneousData)?;
    Ok(inc::encapsulate2(state, ekv).value)
}

/// `ValidateEk(hdr, ek_vector)`: the hash in the header and the modulus
/// check.
pub(crate) fn validate(hdr: &[u8; HDR_LEN], ek_vector: &[u8]) -> bool {
    ek_vector.len() == EK_VECTOR_LEN && inc::validate_pk_bytes(hdr, ek_vector).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dk = DecapsulationKey::from_seed([7; 64]);
        let hdr = dk.hdr();
        let ekv = dk.ek_vector();
        assert!(validate(&hdr, &ekv));
        let m = [9u8; 32];
        let (ct1, k) = encaps1(&hdr, &m).unwrap();
        let ct2 = encaps2(&hdr, &m, &ekv).unwrap();
        assert_eq!(*dk.decapsulate(&ct1, &ct2), *k);
        let mut bad = ekv.clone();
        bad[0] ^= 1;
        assert!(!validate(&hdr, &bad));
        // A coefficient >= 3329 fails the modulus check.
        let mut big = ekv;
        big[0] = 0xff;
        big[1] |= 0x0f;
        assert!(!validate(&hdr, &big));
    }
}
