//! Restoring hostile saved bytes (issue 14, items 7 and 10).
//!
//! Counts and record sizes are checked as the saved bytes are read, before
//! anything is decoded (`src/persist_scan.rs`), so restoring allocates at
//! most [`EXPANSION_BOUND`] times its input; malformed wire format is
//! refused with `CorruptState`, never a panic, before any key is decoded;
//! real saves, also with unknown fields from a later version, still
//! restore to the same bytes.
//!
//! A counting global allocator measures, for the calling thread only, the
//! peak of live heap bytes during one `restore`, and looks for a secret in
//! every block freed meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The counting allocator is this file's only unsafe code.
#![allow(unsafe_code)]

// The Double Ratchet's own limits and checks: sessions without SPQR
// (common::Party::without_spqr); SPQR's are in the SPQR tests.
mod common;
mod forge;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{dr_established_pair, dr_initiated_pair, Party};
use rand::rngs::OsRng;
use ratchetkit::prekey::MAX_PREKEY_ID;
use ratchetkit::ratchet::{MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS};
use ratchetkit::store::MAX_SESSIONS;
use ratchetkit::{Address, Error, ProtocolStore, MAX_ARCHIVED_STATES};

/// Restoring allocates at most this many times its input: the bound of
/// `src/persist_scan.rs`, checked there at compile time against the sizes
/// of the decoded structs.
const EXPANSION_BOUND: usize = 7;

/// The error restore gives when prost fails to decode. The scan in front of
/// it refuses all that prost refuses, so this never shows.
const DECODE_FAILED: &str = "protobuf does not parse";

// ---- a counting allocator ----------------------------------------------------

struct Counting;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static SECRET: Cell<Option<[u8; 32]>> = const { Cell::new(None) };
    static SECRET_FREED: Cell<usize> = const { Cell::new(0) };
}

fn tracking() -> bool {
    TRACKING.try_with(Cell::get).unwrap_or(false)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Zeroed, so that freed blocks are read as initialized bytes below.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() && tracking() {
            let live = LIVE.get() + layout.size() as isize;
            LIVE.set(live);
            PEAK.set(PEAK.get().max(live));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if tracking() {
            LIVE.set(LIVE.get() - layout.size() as isize);
            if let Some(secret) = SECRET.get() {
                let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
                if block.windows(secret.len()).any(|w| w == secret) {
                    SECRET_FREED.set(SECRET_FREED.get() + 1);
                }
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }
    // `realloc` is the trait's default (alloc, copy, dealloc): old and new
    // blocks count as live together, and the old one is searched.
}

/// What one call allocated on this thread.
struct Usage {
    /// The peak of live heap bytes allocated during the call.
    peak: usize,
    /// Freed blocks that held the secret.
    secret_freed: usize,
}

fn measure<T>(secret: Option<[u8; 32]>, f: impl FnOnce() -> T) -> (T, Usage) {
    LIVE.set(0);
    PEAK.set(0);
    SECRET_FREED.set(0);
    SECRET.set(secret);
    TRACKING.set(true);
    let out = f();
    TRACKING.set(false);
    SECRET.set(None);
    let usage = Usage {
        peak: usize::try_from(PEAK.get()).unwrap_or(0),
        secret_freed: SECRET_FREED.get(),
    };
    (out, usage)
}

fn restore(bytes: &[u8]) -> (ratchetkit::Result<ProtocolStore>, Usage) {
    measure(None, || ProtocolStore::restore(bytes))
}

/// Asserts that `bytes` are refused with `CorruptState` before anything is
/// decoded (restore allocates nothing), and returns the error's text.
fn refused_before_decoding(bytes: &[u8], what: &str) -> &'static str {
    let (r, usage) = restore(bytes);
    let text = match r {
        Err(Error::CorruptState(text)) => text,
        other => panic!("{what}: expected CorruptState, got {other:?}"),
    };
    assert_ne!(text, DECODE_FAILED, "{what}: the scan let it through");
    assert!(
        usage.peak < 1024,
        "{what}: {} bytes allocated before refusing ({text})",
        usage.peak
    );
    text
}

/// Asserts that `saved` restores and saves to the same bytes.
fn round_trips(saved: &[u8], what: &str) -> ProtocolStore {
    let store = ProtocolStore::restore(saved).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(store.save() == saved, "{what}: saves to other bytes");
    store
}

// ---- protobuf by hand ----------------------------------------------------------

const HEADER: &[u8] = b"RKST\x02";
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const DELIMITED: u8 = 2;
const GROUP_START: u8 = 3;
const GROUP_END: u8 = 4;
const FIXED32: u8 = 5;

/// Field numbers of the saved format (`src/persist.rs`).
mod tag {
    // StoreProto
    pub const SIGNED_PREKEYS: u32 = 4;
    pub const PREKEYS: u32 = 6;
    pub const SESSIONS: u32 = 9;
    pub const TRUSTED: u32 = 10;
    // SignedPreKeyProto and PreKeyProto
    pub const PREKEY_ID: u32 = 1;
    pub const PREKEY_PRIVATE: u32 = 2;
    pub const SIGNATURE: u32 = 3;
    // SessionEntryProto
    pub const NAME: u32 = 1;
    pub const DEVICE: u32 = 2;
    pub const CURRENT: u32 = 3;
    pub const PREVIOUS: u32 = 4;
    // SessionStateProto
    pub const STATE_VERSION: u32 = 1;
    pub const ROOT_KEY: u32 = 4;
    pub const SENDER_INDEX: u32 = 7;
    pub const CHAINS: u32 = 8;
    pub const PREVIOUS_COUNTER: u32 = 9;
    pub const PENDING: u32 = 10;
    pub const LOCAL_REGISTRATION: u32 = 11;
    pub const REMOTE_REGISTRATION: u32 = 12;
    // ReceiverChainProto
    pub const CHAIN_KEY: u32 = 2;
    pub const CHAIN_INDEX: u32 = 3;
    pub const SKIPPED: u32 = 4;
    // SkippedKeyProto
    pub const SEED: u32 = 2;
    // PendingPreKeyProto
    pub const PENDING_PREKEY_ID: u32 = 1;
    pub const PENDING_SIGNED_ID: u32 = 2;
    pub const BASE_KEY: u32 = 3;
    pub const PENDING_KYBER_ID: u32 = 4;
    pub const PENDING_KYBER_CIPHERTEXT: u32 = 5;
    // TrustProto
    pub const TRUSTED_KEY: u32 = 2;
}

fn key(tag: u32, wire: u8, out: &mut Vec<u8>) {
    forge::varint((u64::from(tag) << 3) | u64::from(wire), out);
}

fn delimited(tag: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    key(tag, DELIMITED, &mut out);
    forge::varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

fn uint(tag: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    key(tag, VARINT, &mut out);
    forge::varint(v, &mut out);
    out
}

fn saved(body: &[u8]) -> Vec<u8> {
    [HEADER, body].concat()
}

/// One field of a record: the varint's bytes, the fixed bytes, or the
/// content of a length-delimited field.
#[derive(Clone, Debug)]
struct F {
    tag: u32,
    wire: u8,
    data: Vec<u8>,
}

impl F {
    fn bytes(tag: u32, data: &[u8]) -> F {
        F {
            tag,
            wire: DELIMITED,
            data: data.to_vec(),
        }
    }
    fn uint(tag: u32, v: u64) -> F {
        let mut data = Vec::new();
        forge::varint(v, &mut data);
        F {
            tag,
            wire: VARINT,
            data,
        }
    }
}

fn read_varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0;
    for shift in (0..64).step_by(7) {
        let byte = b[*i];
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            break;
        }
    }
    v
}

