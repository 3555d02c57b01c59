//! No copy of a Kyber secret key or KEM shared secret stays on the stack
//! after a KEM call returns (review finding: `libcrux-ml-kem` does not wipe
//! its stack, and kem.rs made copies of its own; all 26 sampled windows of
//! the secret key were found in dead frames after a decapsulation).
//!
//! Each check runs on a thread with a large stack, reads the dead stack
//! below the current frame (bytes no live value owns; read with volatile
//! loads, as a debugger would) and looks for 16-byte windows of the secret.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use rand::rngs::OsRng;
use ratchetkit::kem::{KemKeyPair, KemSecretKey};
use ratchetkit::store::KyberPreKeyKind;

/// How much dead stack is scanned.
const SCAN: usize = 512 * 1024;

/// How many of `patterns` appear in the `SCAN` bytes of stack below this
/// frame.
#[inline(never)]
fn scan_dead_stack(patterns: &[[u8; 16]]) -> usize {
    let marker = [0u8; 16];
    let top = std::hint::black_box(&marker) as *const _ as usize - 256;
    let low = top - SCAN;
    let mut copy = vec![0u8; SCAN];
    for (i, b) in copy.iter_mut().enumerate() {
        // SAFETY (test only): the thread's 8 MiB stack is mapped far below
        // this frame; the bytes read belong to frames that have returned.
        *b = unsafe { std::ptr::read_volatile((low + i) as *const u8) };
    }
    patterns
        .iter()
        .filter(|p| copy.windows(16).any(|w| w == *p))
        .count()
}

/// Zeroes the scanned area first, so that only what comes after counts.
#[inline(never)]
fn clear_stack() {
    let mut area = [0u8; SCAN + 4096];
    zeroize::Zeroize::zeroize(&mut area[..]);
    std::hint::black_box(&mut area);
}

/// 16-byte windows of the secret parts of a Kyber1024 secret key: the
/// secret vector (bytes 0..1536) and z (the last 32 bytes).
fn secret_windows(key: &KemSecretKey) -> Vec<[u8; 16]> {
    let bytes = key.serialize();
    let raw = &bytes[1..];
    let mut out: Vec<[u8; 16]> = (0..1536)
        .step_by(64)
        .map(|i| raw[i..i + 16].try_into().unwrap())
        .collect();
    out.push(raw[3168 - 32..3168 - 16].try_into().unwrap());
    out.push(raw[3168 - 16..].try_into().unwrap());
    out
}

fn on_big_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[inline(never)]
fn generate() -> Box<KemKeyPair> {
    Box::new(KemKeyPair::generate(&mut OsRng))
}

/// Decapsulates, keeping the secret's first bytes on the heap only.
#[inline(never)]
fn decapsulate(key: &KemSecretKey, ct: &[u8], prefix: &mut [u8; 16]) {
    let ss = key.decapsulate(ct).unwrap();
    prefix.copy_from_slice(&ss[..16]);
}

#[test]
fn key_generation_leaves_no_secret_key_on_the_stack() {
    let (found, total) = on_big_stack(|| {
        clear_stack();
        let pair = std::hint::black_box(generate());
        let windows = secret_windows(&pair.secret_key);
        (scan_dead_stack(&windows), windows.len())
    });
    assert_eq!(
        found, 0,
        "{found} of {total} secret-key windows on the dead stack"
    );
}

#[test]
fn encapsulation_and_decapsulation_leave_no_secrets_on_the_stack() {
    let (key_found, secret_found, total) = on_big_stack(|| {
        let pair = generate();
        let windows = secret_windows(&pair.secret_key);
        clear_stack();
        let (ct, ss) = std::hint::black_box(pair.public_key.encapsulate(&mut OsRng));
        let prefix: [u8; 16] = ss[..16].try_into().unwrap();
        let after_encapsulate = scan_dead_stack(&[prefix]);
        clear_stack();
        let mut decapsulated = Box::new([0u8; 16]);
        decapsulate(&pair.secret_key, &ct, &mut decapsulated);
        assert_eq!(*decapsulated, prefix);
        (
            scan_dead_stack(&windows),
            after_encapsulate + scan_dead_stack(&[prefix]),
            windows.len(),
        )
    });
    assert_eq!(key_found, 0, "{key_found} of {total} secret-key windows");
    assert_eq!(secret_found, 0, "the shared secret is on the dead stack");
}

#[inline(never)]
fn receive(bob: &mut common::Party, alice: &common::Party, m: &ratchetkit::CiphertextMessage) {
    assert_eq!(bob.recv(alice, m).unwrap(), b"hi");
}

#[test]
fn a_pqxdh_responder_leaves_no_kyber_secret_key_on_the_stack() {
    let (found, total) = on_big_stack(|| {
        let (alice, mut bob) = common::pair_with(false, KyberPreKeyKind::LastResort, false);
        let mut alice = alice;
        let m = alice.send(&bob, b"hi");
        let id = bob.store.last_resort_kyber_prekey_id().unwrap();
        let windows = secret_windows(&bob.store.kyber_prekey(id).unwrap().key_pair.secret_key);
        clear_stack();
        receive(&mut bob, &alice, &m);
        (scan_dead_stack(&windows), windows.len())
    });
    assert_eq!(found, 0, "{found} of {total} secret-key windows");
}
