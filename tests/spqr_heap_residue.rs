//! Saving an SPQR state leaves none of its secrets in freed heap memory:
//! the encoder's buffer grows while the auth key, the authenticator, the
//! ML-KEM decapsulation key and the chain keys are written into it, and a
//! growth must not hand the old buffer back with them inside.
//!
//! A global allocator that, while armed, scans every block handed back to
//! it for the first eight bytes of the state's auth key.
#![allow(unsafe_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rand::rngs::OsRng;
use ratchetkit::spqr::{Direction, RngRandom, SpqrPolicy, SpqrState};
use zeroize::Zeroizing;

struct Scanning;

static ARMED: AtomicBool = AtomicBool::new(false);
static HITS: AtomicUsize = AtomicUsize::new(0);
/// The auth key of the test (distinctive bytes, never used elsewhere).
const AUTH_KEY: [u8; 32] = [0xa7; 32];

unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) {
            // SAFETY: the block is live until the call below frees it.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if block.windows(8).any(|w| w == &AUTH_KEY[..8]) {
                HITS.fetch_add(1, Ordering::Relaxed);
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Scanning = Scanning;

#[test]
fn saving_spqr_state_leaves_no_secret_in_freed_memory() {
    // Required policy: the first send creates the chain; the negotiation
    // block (with the auth key) is kept until the first receive.
    let mut state = SpqrState::new(SpqrPolicy::Required, &AUTH_KEY, Direction::A2B, false);
    state.send(&mut RngRandom(&mut OsRng)).unwrap();
    ARMED.store(true, Ordering::SeqCst);
    for _ in 0..8 {
        let saved = Zeroizing::new(state.to_bytes());
        assert!(saved.windows(32).any(|w| w == AUTH_KEY));
    }
    ARMED.store(false, Ordering::SeqCst);
    assert_eq!(
        HITS.load(Ordering::SeqCst),
        0,
        "freed heap blocks held the SPQR auth key"
    );
}