/// The fields of a well-formed record without groups.
fn parse(msg: &[u8]) -> Vec<F> {
    let mut fields = Vec::new();
    let mut i = 0;
    while i < msg.len() {
        let k = read_varint(msg, &mut i);
        let (tag, wire) = ((k >> 3) as u32, (k & 7) as u8);
        let start = i;
        let data = match wire {
            VARINT => {
                read_varint(msg, &mut i);
                msg[start..i].to_vec()
            }
            FIXED64 => {
                i += 8;
                msg[start..i].to_vec()
            }
            FIXED32 => {
                i += 4;
                msg[start..i].to_vec()
            }
            DELIMITED => {
                let len = read_varint(msg, &mut i) as usize;
                i += len;
                msg[i - len..i].to_vec()
            }
            w => panic!("wire type {w} in a test record"),
        };
        fields.push(F { tag, wire, data });
    }
    fields
}

fn encode(fields: &[F]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        key(f.tag, f.wire, &mut out);
        if f.wire == DELIMITED {
            forge::varint(f.data.len() as u64, &mut out);
        }
        out.extend_from_slice(&f.data);
    }
    out
}

/// Rewrites the record in `data` through `f`.
fn edit(data: &mut Vec<u8>, f: impl FnOnce(&mut Vec<F>)) {
    let mut fields = parse(data);
    f(&mut fields);
    *data = encode(&fields);
}

/// `saved` with its store record rewritten through `f`.
fn edit_saved(saved_bytes: &[u8], f: impl FnOnce(&mut Vec<F>)) -> Vec<u8> {
    let mut body = saved_bytes[HEADER.len()..].to_vec();
    edit(&mut body, f);
    saved(&body)
}

/// The `n`th field numbered `tag`.
fn nth(fields: &mut [F], tag: u32, n: usize) -> &mut F {
    fields
        .iter_mut()
        .filter(|f| f.tag == tag)
        .nth(n)
        .unwrap_or_else(|| panic!("no field {tag} #{n}"))
}

fn count(fields: &[F], tag: u32) -> usize {
    fields.iter().filter(|f| f.tag == tag).count()
}

fn first(fields: &[F], tag: u32) -> F {
    fields
        .iter()
        .find(|f| f.tag == tag)
        .cloned()
        .unwrap_or_else(|| panic!("no field {tag}"))
}

/// The session entry for `name` in a store record.
fn entry_for(store: &[F], name: &str) -> usize {
    store
        .iter()
        .position(|f| {
            f.tag == tag::SESSIONS
                && parse(&f.data)
                    .iter()
                    .any(|e| e.tag == tag::NAME && e.data == name.as_bytes())
        })
        .unwrap_or_else(|| panic!("no session entry for {name}"))
}

// ---- item 7: hostile input is refused before it expands ----------------------------

const HOSTILE_LEN: usize = 4 << 20;

/// About 4 MiB of empty records (2 bytes each) in field `tag`.
fn empties(tag: u32) -> Vec<u8> {
    let one = delimited(tag, &[]);
    one.repeat(HOSTILE_LEN / one.len())
}

