//! No session secret is left behind in freed heap memory while a store's
//! map of sessions grows, rebalances and shrinks (issue 14, item 5: the map
//! moved session records, root keys and sending chain keys included, and
//! freed or reused its nodes with the old copies in them).
//!
//! A global allocator that, while armed, scans every block handed back to
//! it for the first eight bytes of any registered secret. The secrets are
//! the root keys and chain keys of a store's sessions, read from its saved
//! bytes before arming.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use rand::rngs::OsRng;
use ratchetkit::{Address, ProtocolStore};
use zeroize::Zeroizing;

struct Scanning;

static ARMED: AtomicBool = AtomicBool::new(false);
static HITS: AtomicUsize = AtomicUsize::new(0);
/// The first eight bytes of every secret, sorted.
static PATTERNS: OnceLock<Vec<u64>> = OnceLock::new();

unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) {
            if let Some(patterns) = PATTERNS.get() {
                // SAFETY: the block is live until the call below frees it.
                let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
                for window in block.windows(8) {
                    let v = u64::from_le_bytes(window.try_into().unwrap_or([0; 8]));
                    if v != 0 && patterns.binary_search(&v).is_ok() {
                        HITS.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Scanning = Scanning;

/// Reads a varint at the front of `buf`.
fn varint(buf: &mut &[u8]) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = buf[0];
        *buf = &buf[1..];
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    v
}

/// Calls `f(tag, payload)` for every length-delimited field of `msg`.
fn fields<'a>(mut msg: &'a [u8], mut f: impl FnMut(u64, &'a [u8])) {
    while !msg.is_empty() {
        let key = varint(&mut msg);
        match key & 7 {
            0 => {
                varint(&mut msg);
            }
            2 => {
                let len = varint(&mut msg) as usize;
                f(key >> 3, &msg[..len]);
                msg = &msg[len..];
            }
            wire => panic!("wire type {wire} is not in the saved format"),
        }
    }
}

/// Calls `f` with every root and chain key of the saved store `saved`
/// (src/persist.rs: sessions = 9; a session's current = 3 and previous = 4
/// states; a state's root key = 4, sending chain key = 6, receiving chains
/// = 8; a chain's key = 2). Walks the bytes in place: decoding them would
/// leave copies of the keys in freed memory before the scan is armed.
fn for_each_session_secret(saved: &[u8], mut f: impl FnMut(&[u8])) {
    fields(&saved[5..], |tag, entry| {
        if tag != 9 {
            return;
        }
        fields(entry, |tag, state| {
            if tag != 3 && tag != 4 {
                return;
            }
            fields(state, |tag, value| match tag {
                4 | 6 => f(value),
                8 => fields(value, |tag, key| {
                    if tag == 2 {
                        f(key)
                    }
                }),
                _ => {}
            });
        });
    });
}

/// The first eight bytes of every root and chain key in `store`, sorted.
fn session_secrets(store: &ProtocolStore) -> Vec<u64> {
    let saved = Zeroizing::new(store.save());
    // Sized up front: a growing list would free its old buffers, which hold
    // the patterns themselves, and they could be reported later.
    let mut count = 0;
    for_each_session_secret(&saved, |_| count += 1);
    let mut out = Vec::with_capacity(count);
    for_each_session_secret(&saved, |k| {
        assert_eq!(k.len(), 32);
        out.push(u64::from_le_bytes(k[..8].try_into().unwrap()));
    });
    assert_eq!(out.len(), count);
    out.sort_unstable();
    out
}

fn peer(i: usize) -> Address {
    Address::new(format!("peer-{i:04}"), 1)
}

#[test]
fn session_map_growth_and_removal_leave_no_secrets_in_freed_memory() {
    let mut owner = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let mut other = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let bundle = other.create_bundle(false, 0, &mut OsRng).unwrap();
    // Every other address now; the ones between them later, so that the
    // map's nodes split and rebalance around the sessions made first.
    for i in (0..600).step_by(2) {
        owner.process_bundle(&peer(i), &bundle, &mut OsRng).unwrap();
    }
    let patterns = session_secrets(&owner);
    assert!(patterns.len() >= 600, "{} secrets", patterns.len());
    PATTERNS.set(patterns).unwrap();
    ARMED.store(true, Ordering::SeqCst);
    for i in (1..600).step_by(2) {
        owner.process_bundle(&peer(i), &bundle, &mut OsRng).unwrap();
    }
    for i in (0..600).step_by(4) {
        owner
            .encrypt(&peer(i), b"advance the sending chain")
            .unwrap();
    }
    for i in (2..600).step_by(4) {
        assert!(owner.remove_session(&peer(i)));
    }
    for i in (1..600).step_by(6) {
        assert!(owner.remove_session(&peer(i)));
    }
    ARMED.store(false, Ordering::SeqCst);
    assert_eq!(owner.session_count(), 600 - 150 - 100);
    assert_eq!(
        HITS.load(Ordering::SeqCst),
        0,
        "freed heap blocks held session root or chain keys"
    );
}
