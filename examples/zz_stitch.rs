//! scratch
#![allow(clippy::unwrap_used, missing_docs)]
use aes::cipher::{block_padding::Pkcs7, generic_array::GenericArray, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Instant;
type Enc = cbc::Encryptor<aes::Aes256Enc>;
fn serial(key: &[u8; 32], iv: &[u8; 16], mk: &[u8; 32], pt: &[u8], out: &mut Vec<u8>) -> [u8; 32] {
    out.clear();
    out.extend_from_slice(pt);
    let n = pt.len();
    out.resize((n / 16 + 1) * 16, 0);
    Enc::new(key.into(), iv.into())
        .encrypt_padded_mut::<Pkcs7>(out, n)
        .unwrap();
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(mk).unwrap();
    m.update(&[7u8; 110]);
    m.update(out);
    m.finalize().into_bytes().into()
}
fn stitched<const C: usize>(
    key: &[u8; 32],
    iv: &[u8; 16],
    mk: &[u8; 32],
    pt: &[u8],
    out: &mut Vec<u8>,
) -> [u8; 32] {
    out.clear();
    out.extend_from_slice(pt);
    let n = pt.len();
    let padded = (n / 16 + 1) * 16;
    let p = (padded - n) as u8;
    out.resize(padded, p);
    let mut e = Enc::new(key.into(), iv.into());
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(mk).unwrap();
    m.update(&[7u8; 110]);
    for chunk in out.chunks_mut(C) {
        for b in chunk.chunks_exact_mut(16) {
            e.encrypt_block_mut(GenericArray::from_mut_slice(b));
        }
        m.update(chunk);
    }
    m.finalize().into_bytes().into()
}
fn main() {
    let (key, iv, mk) = ([1u8; 32], [2u8; 16], [3u8; 32]);
    for size in [100usize, 1024, 65536] {
        let pt = vec![0x42u8; size];
        let mut out = Vec::with_capacity(size + 32);
        let a = serial(&key, &iv, &mk, &pt, &mut out);
        let ca = out.clone();
        let b = stitched::<64>(&key, &iv, &mk, &pt, &mut out);
        assert_eq!(a, b);
        assert_eq!(ca, out);
        let n = if size > 10000 { 2000 } else { 200000 };
        for (name, f) in [
            (
                "serial",
                serial as fn(&[u8; 32], &[u8; 16], &[u8; 32], &[u8], &mut Vec<u8>) -> [u8; 32],
            ),
            ("st64", stitched::<64>),
            ("st128", stitched::<128>),
            ("st256", stitched::<256>),
        ] {
            let mut best = f64::MAX;
            for _ in 0..7 {
                let t = Instant::now();
                for _ in 0..n {
                    std::hint::black_box(f(&key, &iv, &mk, std::hint::black_box(&pt), &mut out));
                }
                best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
            }
            println!("{size} {name}: {best:.0} ns");
        }
    }
}