fn hostile_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let device = uint(tag::DEVICE, 1);
    let in_entry =
        |rest: Vec<u8>| saved(&delimited(tag::SESSIONS, &[device.clone(), rest].concat()));
    vec![
        ("empty sessions", saved(&empties(tag::SESSIONS))),
        ("empty signed prekeys", saved(&empties(tag::SIGNED_PREKEYS))),
        ("empty one-time prekeys", saved(&empties(tag::PREKEYS))),
        ("empty trusted identities", saved(&empties(tag::TRUSTED))),
        (
            "empty archived states in one session",
            in_entry(empties(tag::PREVIOUS)),
        ),
        (
            "empty receiving chains in one state",
            in_entry(delimited(tag::CURRENT, &empties(tag::CHAINS))),
        ),
        (
            "empty skipped keys on one chain",
            in_entry(delimited(
                tag::CURRENT,
                &delimited(tag::CHAINS, &empties(tag::SKIPPED)),
            )),
        ),
    ]
}

/// The regression test of item 7: before the scan, prost decoded each of
/// these into hundreds of MiB before a limit was checked.
#[test]
fn hostile_saves_are_refused_in_small_memory() {
    let mut failures = Vec::new();
    for (what, input) in hostile_inputs() {
        let (r, usage) = restore(&input);
        eprintln!(
            "{what}: {} bytes in, peak {} bytes allocated ({:.1}x)",
            input.len(),
            usage.peak,
            usage.peak as f64 / input.len() as f64
        );
        if !matches!(r, Err(Error::CorruptState(_))) {
            failures.push(format!("{what}: {r:?}"));
        }
        if usage.peak >= 8 * input.len() {
            failures.push(format!(
                "{what}: peak {} bytes for {} bytes of input",
                usage.peak,
                input.len()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The smallest valid session state's own fields: version 3, two
/// identities, root key, sending ratchet key and chain key, base key.
fn minimal_state() -> Vec<u8> {
    let public = [5u8; 33];
    let secret = [1u8; 32];
    [
        uint(1, 3),
        delimited(2, &public),
        delimited(3, &public),
        delimited(4, &secret),
        delimited(5, &secret),
        delimited(6, &secret),
        delimited(13, &public),
    ]
    .concat()
}

/// Records at their minimum size in the shortest lists (where Rust's first
/// allocation of 4 slots costs the most per element), about 4 MiB of each.
/// The store has no identity key, so restoring fails right after decoding:
/// the peak is the decoding's.
#[test]
fn decoding_stays_within_the_bound_for_the_worst_shapes() {
    let public = [5u8; 33];
    let secret = [1u8; 32];
    let chain_with_one_skipped = [
        delimited(1, &public),
        delimited(tag::CHAIN_KEY, &secret),
        uint(tag::CHAIN_INDEX, 5),
        delimited(tag::SKIPPED, &delimited(tag::SEED, &secret)),
    ]
    .concat();
    let state_with_chain = [
        minimal_state(),
        delimited(tag::CHAINS, &chain_with_one_skipped),
    ]
    .concat();
    let device = uint(tag::DEVICE, 1);
    let shapes = [
        (
            "sessions with one archived state",
            delimited(
                tag::SESSIONS,
                &[device.clone(), delimited(tag::PREVIOUS, &minimal_state())].concat(),
            ),
        ),
        (
            "sessions with one archived state, one chain, one skipped key",
            delimited(
                tag::SESSIONS,
                &[device.clone(), delimited(tag::PREVIOUS, &state_with_chain)].concat(),
            ),
        ),
        (
            "sessions with a current state",
            delimited(
                tag::SESSIONS,
                &[device, delimited(tag::CURRENT, &minimal_state())].concat(),
            ),
        ),
        (
            "trusted identities",
            delimited(tag::TRUSTED, &delimited(tag::TRUSTED_KEY, &public)),
        ),
        (
            "one-time prekeys",
            delimited(
                tag::PREKEYS,
                &[uint(tag::PREKEY_ID, 1), delimited(2, &secret)].concat(),
            ),
        ),
        (
            "signed prekeys",
            delimited(
                tag::SIGNED_PREKEYS,
                &[
                    uint(tag::PREKEY_ID, 1),
                    delimited(tag::PREKEY_PRIVATE, &secret),
                    delimited(tag::SIGNATURE, &[0; 64]),
                ]
                .concat(),
            ),
        ),
    ];
    for (what, one) in shapes {
        let input = saved(&one.repeat(HOSTILE_LEN / one.len()));
        let (r, usage) = restore(&input);
        eprintln!(
            "{what}: {} bytes in, peak {} bytes ({:.2}x)",
            input.len(),
            usage.peak,
            usage.peak as f64 / input.len() as f64
        );
        assert!(matches!(r, Err(Error::CorruptState(_))), "{what}: {r:?}");
        assert!(
            usage.peak <= EXPANSION_BOUND * input.len(),
            "{what}: peak {} bytes for {} bytes of input",
            usage.peak,
            input.len()
        );
    }
}

// ---- item 10: nothing decoded is left in freed memory -------------------------------

/// The 32-byte secrets of a save: the identity key, and each session
/// state's root key.
fn secrets_of(saved_bytes: &[u8]) -> Vec<[u8; 32]> {
    let store = parse(&saved_bytes[HEADER.len()..]);
    let mut out = vec![<[u8; 32]>::try_from(&first(&store, 1).data[..]).unwrap()];
    for e in store.iter().filter(|f| f.tag == tag::SESSIONS) {
        for s in parse(&e.data)
            .iter()
            .filter(|f| f.tag == tag::CURRENT || f.tag == tag::PREVIOUS)
        {
            let root = first(&parse(&s.data), tag::ROOT_KEY).data;
            out.push(<[u8; 32]>::try_from(&root[..]).unwrap());
        }
    }
    out
}

#[test]
fn refused_saves_leave_no_decoded_secret_in_freed_memory() {
    let (alice, _bob) = dr_established_pair();
    let good = alice.store.save();
    let secrets = secrets_of(&good);
    assert!(secrets.len() >= 2);
    assert_eq!(
        secrets[0],
        *alice.store.identity().private_key().serialize()
    );
    let mut bad: Vec<(String, Vec<u8>)> = [
        ("a truncated varint", &[0x10, 0xff][..]),
        ("wire type 7", &[0x0f]),
        ("a length past the end", &[0x4a, 0x7f, 0x00]),
        ("an unmatched group end", &[0xfc, 0x07]),
    ]
    .into_iter()
    .map(|(what, tail)| (format!("save then {what}"), [&good[..], tail].concat()))
    .collect();
    // Every cut through the last session entry.
    let body = parse(&good[HEADER.len()..]);
    let last = encode(&[body
        .iter()
        .rfind(|f| f.tag == tag::SESSIONS)
        .unwrap()
        .clone()]);
    let at = good.windows(last.len()).position(|w| w == last).unwrap();
    for cut in (at + 1..at + last.len()).step_by(7) {
        bad.push((format!("save cut at {cut}"), good[..cut].to_vec()));
    }
    for (what, bytes) in &bad {
        for (i, secret) in secrets.iter().enumerate() {
            let (r, usage) = measure(Some(*secret), || ProtocolStore::restore(bytes));
            assert!(matches!(r, Err(Error::CorruptState(_))), "{what}: {r:?}");
            assert_eq!(
                usage.secret_freed, 0,
                "{what}: secret {i} left in {} freed blocks",
                usage.secret_freed
            );
        }
    }
}

/// Every 32-byte secret of a save: identity and prekey private keys, and
/// each state's root key, sending ratchet key and chain key, receiving
/// chain keys and skipped message key seeds.
fn all_secrets_of(saved_bytes: &[u8]) -> Vec<[u8; 32]> {
    fn push(out: &mut Vec<[u8; 32]>, fields: &[F], tags: &[u32]) {
        for f in fields.iter().filter(|f| tags.contains(&f.tag)) {
            out.push(<[u8; 32]>::try_from(&f.data[..]).unwrap());
        }
    }
    let store = parse(&saved_bytes[HEADER.len()..]);
    let mut out = Vec::new();
    push(&mut out, &store, &[1]);
    for r in store
        .iter()
        .filter(|f| f.tag == tag::PREKEYS || f.tag == tag::SIGNED_PREKEYS)
    {
        push(&mut out, &parse(&r.data), &[tag::PREKEY_PRIVATE]);
    }
    for e in store.iter().filter(|f| f.tag == tag::SESSIONS) {
        for s in parse(&e.data)
            .iter()
            .filter(|f| f.tag == tag::CURRENT || f.tag == tag::PREVIOUS)
        {
            let state = parse(&s.data);
            push(&mut out, &state, &[tag::ROOT_KEY, 5, 6]);
            for c in state.iter().filter(|f| f.tag == tag::CHAINS) {
                let chain = parse(&c.data);
                push(&mut out, &chain, &[tag::CHAIN_KEY]);
                for k in chain.iter().filter(|f| f.tag == tag::SKIPPED) {
                    push(&mut out, &parse(&k.data), &[tag::SEED]);
                }
            }
        }
    }
    out
}

/// prost copies each bytes field through a temporary buffer; restore reads
/// through one that wipes itself, so no key of the save is left in freed
/// memory, whether restoring succeeds or the decoded state is refused.
#[test]
fn restoring_leaves_no_key_in_freed_memory() {
    let good = rich_store().save();
    let secrets = all_secrets_of(&good);
    assert!(secrets.len() > 20, "{}", secrets.len());
    // Well-formed, refused after decoding: the last state's version is 2.
    let refused = edit_saved(&good, |s| {
        let i = s.iter().rposition(|f| f.tag == tag::SESSIONS).unwrap();
        edit(&mut s[i].data, |e| {
            edit(&mut nth(e, tag::CURRENT, 0).data, |st| {
                *nth(st, 1, 0) = F::uint(1, 2)
            })
        })
    });
    for (what, bytes, restores) in [("restored", &good, true), ("refused", &refused, false)] {
        for (i, secret) in secrets.iter().enumerate() {
            // The store is dropped inside the measured call too.
            let (r, usage) = measure(Some(*secret), || {
                ProtocolStore::restore(bytes).map(|s| s.session_count())
            });
            assert_eq!(r.is_ok(), restores, "{what}: {r:?}");
            assert_eq!(
                usage.secret_freed, 0,
                "{what}: secret {i} left in {} freed blocks",
                usage.secret_freed
            );
        }
    }
}

// ---- every limit: at it restores, one past it is refused before decoding -------------

#[test]
fn sessions_at_the_limit_restore_and_one_more_is_refused() {
    let (_alice, bob) = dr_established_pair();
    let good = bob.store.save();
    let entry = first(&parse(&good[HEADER.len()..]), tag::SESSIONS);
    let with_extra = |extra: usize| {
        let mut out = good.clone();
        for k in 0..extra {
            let mut e = entry.clone();
            edit(&mut e.data, |fields| {
                nth(fields, tag::NAME, 0).data = format!("peer{k}").into_bytes()
            });
            out.extend(encode(&[e]));
        }
        out
    };
    let full = ProtocolStore::restore(&with_extra(MAX_SESSIONS - 1)).unwrap();
    assert_eq!(full.session_count(), MAX_SESSIONS);
    refused_before_decoding(&with_extra(MAX_SESSIONS), "one session too many");
}

#[test]
fn archived_states_at_the_limit_restore_and_one_more_is_refused() {
    let mut alice = Party::without_spqr("alice");
    let mut bob = Party::without_spqr("bob");
    for _ in 0..=MAX_ARCHIVED_STATES {
        let bundle = bob.store.create_bundle(true, 0, &mut OsRng).unwrap();
        alice
            .store
            .process_bundle(&bob.addr, &bundle, &mut OsRng)
            .unwrap();
    }
    let record = alice.store.session(&bob.addr).unwrap();
    assert_eq!(record.previous_count(), MAX_ARCHIVED_STATES);
    let good = alice.store.save();
    round_trips(&good, "40 archived states");
    let over = edit_saved(&good, |store| {
        let i = entry_for(store, "bob");
        edit(&mut store[i].data, |e| {
            let state = first(e, tag::PREVIOUS);
            e.push(state);
        })
    });
    refused_before_decoding(&over, "41 archived states");
}

/// The receiving chains of `name`'s current state in a save.
fn current_chains(saved_bytes: &[u8], name: &str) -> Vec<F> {
    let store = parse(&saved_bytes[HEADER.len()..]);
    let i = entry_for(&store, name);
    let state = first(&parse(&store[i].data), tag::CURRENT);
    parse(&state.data)
        .into_iter()
        .filter(|f| f.tag == tag::CHAINS)
        .collect()
}

/// `saved` with `name`'s current state rewritten through `f`.
fn edit_current(saved_bytes: &[u8], name: &str, f: impl FnOnce(&mut Vec<F>)) -> Vec<u8> {
    edit_saved(saved_bytes, |store| {
        let i = entry_for(store, name);
        edit(&mut store[i].data, |e| {
            edit(&mut nth(e, tag::CURRENT, 0).data, f);
        });
    })
}

#[test]
fn receiving_chains_at_the_limit_restore_and_one_more_is_refused() {
    let (mut alice, mut bob) = dr_established_pair();
    for _ in 0..MAX_RECEIVER_CHAINS + 2 {
        let m = alice.send(&bob, b"ping");
        bob.recv(&alice, &m).unwrap();
        let r = bob.send(&alice, b"pong");
        alice.recv(&bob, &r).unwrap();
    }
    let good = alice.store.save();
    assert_eq!(current_chains(&good, "bob").len(), MAX_RECEIVER_CHAINS);
    round_trips(&good, "5 receiving chains");
    let over = edit_current(&good, "bob", |s| {
        let chain = first(s, tag::CHAINS);
        s.push(chain);
    });
    refused_before_decoding(&over, "6 receiving chains");
}

#[test]
fn skipped_keys_at_the_limit_restore_and_one_more_is_refused() {
    let (mut alice, mut bob) = dr_established_pair();
    let msgs: Vec<_> = (0..=MAX_SKIPPED_KEYS)
        .map(|_| alice.send(&bob, b"x"))
        .collect();
    bob.recv(&alice, msgs.last().unwrap()).unwrap();
    let good = bob.store.save();
    let chains = current_chains(&good, "alice");
    let n = chains
        .iter()
        .position(|c| count(&parse(&c.data), tag::SKIPPED) == MAX_SKIPPED_KEYS)
        .expect("a chain with 2000 skipped keys");
    round_trips(&good, "2000 skipped keys");
    let over = edit_current(&good, "alice", |s| {
        edit(&mut nth(s, tag::CHAINS, n).data, |c| {
            let k = first(c, tag::SKIPPED);
            c.push(k);
        })
    });
    refused_before_decoding(&over, "2001 skipped keys");
}

/// One more one-time prekey than there are prekey ids: 16,777,216 records
/// of the smallest size, 637 MB. Restoring exactly `MAX_PREKEY_ID` prekeys
/// would derive as many public keys, so the limit itself is not restored;
/// `persist_scan`'s unit tests check every count at and past small limits.
#[test]
#[ignore = "builds 637 MB of input; run with --ignored"]
fn one_prekey_more_than_there_are_ids_is_refused() {
    let record = delimited(
        tag::PREKEYS,
        &[uint(tag::PREKEY_ID, 1), delimited(2, &[7; 32])].concat(),
    );
    let n = MAX_PREKEY_ID as usize + 1;
    let mut body = Vec::with_capacity(HEADER.len() + record.len() * n);
    body.extend_from_slice(HEADER);
    for _ in 0..n {
        body.extend_from_slice(&record);
    }
    refused_before_decoding(&body, "one prekey more than the ids");
}

/// Trusted identities have no count limit: a store holds any number.
#[test]
fn many_trusted_identities_restore() {
    let mut store = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let key = *Party::without_spqr("x").store.identity_key();
    for i in 0..5000 {
        store.approve_identity(&format!("user{i}"), key);
    }
    round_trips(&store.save(), "5000 trusted identities");
}

// ---- records at their minimum size restore, one byte less is refused ----------------

/// Asserts that `at_min` restores and `short` is refused before decoding.
fn minimum_holds(at_min: &[u8], short: &[u8], what: &str) -> ProtocolStore {
    let store =
        ProtocolStore::restore(at_min).unwrap_or_else(|e| panic!("{what} at its minimum: {e}"));
    refused_before_decoding(short, &format!("{what} one byte short"));
    store
}

fn drop_tags(fields: &mut Vec<F>, tags: &[u32]) {
    fields.retain(|f| !tags.contains(&f.tag));
}

fn shorten(fields: &mut [F], tag: u32) {
    nth(fields, tag, 0).data.pop();
}

#[test]
fn records_at_their_minimum_size_restore() {
    let (alice, mut bob) = dr_established_pair();
    bob.store.generate_prekeys(2, &mut OsRng).unwrap();
    let good = bob.store.save();
    let store = parse(&good[HEADER.len()..]);
    let spk = first(&store, tag::SIGNED_PREKEYS);
    let pk = first(&store, tag::PREKEYS);
    let taken = |t: u32| {
        store.iter().any(|f| {
            f.tag == t
                && parse(&f.data)
                    .iter()
                    .any(|g| g.tag == tag::PREKEY_ID && g.data == [1])
        })
    };
    assert!(!taken(tag::SIGNED_PREKEYS) && !taken(tag::PREKEYS));

    // A one-time prekey: id 1 and a 32-byte key (36 bytes).
    let add_prekey = |short: bool| {
        edit_saved(&good, |s| {
            let mut r = pk.clone();
            edit(&mut r.data, |f| {
                *nth(f, tag::PREKEY_ID, 0) = F::uint(tag::PREKEY_ID, 1);
                if short {
                    shorten(f, tag::PREKEY_PRIVATE);
                }
            });
            assert_eq!(r.data.len(), 36 - usize::from(short));
            s.push(r);
        })
    };
    minimum_holds(&add_prekey(false), &add_prekey(true), "prekey");

    // A signed prekey: id 1, key, signature, no timestamp (102 bytes).
    let add_signed = |short: bool| {
        edit_saved(&good, |s| {
            let mut r = spk.clone();
            edit(&mut r.data, |f| {
                *nth(f, tag::PREKEY_ID, 0) = F::uint(tag::PREKEY_ID, 1);
                drop_tags(f, &[4]);
                if short {
                    shorten(f, tag::SIGNATURE);
                }
            });
            assert_eq!(r.data.len(), 102 - usize::from(short));
            s.push(r);
        })
    };
    minimum_holds(&add_signed(false), &add_signed(true), "signed prekey");

    // A trusted identity: empty name, 33-byte key (35 bytes).
    let add_trust = |short: bool| {
        let mut key = alice.store.identity_key().serialize().to_vec();
        if short {
            key.pop();
        }
        edit_saved(&good, |s| {
            s.push(F::bytes(
                tag::TRUSTED,
                &encode(&[F::bytes(tag::TRUSTED_KEY, &key)]),
            ))
        })
    };
    let back = minimum_holds(&add_trust(false), &add_trust(true), "trusted identity");
    assert_eq!(back.trusted_identity(""), Some(*alice.store.identity_key()));

    // A session entry: empty name, device 1, one state (2 bytes of its own).
    let entry = first(&store, tag::SESSIONS);
    let add_entry = |short: bool| {
        edit_saved(&good, |s| {
            let mut e = entry.clone();
            edit(&mut e.data, |f| {
                drop_tags(f, &[tag::NAME]);
                *nth(f, tag::DEVICE, 0) = F::uint(tag::DEVICE, 1);
                if short {
                    drop_tags(f, &[tag::DEVICE]);
                }
            });
            s.push(e);
        })
    };
    let back = minimum_holds(&add_entry(false), &add_entry(true), "session entry");
    assert!(back.has_session(&Address::new("", 1)));
    let stateless = edit_saved(&good, |s| {
        s.push(F::bytes(tag::SESSIONS, &encode(&[F::uint(tag::DEVICE, 1)])))
    });
    refused_before_decoding(&stateless, "a session entry without a state");

    // A session state: only the required fields of its own (209 bytes),
    // its chains kept; a chain without its index (69 bytes of its own).
    let state = |short_state: bool, short_chain: bool| {
        edit_current(&good, "alice", |f| {
            drop_tags(
                f,
                &[
                    tag::SENDER_INDEX,
                    tag::PREVIOUS_COUNTER,
                    tag::LOCAL_REGISTRATION,
                    tag::REMOTE_REGISTRATION,
                    tag::PENDING,
                ],
            );
            for c in f.iter_mut().filter(|c| c.tag == tag::CHAINS) {
                edit(&mut c.data, |c| {
                    assert_eq!(count(c, tag::SKIPPED), 0);
                    drop_tags(c, &[tag::CHAIN_INDEX]);
                    if short_chain {
                        shorten(c, tag::CHAIN_KEY);
                    }
                });
            }
            if short_state {
                shorten(f, tag::ROOT_KEY);
            }
            let own: usize = encode(
                &f.iter()
                    .filter(|c| c.tag != tag::CHAINS)
                    .cloned()
                    .collect::<Vec<_>>(),
            )
            .len();
            assert_eq!(own, 209 - usize::from(short_state));
        })
    };
    minimum_holds(&state(false, false), &state(true, false), "session state");
    minimum_holds(&state(false, false), &state(false, true), "receiving chain");
}

#[test]
fn skipped_keys_and_pending_prekeys_at_their_minimum_size_restore() {
    // Bob skips Alice's message 0: its skipped key has counter 0, so only
    // its 32-byte seed (34 bytes).
    let (mut alice, mut bob) = dr_established_pair();
    let _ = alice.send(&bob, b"skipped");
    let m = alice.send(&bob, b"read");
    bob.recv(&alice, &m).unwrap();
    let good = bob.store.save();
    let chains = current_chains(&good, "alice");
    let n = chains
        .iter()
        .position(|c| count(&parse(&c.data), tag::SKIPPED) == 1)
        .unwrap();
    let skipped = first(&parse(&chains[n].data), tag::SKIPPED);
    assert_eq!(skipped.data.len(), 34);
    round_trips(&good, "a skipped key at its minimum");
    let short = edit_current(&good, "alice", |s| {
        edit(&mut nth(s, tag::CHAINS, n).data, |c| {
            edit(&mut nth(c, tag::SKIPPED, 0).data, |k| shorten(k, tag::SEED))
        })
    });
    refused_before_decoding(&short, "a skipped key one byte short");

    // Alice before Bob answers: her state holds a pending prekey; keep its
    // signed prekey id (1) and base key (37 bytes), in a version-3 state (a
    // version-4 one also needs the Kyber prekey id and ciphertext).
    let (alice, _bob, _) = dr_initiated_pair();
    let good = alice.store.save();
    let pending = |short: bool| {
        edit_current(&good, "bob", |s| {
            *nth(s, tag::STATE_VERSION, 0) = F::uint(tag::STATE_VERSION, 3);
            edit(&mut nth(s, tag::PENDING, 0).data, |p| {
                drop_tags(
                    p,
                    &[
                        tag::PENDING_PREKEY_ID,
                        tag::PENDING_KYBER_ID,
                        tag::PENDING_KYBER_CIPHERTEXT,
                    ],
                );
                *nth(p, tag::PENDING_SIGNED_ID, 0) = F::uint(tag::PENDING_SIGNED_ID, 1);
                if short {
                    shorten(p, tag::BASE_KEY);
                }
                assert_eq!(encode(p).len(), 37 - usize::from(short));
            })
        })
    };
    minimum_holds(&pending(false), &pending(true), "pending prekey");
}

// ---- real saves and unknown fields -----------------------------------------------

/// A store with every kind of record: signed prekeys (rotated), one-time
/// prekeys, a session with several chains and skipped keys, a session
/// with a pending prekey and archived states, trusted identities.
fn rich_store() -> ProtocolStore {
    let (mut alice, mut bob) = dr_established_pair();
    let mut carol = Party::without_spqr("carol");
    for _ in 0..3 {
        let bundle = carol.store.create_bundle(true, 0, &mut OsRng).unwrap();
        bob.store
            .process_bundle(&carol.addr, &bundle, &mut OsRng)
            .unwrap();
    }
    for turn in 0..3 {
        let msgs: Vec<_> = (0..4).map(|_| alice.send(&bob, b"m")).collect();
        bob.recv(&alice, &msgs[3]).unwrap();
        if turn > 0 {
            bob.recv(&alice, &msgs[1]).unwrap();
        }
        let r = bob.send(&alice, b"r");
        alice.recv(&bob, &r).unwrap();
    }
    bob.store.generate_prekeys(4, &mut OsRng).unwrap();
    bob.store.generate_signed_prekey(7, &mut OsRng).unwrap();
    let dave = *Party::without_spqr("dave").store.identity_key();
    bob.store.approve_identity("dave", dave);
    bob.store
}

/// Unknown fields of every wire type, as a later version might add.
fn unknown_fields() -> Vec<u8> {
    let mut u = uint(100, 12_345);
    key(101, FIXED64, &mut u);
    u.extend([1; 8]);
    u.extend(delimited(102, b"a later version"));
    key(103, FIXED32, &mut u);
    u.extend([2; 4]);
    key(104, GROUP_START, &mut u);
    u.extend(uint(1, 1));
    u.extend(delimited(9, b"not a session"));
    key(104, GROUP_END, &mut u);
    u.extend(uint((1 << 29) - 1, 1));
    u
}

/// The nested record kinds (`src/persist.rs`).
fn child(record: &str, field: u32) -> Option<&'static str> {
    match (record, field) {
        ("store", 4) => Some("signed prekey"),
        ("store", 6) => Some("prekey"),
        ("store", 9) => Some("entry"),
        ("store", 10) => Some("trust"),
        ("entry", 3 | 4) => Some("state"),
        ("state", 8) => Some("chain"),
        ("state", 10) => Some("pending"),
        ("chain", 4) => Some("skipped"),
        _ => None,
    }
}

/// `msg`, a `record`, with unknown fields before and after its own fields,
/// in it and in every record nested in it.
fn with_unknown_fields(record: &str, msg: &[u8]) -> Vec<u8> {
    let mut fields = parse(msg);
    for f in &mut fields {
        if let Some(c) = child(record, f.tag) {
            f.data = with_unknown_fields(c, &f.data);
        }
    }
    [unknown_fields(), encode(&fields), unknown_fields()].concat()
}

#[test]
fn real_saves_restore_to_the_same_bytes_also_with_unknown_fields() {
    let store = rich_store();
    let good = store.save();
    let fields = parse(&good[HEADER.len()..]);
    assert!(count(&fields, tag::SIGNED_PREKEYS) >= 2);
    assert!(count(&fields, tag::PREKEYS) >= 4);
    assert!(count(&fields, tag::TRUSTED) >= 3);
    assert!(
        store
            .session(&Address::new("carol", 1))
            .unwrap()
            .previous_count()
            == 2
    );
    assert!(current_chains(&good, "alice").len() >= 2);
    assert!(current_chains(&good, "alice")
        .iter()
        .any(|c| count(&parse(&c.data), tag::SKIPPED) > 0));
    round_trips(&good, "a rich store");

    let extended = saved(&with_unknown_fields("store", &good[HEADER.len()..]));
    assert!(extended.len() > good.len() + 1000);
    let back = ProtocolStore::restore(&extended).unwrap();
    assert!(back.save() == good, "unknown fields changed the store");
    // And through the encrypted form.
    let key = [3u8; 32];
    let sealed = back.save_encrypted(&key, &mut OsRng).unwrap();
    assert!(
        ProtocolStore::restore_encrypted(&sealed, &key)
            .unwrap()
            .save()
            == good
    );
}

// ---- malformed wire format ---------------------------------------------------------

#[test]
fn malformed_saves_are_refused_before_decoding() {
    let (alice, _bob) = dr_established_pair();
    let good = alice.store.save();
    // Wire-format errors, wherever they are (in unknown fields 50 and 51,
    // so that a record's own fields are not given twice).
    let wire: Vec<(&str, Vec<u8>)> = vec![
        ("truncated varint", vec![0x90, 0x03]),
        (
            "truncated long varint",
            vec![0x90, 0x03, 0xff, 0xff, 0xff, 0xff],
        ),
        (
            "11-byte varint",
            [&[0x90, 0x03][..], &[0xff; 10], &[0x01]].concat(),
        ),
        (
            "10th varint byte over 1",
            [&[0x90, 0x03][..], &[0xff; 9], &[0x02]].concat(),
        ),
        ("truncated key", vec![0x90]),
        ("key over u32", vec![0x80, 0x80, 0x80, 0x80, 0x10]),
        ("field number 0", vec![0x00, 0x01]),
        ("wire type 6", vec![0x0e]),
        ("wire type 7", vec![0x0f]),
        ("length past the end", vec![0x9a, 0x03, 0x21, 0x01]),
        (
            "huge length",
            [&[0x9a, 0x03][..], &[0xff; 9], &[0x01]].concat(),
        ),
        ("unmatched group end", vec![0xfc, 0x07]),
        ("mismatched group end", vec![0xfb, 0x07, 0x84, 0x08]),
        ("unterminated group", vec![0xfb, 0x07, 0x08, 0x01]),
        ("truncated fixed64", vec![0xa1, 0x06, 0, 0, 0]),
        ("truncated fixed32", vec![0xa5, 0x06, 0, 0, 0]),
        ("groups 200 deep", {
            let mut g = Vec::new();
            for _ in 0..200 {
                key(20, GROUP_START, &mut g);
            }
            g
        }),
    ];
    // Errors against the store record's schema.
    let schema: Vec<(&str, Vec<u8>)> = vec![
        ("sessions as a varint", vec![0x48, 0x01]),
        ("current signed prekey id as bytes", vec![0x2a, 0x00]),
        (
            "name not UTF-8",
            delimited(
                tag::SESSIONS,
                &[
                    delimited(tag::NAME, &[0xc3]),
                    uint(tag::DEVICE, 1),
                    delimited(tag::CURRENT, &minimal_state()),
                ]
                .concat(),
            ),
        ),
        (
            "session state given twice",
            delimited(
                tag::SESSIONS,
                &[
                    uint(tag::DEVICE, 1),
                    delimited(tag::CURRENT, &minimal_state()),
                    delimited(tag::CURRENT, &minimal_state()),
                ]
                .concat(),
            ),
        ),
    ];
    for (what, body) in wire.iter().chain(&schema) {
        refused_before_decoding(&saved(body), what);
        // After a whole valid save, too.
        refused_before_decoding(&[&good[..], body].concat(), what);
    }
    // Wire-format errors three records deep: in a receiving chain that has
    // its required fields, in a session state.
    for (what, body) in &wire {
        let chain = [
            delimited(1, &[5; 33]),
            delimited(tag::CHAIN_KEY, &[1; 32]),
            body.clone(),
        ]
        .concat();
        let state = [minimal_state(), delimited(tag::CHAINS, &chain)].concat();
        let entry = [uint(tag::DEVICE, 1), delimited(tag::CURRENT, &state)].concat();
        refused_before_decoding(&saved(&delimited(tag::SESSIONS, &entry)), what);
    }
}

#[test]
fn mutated_and_truncated_saves_never_panic_nor_reach_the_decoder() {
    let good = rich_store().save();
    let check = |bytes: &[u8], what: &str| {
        if let Err(e) = ProtocolStore::restore(bytes) {
            assert!(
                matches!(
                    e,
                    Error::CorruptState(_) | Error::UnsupportedStateVersion(_)
                ),
                "{what}: {e:?}"
            );
            assert_ne!(e, Error::CorruptState(DECODE_FAILED), "{what}");
        }
    };
    for n in 0..good.len() {
        check(&good[..n], "truncated");
    }
    for i in (HEADER.len()..good.len()).step_by(3) {
        for v in [0x00, 0x80, 0xff, good[i] ^ 0x07] {
            let mut m = good.clone();
            m[i] = v;
            check(&m, "mutated");
        }
        let mut m = good.clone();
        m.remove(i);
        check(&m, "byte removed");
        let mut m = good.clone();
        m.insert(i, 0x80);
        check(&m, "byte inserted");
    }
}
