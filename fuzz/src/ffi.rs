//! The `ffi` target: an interpreter that drives the exported `rk_*`
//! functions with arbitrary arguments in arbitrary orders.
//!
//! The input is a sequence of operations (one opcode byte, then the bytes
//! its arguments take). Handles made along the way go into tables that
//! later operations pick from by index; an index one past the end is NULL,
//! and some picks deliberately pass a live handle of another type. Byte
//! outputs (messages, saved stores, serialized bundles, keys) go into a pool
//! that later operations use as inputs. The run starts with two stores
//! restored from the fixtures ("bob" and "alice", who share sessions).
//!
//! Checked on every call, as the C API documents:
//! - no call panics (`RK_STATUS_PANIC`), runs into an internal error or
//!   poisons a store;
//! - a NULL or wrong-type handle fails;
//! - a failing call sets a last-error message, writes no output (outputs
//!   are pre-filled with sentinels and compared), and leaves every store it
//!   was given with the same saved bytes;
//! - an `rk_bytes` output is never NULL and is NUL-terminated;
//! - a wrong-type free is a no-op; everything is freed at the end (leaks
//!   are reported by the sanitizer).
//!
//! Calls the C API forbids (freed or foreign pointers, lengths beyond a
//! buffer, non-terminated strings) are never made.
//!
//! The PQXDH calls (policy, Kyber prekeys, bundles with Kyber prekeys,
//! session versions) take Kyber prekey ids from the stores and from Kyber
//! prekey records kept in the pool, so that they hit real keys.

use std::ffi::c_char;
use std::ptr::{null, null_mut};

use ratchetkit::ffi::bundle::*;
use ratchetkit::ffi::bytes::{rk_bytes, rk_bytes_free};
use ratchetkit::ffi::fingerprint::*;
use ratchetkit::ffi::keys::*;
use ratchetkit::ffi::status::{rk_status, rk_status_str};
use ratchetkit::ffi::store::*;
use ratchetkit::ffi::{rk_abi_version, rk_last_error_message, rk_version};

/// The alice fixture: a store with a session with "bob".
const ALICE_STORE: &[u8] = include_bytes!("../fixtures/alice.store");

const MAX_OPS: usize = 48;
const MAX_HANDLES: usize = 6;
const MAX_POOL: usize = 16;

const NAMES: [&[u8]; 6] = [
    b"alice\0",
    b"bob\0",
    b"carol\0",
    b"mallory\0",
    b"\0",
    b"\xff\xfe\0",
];
const U32S: [u32; 14] = [
    0,
    1,
    2,
    3,
    5,
    16380,
    16381,
    0x00FF_FFFF,
    0x0100_0000,
    10_000,
    10_001,
    0x7FFF_FFFF,
    0xFFFF_FFFE,
    u32::MAX,
];

/// The input, read front to back; reads past the end give zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    /// A u32: mostly an interesting value, sometimes raw.
    fn u32(&mut self) -> u32 {
        let b = self.u8();
        if b & 0x80 == 0 {
            U32S[usize::from(b) % U32S.len()]
        } else {
            u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
        }
    }
    /// Up to `max` raw bytes.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = usize::from(self.u8()).min(max).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b.to_vec()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Statuses that must never come back.
fn assert_sane(s: rk_status) {
    assert!(
        !matches!(
            s,
            rk_status::Panic | rk_status::Internal | rk_status::Poisoned
        ),
        "C API returned {s:?}"
    );
    // Every status has a description.
    let text = rk_status_str(s as u32);
    assert!(!text.is_null());
}

/// After a failed call: a detail message is set.
fn assert_error_message(s: rk_status) {
    let mut len = usize::MAX;
    // SAFETY: NULL with cap 0 queries the length; len is writable.
    let q = unsafe { rk_last_error_message(null_mut(), 0, &mut len) };
    assert!(
        q == rk_status::BufferTooSmall || q == rk_status::Ok,
        "{q:?}"
    );
    assert!(len > 0, "{s:?} without a message");
    let mut buf = vec![0u8; len + 1];
    let mut len2 = 0usize;
    // SAFETY: buf holds len + 1 writable bytes.
    let r = unsafe { rk_last_error_message(buf.as_mut_ptr().cast(), buf.len(), &mut len2) };
    assert!(r == rk_status::Ok && len2 == len && buf[len] == 0);
    assert!(std::str::from_utf8(&buf[..len]).is_ok());
}

const SENTINEL_BYTES: rk_bytes = rk_bytes {
    ptr: 0x5A5A_5A58 as *mut u8,
    len: 0x1234_5678,
};

fn sentinel<T>() -> *mut T {
    0x5A5A_5A58usize as *mut T
}

/// Takes a successful `rk_bytes` output: checks and copies it, then frees it.
fn take_bytes(b: rk_bytes) -> Vec<u8> {
    assert!(!b.ptr.is_null());
    // SAFETY: a library buffer of len bytes plus a NUL.
    let v = unsafe {
        assert_eq!(*b.ptr.add(b.len), 0, "rk_bytes not NUL-terminated");
        std::slice::from_raw_parts(b.ptr, b.len).to_vec()
    };
    // SAFETY: from the library, freed once.
    unsafe { rk_bytes_free(b) };
    v
}

/// One handle table.
struct Table<T>(Vec<*mut T>);

impl<T> Table<T> {
    fn pick(&self, sel: u8) -> *mut T {
        let i = usize::from(sel) % (self.0.len() + 1);
        self.0.get(i).copied().unwrap_or(null_mut())
    }
    fn add(&mut self, h: *mut T, free: unsafe extern "C" fn(*mut T)) {
        assert!(!h.is_null());
        if self.0.len() >= MAX_HANDLES {
            // SAFETY: a live handle of this table, freed once.
            unsafe { free(self.0.remove(0)) };
        }
        self.0.push(h);
    }
    fn free_all(&mut self, free: unsafe extern "C" fn(*mut T)) {
        for h in self.0.drain(..) {
            // SAFETY: live handles, each freed once.
            unsafe { free(h) };
        }
    }
}

struct World {
    stores: Table<rk_store>,
    keys: Table<rk_public_key>,
    pairs: Table<rk_identity_keypair>,
    bundles: Table<rk_bundle>,
    fingerprints: Table<rk_fingerprint>,
    pool: Vec<Vec<u8>>,
}

/// A handle argument: the handle, whether it is a real handle of the right
/// type (so the call may succeed), and the store to watch if it is a store.
struct Arg<T> {
    ptr: *mut T,
    real: bool,
}

impl World {
    fn new() -> Self {
        let mut w = World {
            stores: Table(Vec::new()),
            keys: Table(Vec::new()),
            pairs: Table(Vec::new()),
            bundles: Table(Vec::new()),
            fingerprints: Table(Vec::new()),
            pool: vec![
                include_bytes!("../fixtures/held-whisper-alice").to_vec(),
                include_bytes!("../fixtures/held-prekey-alice").to_vec(),
                include_bytes!("../fixtures/held-prekey-carol").to_vec(),
            ],
        };
        for saved in [crate::FIXTURE_STORE, ALICE_STORE] {
            let mut s = null_mut();
            // SAFETY: valid input bytes and out-pointer.
            let st = unsafe { rk_store_restore(saved.as_ptr(), saved.len(), &mut s) };
            assert!(st == rk_status::Ok, "fixture restore: {st:?}");
            w.stores.add(s, rk_store_free);
        }
        w
    }

    /// Any live handle of a type other than `T`'s table, as an opaque pointer.
    fn foreign(&self, sel: u8, not_stores: bool) -> *mut u8 {
        let mut all: Vec<*mut u8> = Vec::new();
        if !not_stores {
            all.extend(self.stores.0.iter().map(|p| p.cast::<u8>()));
        }
        all.extend(self.keys.0.iter().map(|p| p.cast::<u8>()));
        all.extend(self.pairs.0.iter().map(|p| p.cast::<u8>()));
        all.extend(self.bundles.0.iter().map(|p| p.cast::<u8>()));
        all.extend(self.fingerprints.0.iter().map(|p| p.cast::<u8>()));
        all.get(usize::from(sel) % all.len().max(1))
            .copied()
            .unwrap_or(null_mut())
    }

    fn store(&self, inp: &mut Input) -> Arg<rk_store> {
        let b = inp.u8();
        if b % 16 == 15 {
            // A handle of another type where a store is expected.
            let p = self.foreign(b >> 4, true);
            return Arg {
                ptr: p.cast(),
                real: false,
            };
        }
        let ptr = self.stores.pick(b);
        Arg {
            ptr,
            real: !ptr.is_null(),
        }
    }

    fn handle<T>(&self, table: &Table<T>, inp: &mut Input) -> Arg<T> {
        let b = inp.u8();
        if b % 16 == 15 {
            let p = self.foreign(b >> 4, false);
            // Only when it is not of type T (tables hold distinct types).
            if !table.0.iter().any(|h| h.cast::<u8>() == p) {
                return Arg {
                    ptr: p.cast(),
                    real: false,
                };
            }
        }
        let ptr = table.pick(b);
        Arg {
            ptr,
            real: !ptr.is_null(),
        }
    }

    /// Byte input: from the pool, the input itself, or NULL/empty.
    fn data(&self, inp: &mut Input) -> Vec<u8> {
        let b = inp.u8();
        match b % 4 {
            0 => inp.bytes(255),
            1 => Vec::new(),
            _ => self
                .pool
                .get(usize::from(b >> 2) % self.pool.len().max(1))
                .cloned()
                .unwrap_or_default(),
        }
    }

    fn keep(&mut self, v: Vec<u8>) {
        if self.pool.len() >= MAX_POOL {
            self.pool.remove(0);
        }
        self.pool.push(v);
    }

    fn saved(&self, store: &Arg<rk_store>) -> Option<Vec<u8>> {
        if !store.real {
            return None;
        }
        let mut out = SENTINEL_BYTES;
        // SAFETY: a live store; out is writable.
        let s = unsafe { rk_store_save(store.ptr, &mut out) };
        assert!(s == rk_status::Ok, "save: {s:?}");
        Some(take_bytes(out))
    }

    fn free_all(&mut self) {
        self.stores.free_all(rk_store_free);
        self.keys.free_all(rk_public_key_free);
        self.pairs.free_all(rk_identity_keypair_free);
        self.bundles.free_all(rk_bundle_free);
        self.fingerprints.free_all(rk_fingerprint_free);
    }
}

/// A name argument: NULL, a known name, or raw bytes (NUL-terminated).
fn name(inp: &mut Input) -> Option<Vec<u8>> {
    let b = inp.u8();
    match b % 8 {
        0 => None,
        1 => {
            let mut v: Vec<u8> = inp.bytes(12).into_iter().filter(|&c| c != 0).collect();
            v.push(0);
            Some(v)
        }
        _ => Some(NAMES[usize::from(b >> 3) % NAMES.len()].to_vec()),
    }
}

fn name_ptr(n: &Option<Vec<u8>>) -> *const c_char {
    n.as_ref().map_or(null(), |v| v.as_ptr().cast())
}

/// (ptr, len) of a byte argument; sometimes NULL with its length (which
/// must fail unless the length is 0).
fn bytes_arg(v: &[u8], null_it: bool) -> (*const u8, usize) {
    if null_it {
        (null(), v.len())
    } else {
        (v.as_ptr(), v.len())
    }
}

/// Checks a finished call: sanity, failures on bad handles, error message,
/// unchanged stores.
fn finish(s: rk_status, bad_arg: bool, watched: &[(Option<Vec<u8>>, &Arg<rk_store>)], w: &World) {
    assert_sane(s);
    if bad_arg {
        assert!(s != rk_status::Ok, "a NULL or foreign handle was accepted");
    }
    if s != rk_status::Ok {
        assert_error_message(s);
        for (before, store) in watched {
            if let Some(before) = before {
                let after = w.saved(store).expect("real store");
                assert!(&after == before, "failed call ({s:?}) changed the store");
            }
        }
    }
}

/// Runs the interpreter over `data`.
pub fn run(data: &[u8]) {
    let mut inp = Input(data);
    let mut w = World::new();
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        step(&mut w, &mut inp);
    }
    w.free_all();
}

/// The number of operations: `op % OPS` picks one (31 is the catch-all of
/// status-free calls; 32 and up are the PQXDH calls).
const OPS: u8 = 40;

/// A Kyber prekey id for `store`: its last-resort one, the id at the start
/// of a pool entry (records from `rk_store_generate_kyber_prekeys` and
/// `rk_store_kyber_prekey` start with one), or any value.
fn kyber_id(w: &World, store: &Arg<rk_store>, inp: &mut Input) -> u32 {
    let b = inp.u8();
    match b % 4 {
        0 if store.real => {
            let (mut has, mut id) = (false, 0u32);
            // SAFETY: a live store; the outputs are locals.
            let s = unsafe { rk_store_last_resort_kyber_prekey_id(store.ptr, &mut has, &mut id) };
            assert!(s == rk_status::Ok, "last resort id: {s:?}");
            assert!(has || id == 0);
            id
        }
        1 => w
            .pool
            .get(usize::from(b >> 2) % w.pool.len().max(1))
            .and_then(|v| v.get(..4))
            .map_or(0, |v| u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
        _ => inp.u32(),
    }
}

/// Kyber key and signature bytes for a bundle: from a Kyber prekey record in
/// the pool (sometimes with its type byte or length changed), or any bytes.
fn kyber_parts(w: &World, inp: &mut Input) -> (u32, Vec<u8>, Vec<u8>) {
    let b = inp.u8();
    let record = w
        .pool
        .iter()
        .rev()
        .find(|v| v.len() >= RECORD_LEN && v[4] == 0x08)
        .filter(|_| !b.is_multiple_of(4));
    match record {
        Some(r) => {
            let id = u32::from_be_bytes([r[0], r[1], r[2], r[3]]);
            let mut key = r[4..4 + KEM_LEN].to_vec();
            let sig = r[4 + KEM_LEN..RECORD_LEN].to_vec();
            match b % 16 {
                1 => key[0] = 0x0A,
                2 => key[0] = inp.u8(),
                3 => key.truncate(usize::from(inp.u8()) * 8),
                5 => key.push(0),
                _ => {}
            }
            (id, key, sig)
        }
        None => (inp.u32(), w.data(inp), w.data(inp)),
    }
}

const KEM_LEN: usize = 1569;
const RECORD_LEN: usize = 4 + KEM_LEN + 64;

#[allow(clippy::too_many_lines)]
fn step(w: &mut World, inp: &mut Input) {
    let op = inp.u8() % OPS;
    // SAFETY (for every call below): handles are live handles from the
    // tables, foreign live handles, or NULL; byte arguments point to Vecs of
    // the given length (or are NULL); out-pointers are local variables.
    unsafe {
        match op {
            0 => {
                let dev = inp.u32();
                let mut out = sentinel();
                let s = rk_store_new(dev, &mut out);
                finish(s, false, &[], w);
                if s == rk_status::Ok {
                    w.stores.add(out, rk_store_free);
                } else {
                    assert!(out == sentinel());
                }
            }
            1 => {
                let pair = w.handle(&w.pairs, inp);
                let (reg, dev) = (inp.u32(), inp.u32());
                let mut out = sentinel();
                let s = rk_store_new_with_identity(pair.ptr, reg, dev, &mut out);
                finish(s, !pair.real, &[], w);
                if s == rk_status::Ok {
                    w.stores.add(out, rk_store_free);
                } else {
                    assert!(out == sentinel());
                }
            }
            2 => {
                let saved = w.data(inp);
                let keyed = inp.u8();
                let key = if keyed & 1 == 1 {
                    let mut k = inp.bytes(40);
                    if keyed & 2 == 2 {
                        k = vec![0x42; 32];
                    }
                    Some(k)
                } else {
                    None
                };
                let mut out = sentinel();
                let s = match &key {
                    None => rk_store_restore(saved.as_ptr(), saved.len(), &mut out),
                    Some(k) => rk_store_restore_encrypted(
                        saved.as_ptr(),
                        saved.len(),
                        k.as_ptr(),
                        k.len(),
                        &mut out,
                    ),
                };
                finish(s, false, &[], w);
                if s == rk_status::Ok {
                    w.stores.add(out, rk_store_free);
                } else {
                    assert!(out == sentinel());
                }
            }
            3 => {
                let st = w.store(inp);
                let keyed = inp.u8();
                let mut out = SENTINEL_BYTES;
                let s = if keyed & 1 == 1 {
                    let k = if keyed & 2 == 2 {
                        vec![0x42; 32]
                    } else {
                        inp.bytes(40)
                    };
                    rk_store_save_encrypted(st.ptr, k.as_ptr(), k.len(), &mut out)
                } else {
                    rk_store_save(st.ptr, &mut out)
                };
                finish(s, !st.real, &[], w);
                if s == rk_status::Ok {
                    let v = take_bytes(out);
                    w.keep(v);
                } else {
                    assert!(out.ptr == SENTINEL_BYTES.ptr && out.len == SENTINEL_BYTES.len);
                }
            }
            4 => {
                let st = w.store(inp);
                let ts = u64::from(inp.u32());
                let before = w.saved(&st);
                let mut id = 0xABCD_u32;
                let s = rk_store_generate_signed_prekey(st.ptr, ts, &mut id);
                finish(s, !st.real, &[(before, &st)], w);
                if s != rk_status::Ok {
                    assert!(id == 0xABCD);
                }
            }
            5 => {
                let st = w.store(inp);
                let id = inp.u32();
                let before = w.saved(&st);
                let s = rk_store_remove_signed_prekey(st.ptr, id);
                finish(s, !st.real, &[(before, &st)], w);
            }
            6 => {
                let st = w.store(inp);
                let count = inp.u32() % 16 + if inp.u8() == 0xFF { 10_001 } else { 0 };
                let before = w.saved(&st);
                let mut out = SENTINEL_BYTES;
                let null_out = inp.u8() == 0xFE;
                let s = rk_store_generate_prekeys(
                    st.ptr,
                    count,
                    if null_out { null_mut() } else { &mut out },
                );
                finish(s, !st.real || null_out, &[(before, &st)], w);
                if s == rk_status::Ok {
                    let v = take_bytes(out);
                    assert!(v.len() == count as usize * 37);
                    w.keep(v);
                }
            }
            7 => {
                let st = w.store(inp);
                let mut n = 77usize;
                let s = rk_store_prekey_count(st.ptr, &mut n);
                finish(s, !st.real, &[], w);
                if s != rk_status::Ok {
                    assert!(n == 77);
                }
            }
            8 => {
                let st = w.store(inp);
                let flag = inp.u32() % 3;
                let ts = u64::from(inp.u32());
                let before = w.saved(&st);
                let mut out = sentinel();
                let s = rk_store_create_bundle(st.ptr, flag, ts, &mut out);
                finish(s, !st.real, &[(before, &st)], w);
                if s == rk_status::Ok {
                    w.bundles.add(out, rk_bundle_free);
                } else {
                    assert!(out == sentinel());
                }
            }
            9 => {
                let st = w.store(inp);
                let n = name(inp);
                let dev = inp.u32();
                let b = w.handle(&w.bundles, inp);
                let before = w.saved(&st);
                let s = rk_store_process_bundle(st.ptr, name_ptr(&n), dev, b.ptr);
                finish(s, !st.real || !b.real, &[(before, &st)], w);
            }
            10 => {
                let st = w.store(inp);
                match inp.u8() % 3 {
                    0 => {
                        let n = name(inp);
                        let dev = inp.u32();
                        let mut has = true;
                        let s = rk_store_has_session(st.ptr, name_ptr(&n), dev, &mut has);
                        finish(s, !st.real, &[], w);
                    }
                    1 => {
                        let mut count = usize::MAX;
                        let s = rk_store_session_count(st.ptr, &mut count);
                        finish(s, !st.real, &[], w);
                        if s != rk_status::Ok {
                            assert_eq!(count, usize::MAX, "output written on failure");
                        }
                    }
                    _ => {
                        let n = name(inp);
                        let dev = inp.u32();
                        let before = w.saved(&st);
                        let mut removed = true;
                        let s = rk_store_remove_session(st.ptr, name_ptr(&n), dev, &mut removed);
                        finish(s, !st.real, &[(before, &st)], w);
                        if s != rk_status::Ok {
                            assert!(removed, "output written on failure");
                        }
                    }
                }
            }
            11 => {
                let st = w.store(inp);
                let n = name(inp);
                let dev = inp.u32();
                let pt = w.data(inp);
                let null_pt = inp.u8() == 0xFF;
                let (p, l) = bytes_arg(&pt, null_pt);
                let before = w.saved(&st);
                let mut ty = 99u32;
                let mut out = SENTINEL_BYTES;
                let s = rk_store_encrypt(st.ptr, name_ptr(&n), dev, p, l, &mut ty, &mut out);
                finish(s, !st.real || (null_pt && l > 0), &[(before, &st)], w);
                if s == rk_status::Ok {
                    assert!(ty == 2 || ty == 3);
                    let v = take_bytes(out);
                    w.keep(v);
                } else {
                    assert!(ty == 99 && out.ptr == SENTINEL_BYTES.ptr);
                }
            }
            12..=14 => {
                let st = w.store(inp);
                let n = name(inp);
                let dev = inp.u32();
                let msg = w.data(inp);
                let ty = inp.u32() % 5;
                let null_msg = inp.u8() == 0xFF;
                let (p, l) = bytes_arg(&msg, null_msg);
                let before = w.saved(&st);
                let mut out = SENTINEL_BYTES;
                let s = match op {
                    12 => rk_store_decrypt(st.ptr, name_ptr(&n), dev, ty, p, l, &mut out),
                    13 => {
                        rk_store_decrypt_prekey_message(st.ptr, name_ptr(&n), dev, p, l, &mut out)
                    }
                    _ => {
                        rk_store_decrypt_whisper_message(st.ptr, name_ptr(&n), dev, p, l, &mut out)
                    }
                };
                finish(s, !st.real || (null_msg && l > 0), &[(before, &st)], w);
                if s == rk_status::Ok {
                    let v = take_bytes(out);
                    w.keep(v);
                    // A replay fails.
                    let before = w.saved(&st);
                    let mut again = SENTINEL_BYTES;
                    let s2 = rk_store_decrypt_prekey_message(
                        st.ptr,
                        name_ptr(&n),
                        dev,
                        p,
                        l,
                        &mut again,
                    );
                    let s3 = rk_store_decrypt_whisper_message(
                        st.ptr,
                        name_ptr(&n),
                        dev,
                        p,
                        l,
                        &mut again,
                    );
                    assert!(
                        s2 != rk_status::Ok && s3 != rk_status::Ok,
                        "replay decrypted"
                    );
                    finish(s3, false, &[(before, &st)], w);
                } else {
                    assert!(out.ptr == SENTINEL_BYTES.ptr);
                }
            }
            15 => {
                let st = w.store(inp);
                let n = name(inp);
                let mut out = sentinel();
                let s = rk_store_trusted_identity(st.ptr, name_ptr(&n), &mut out);
                finish(s, !st.real, &[], w);
                if s == rk_status::Ok {
                    w.keys.add(out, rk_public_key_free);
                } else {
                    assert!(out == sentinel());
                }
            }
            16 => {
                let st = w.store(inp);
                let n = name(inp);
                let k = w.handle(&w.keys, inp);
                let before = w.saved(&st);
                let mut replaced = false;
                let s = rk_store_approve_identity(st.ptr, name_ptr(&n), k.ptr, &mut replaced);
                finish(s, !st.real || !k.real, &[(before, &st)], w);
            }
            17 => {
                let st = w.store(inp);
                let n = name(inp);
                let (a, b) = (w.data(inp), w.data(inp));
                let iterations = 2 + inp.u32() % 8;
                let version = inp.u32() % 4;
                let mut out = sentinel();
                let s = rk_store_safety_number(
                    st.ptr,
                    name_ptr(&n),
                    a.as_ptr(),
                    a.len(),
                    b.as_ptr(),
                    b.len(),
                    iterations,
                    version,
                    &mut out,
                );
                finish(s, !st.real, &[], w);
                if s == rk_status::Ok {
                    w.fingerprints.add(out, rk_fingerprint_free);
                } else {
                    assert!(out == sentinel());
                }
            }
            18 => {
                let f = w.handle(&w.fingerprints, inp);
                let cap = usize::from(inp.u8() % 64);
                let mut buf = vec![0xAAu8; cap];
                let s = rk_fingerprint_displayable(f.ptr, buf.as_mut_ptr().cast(), cap);
                finish(s, !f.real, &[], w);
                if s == rk_status::Ok {
                    assert!(cap >= 61 && buf[60] == 0);
                    assert!(buf[..60].iter().all(u8::is_ascii_digit));
                } else {
                    assert!(buf.iter().all(|&c| c == 0xAA));
                }
            }
            19 => {
                let f = w.handle(&w.fingerprints, inp);
                let mut out = SENTINEL_BYTES;
                let s = match inp.u8() % 8 {
                    0 => rk_fingerprint_qr_text(f.ptr, &mut out),
                    1 => rk_fingerprint_qr_svg(f.ptr, &mut out),
                    _ => rk_fingerprint_scannable(f.ptr, &mut out),
                };
                finish(s, !f.real, &[], w);
                if s == rk_status::Ok {
                    let v = take_bytes(out);
                    w.keep(v);
                }
            }
            20 => {
                let f = w.handle(&w.fingerprints, inp);
                let theirs = w.data(inp);
                let mut m = true;
                let s = rk_fingerprint_compare(f.ptr, theirs.as_ptr(), theirs.len(), &mut m);
                finish(s, !f.real, &[], w);
            }
            21 => {
                let (a, b) = (w.data(inp), w.data(inp));
                let ka = w.handle(&w.keys, inp);
                let kb = w.handle(&w.keys, inp);
                let (version, iterations) = (inp.u32() % 4, 2 + inp.u32() % 8);
                let mut out = sentinel();
                let s = rk_fingerprint_new(
                    version,
                    iterations,
                    a.as_ptr(),
                    a.len(),
                    ka.ptr,
                    b.as_ptr(),
                    b.len(),
                    kb.ptr,
                    &mut out,
                );
                finish(s, !ka.real || !kb.real, &[], w);
                if s == rk_status::Ok {
                    w.fingerprints.add(out, rk_fingerprint_free);
                }
            }
            22 => {
                let v = w.data(inp);
                let mut out = sentinel();
                let s = rk_public_key_deserialize(v.as_ptr(), v.len(), &mut out);
                finish(s, false, &[], w);
                if s == rk_status::Ok {
                    w.keys.add(out, rk_public_key_free);
                }
            }
            23 => {
                let k = w.handle(&w.keys, inp);
                let k2 = w.handle(&w.keys, inp);
                let cap = usize::from(inp.u8() % 40);
                let mut buf = vec![0xAAu8; cap];
                let s = rk_public_key_serialize(k.ptr, buf.as_mut_ptr(), cap);
                finish(s, !k.real, &[], w);
                if s == rk_status::Ok {
                    w.keep(buf[..33].to_vec());
                } else {
                    assert!(buf.iter().all(|&c| c == 0xAA));
                }
                let mut eq = false;
                let s = rk_public_key_equals(k.ptr, k2.ptr, &mut eq);
                finish(s, !k.real || !k2.real, &[], w);
                let (msg, sig) = (w.data(inp), w.data(inp));
                let mut valid = true;
                let s = rk_public_key_verify_signature(
                    k.ptr,
                    msg.as_ptr(),
                    msg.len(),
                    sig.as_ptr(),
                    sig.len(),
                    &mut valid,
                );
                finish(s, !k.real, &[], w);
            }
            24 => {
                let mut out = sentinel();
                let s = if inp.u8() & 1 == 0 {
                    let v = w.data(inp);
                    rk_identity_keypair_deserialize(v.as_ptr(), v.len(), &mut out)
                } else {
                    rk_identity_keypair_generate(&mut out)
                };
                finish(s, false, &[], w);
                if s == rk_status::Ok {
                    w.pairs.add(out, rk_identity_keypair_free);
                }
            }
            25 => {
                let p = w.handle(&w.pairs, inp);
                match inp.u8() % 3 {
                    0 => {
                        let mut out = SENTINEL_BYTES;
                        let s = rk_identity_keypair_serialize(p.ptr, &mut out);
                        finish(s, !p.real, &[], w);
                        if s == rk_status::Ok {
                            let v = take_bytes(out);
                            assert!(v.len() == 32);
                            w.keep(v);
                        }
                    }
                    1 => {
                        let mut out = sentinel();
                        let s = rk_identity_keypair_public_key(p.ptr, &mut out);
                        finish(s, !p.real, &[], w);
                        if s == rk_status::Ok {
                            w.keys.add(out, rk_public_key_free);
                        }
                    }
                    _ => {
                        let msg = w.data(inp);
                        let cap = usize::from(inp.u8() % 80);
                        let mut sig = vec![0xAAu8; cap];
                        let s = rk_identity_keypair_sign(
                            p.ptr,
                            msg.as_ptr(),
                            msg.len(),
                            sig.as_mut_ptr(),
                            cap,
                        );
                        finish(s, !p.real, &[], w);
                        if s == rk_status::Ok {
                            w.keep(sig[..64].to_vec());
                        } else {
                            assert!(sig.iter().all(|&c| c == 0xAA));
                        }
                    }
                }
            }
            26 => {
                let (reg, dev, spk_id, pk_id) = (inp.u32(), inp.u32(), inp.u32(), inp.u32());
                let ik = w.handle(&w.keys, inp);
                let spk = w.handle(&w.keys, inp);
                let pk = w.handle(&w.keys, inp);
                let sig = w.data(inp);
                let mut out = sentinel();
                let s = rk_bundle_new(
                    reg,
                    dev,
                    ik.ptr,
                    spk_id,
                    spk.ptr,
                    sig.as_ptr(),
                    sig.len(),
                    pk_id,
                    pk.ptr,
                    &mut out,
                );
                finish(s, !ik.real || !spk.real, &[], w);
                if s == rk_status::Ok {
                    w.bundles.add(out, rk_bundle_free);
                }
            }
            27 => {
                let v = w.data(inp);
                let mut out = sentinel();
                let s = rk_bundle_deserialize(v.as_ptr(), v.len(), &mut out);
                finish(s, false, &[], w);
                if s == rk_status::Ok {
                    w.bundles.add(out, rk_bundle_free);
                } else {
                    assert!(out == sentinel());
                }
            }
            28 => {
                let b = w.handle(&w.bundles, inp);
                let bad = !b.real;
                let mut id = 5u32;
                match inp.u8() % 8 {
                    0 => {
                        let mut out = SENTINEL_BYTES;
                        let s = rk_bundle_serialize(b.ptr, &mut out);
                        finish(s, bad, &[], w);
                        if s == rk_status::Ok {
                            let v = take_bytes(out);
                            w.keep(v);
                        }
                    }
                    1 => finish(rk_bundle_registration_id(b.ptr, &mut id), bad, &[], w),
                    2 => finish(rk_bundle_device_id(b.ptr, &mut id), bad, &[], w),
                    3 => finish(rk_bundle_signed_prekey_id(b.ptr, &mut id), bad, &[], w),
                    4 | 5 => {
                        let mut out = sentinel();
                        let s = if inp.u8() & 1 == 0 {
                            rk_bundle_identity_key(b.ptr, &mut out)
                        } else {
                            rk_bundle_signed_prekey(b.ptr, &mut out)
                        };
                        finish(s, bad, &[], w);
                        if s == rk_status::Ok {
                            w.keys.add(out, rk_public_key_free);
                        }
                    }
                    6 => {
                        let cap = usize::from(inp.u8() % 80);
                        let mut sig = vec![0xAAu8; cap];
                        let s = rk_bundle_signed_prekey_signature(b.ptr, sig.as_mut_ptr(), cap);
                        finish(s, bad, &[], w);
                        if s == rk_status::Ok {
                            w.keep(sig[..64].to_vec());
                        }
                    }
                    _ => {
                        let mut has = false;
                        let mut out = sentinel();
                        let s = rk_bundle_prekey(b.ptr, &mut has, &mut id, &mut out);
                        finish(s, bad, &[], w);
                        if s == rk_status::Ok && has {
                            w.keys.add(out, rk_public_key_free);
                        }
                        let mut valid = false;
                        let s = rk_bundle_verify_signature(b.ptr, &mut valid);
                        finish(s, bad, &[], w);
                    }
                }
            }
            29 => {
                // Frees: a handle of some table, NULL, or (a no-op) a
                // handle of another type.
                let b = inp.u8();
                let i = usize::from(inp.u8());
                match b % 6 {
                    0 if !w.stores.0.is_empty() => {
                        let h = w.stores.0.remove(i % w.stores.0.len());
                        rk_store_free(h);
                    }
                    1 if !w.keys.0.is_empty() => {
                        let h = w.keys.0.remove(i % w.keys.0.len());
                        rk_public_key_free(h);
                    }
                    2 if !w.bundles.0.is_empty() => {
                        let h = w.bundles.0.remove(i % w.bundles.0.len());
                        rk_bundle_free(h);
                    }
                    3 if !w.fingerprints.0.is_empty() => {
                        let h = w.fingerprints.0.remove(i % w.fingerprints.0.len());
                        rk_fingerprint_free(h);
                    }
                    4 if !w.pairs.0.is_empty() => {
                        let h = w.pairs.0.remove(i % w.pairs.0.len());
                        rk_identity_keypair_free(h);
                    }
                    _ => {
                        rk_store_free(null_mut());
                        rk_bytes_free(rk_bytes {
                            ptr: null_mut(),
                            len: 0,
                        });
                        // Wrong-type frees are no-ops: the handle stays usable.
                        if let Some(&st) = w.stores.0.first() {
                            rk_bundle_free(st.cast());
                            rk_public_key_free(st.cast());
                            let mut id = 0;
                            let s = rk_store_registration_id(st, &mut id);
                            assert!(s == rk_status::Ok, "store unusable after a wrong-type free");
                        }
                        if let Some(&k) = w.keys.0.first() {
                            rk_store_free(k.cast());
                            let mut eq = false;
                            let s = rk_public_key_equals(k, k, &mut eq);
                            assert!(s == rk_status::Ok && eq);
                        }
                    }
                }
            }
            30 => {
                let st = w.store(inp);
                let mut id = 7u32;
                let (s1, s2) = (
                    rk_store_registration_id(st.ptr, &mut id),
                    rk_store_device_id(st.ptr, &mut id),
                );
                finish(s1, !st.real, &[], w);
                finish(s2, !st.real, &[], w);
                let mut k = sentinel();
                let s = rk_store_identity_key(st.ptr, &mut k);
                finish(s, !st.real, &[], w);
                if s == rk_status::Ok {
                    w.keys.add(k, rk_public_key_free);
                }
                let mut p = sentinel();
                let s = rk_store_identity_keypair(st.ptr, &mut p);
                finish(s, !st.real, &[], w);
                if s == rk_status::Ok {
                    w.pairs.add(p, rk_identity_keypair_free);
                }
            }
            32 => {
                let st = w.store(inp);
                if inp.u8() & 1 == 0 {
                    let (a, b) = (inp.u32() % 3, inp.u32() % 3);
                    let before = w.saved(&st);
                    let s = rk_store_set_policy(st.ptr, a, b);
                    finish(s, !st.real || a > 1 || b > 1, &[(before, &st)], w);
                } else {
                    let null_out = inp.u8() == 0xFF;
                    let (mut a, mut b) = (7u32, 7u32);
                    let s =
                        rk_store_policy(st.ptr, if null_out { null_mut() } else { &mut a }, &mut b);
                    finish(s, !st.real || null_out, &[], w);
                    if s == rk_status::Ok {
                        assert!(a <= 1 && b <= 1);
                    } else {
                        assert!(a == 7 && b == 7, "output written on failure");
                    }
                }
            }
            33 => {
                let st = w.store(inp);
                let count = inp.u32() % 4 + if inp.u8() == 0xFF { 1_000 } else { 0 };
                let ts = u64::from(inp.u32());
                let null_out = inp.u8() == 0xFE;
                let before = w.saved(&st);
                let mut out = SENTINEL_BYTES;
                let s = rk_store_generate_kyber_prekeys(
                    st.ptr,
                    count,
                    ts,
                    if null_out { null_mut() } else { &mut out },
                );
                finish(
                    s,
                    !st.real || null_out || count > 1_000,
                    &[(before, &st)],
                    w,
                );
                if s == rk_status::Ok {
                    let v = take_bytes(out);
                    assert!(v.len() == count as usize * RECORD_LEN);
                    if !v.is_empty() {
                        w.keep(v);
                    }
                } else {
                    assert!(out.ptr == SENTINEL_BYTES.ptr && out.len == SENTINEL_BYTES.len);
                }
            }
            34 => {
                let st = w.store(inp);
                match inp.u8() % 3 {
                    0 => {
                        let ts = u64::from(inp.u32());
                        let before = w.saved(&st);
                        let mut id = 0xABCD_u32;
                        let s = rk_store_generate_last_resort_kyber_prekey(st.ptr, ts, &mut id);
                        finish(s, !st.real, &[(before, &st)], w);
                        if s != rk_status::Ok {
                            assert!(id == 0xABCD, "output written on failure");
                        }
                    }
                    1 => {
                        let mut n = 77usize;
                        let s = rk_store_kyber_prekey_count(st.ptr, &mut n);
                        finish(s, !st.real, &[], w);
                        if s != rk_status::Ok {
                            assert!(n == 77, "output written on failure");
                        }
                    }
                    _ => {
                        let (mut has, mut id) = (true, 77u32);
                        let s = rk_store_last_resort_kyber_prekey_id(st.ptr, &mut has, &mut id);
                        finish(s, !st.real, &[], w);
                        if s != rk_status::Ok {
                            assert!(has && id == 77, "output written on failure");
                        }
                    }
                }
            }
            35 => {
                let st = w.store(inp);
                let id = kyber_id(w, &st, inp);
                let b = inp.u8();
                let cap = if b & 1 == 0 {
                    RECORD_LEN
                } else {
                    usize::from(b) * 7
                };
                let mut buf = vec![0xAAu8; cap];
                let s = rk_store_kyber_prekey(st.ptr, id, buf.as_mut_ptr(), cap);
                finish(s, !st.real, &[], w);
                if s == rk_status::Ok {
                    assert!(buf[..4] == id.to_be_bytes() && buf[4] == 0x08);
                    buf.truncate(RECORD_LEN);
                    w.keep(buf);
                } else {
                    assert!(buf.iter().all(|&c| c == 0xAA), "output written on failure");
                }
            }
            36 => {
                let st = w.store(inp);
                let id = kyber_id(w, &st, inp);
                let before = w.saved(&st);
                let s = rk_store_remove_kyber_prekey(st.ptr, id);
                finish(s, !st.real, &[(before, &st)], w);
            }
            37 => {
                let st = w.store(inp);
                let (flag, kind) = (inp.u32() % 3, inp.u32() % 4);
                let ts = u64::from(inp.u32());
                let before = w.saved(&st);
                let mut out = sentinel();
                let s = rk_store_create_bundle_with(st.ptr, flag, kind, ts, &mut out);
                finish(s, !st.real || flag > 1 || kind > 2, &[(before, &st)], w);
                if s == rk_status::Ok {
                    let mut has = kind == 0;
                    let k = rk_bundle_has_kyber_prekey(out, &mut has);
                    assert!(k == rk_status::Ok && has == (kind > 0));
                    w.bundles.add(out, rk_bundle_free);
                } else {
                    assert!(out == sentinel());
                }
            }
            38 => {
                let st = w.store(inp);
                let n = name(inp);
                let dev = inp.u32();
                let mut v = 77u32;
                let s = rk_store_session_version(st.ptr, name_ptr(&n), dev, &mut v);
                finish(s, !st.real || n.is_none(), &[], w);
                if s == rk_status::Ok {
                    assert!(v == 3 || v == 4, "session version {v}");
                } else {
                    assert!(v == 77, "output written on failure");
                }
            }
            39 => {
                let b = w.handle(&w.bundles, inp);
                let bad = !b.real;
                match inp.u8() % 5 {
                    0 => {
                        let mut has = 7u8;
                        let has_p = std::ptr::addr_of_mut!(has).cast::<bool>();
                        let s = rk_bundle_has_kyber_prekey(b.ptr, has_p);
                        finish(s, bad, &[], w);
                        if s == rk_status::Ok {
                            assert!(has <= 1);
                        } else {
                            assert!(has == 7, "output written on failure");
                        }
                    }
                    1 => {
                        let mut id = 0u32;
                        let s = rk_bundle_kyber_prekey_id(b.ptr, &mut id);
                        finish(s, bad, &[], w);
                        if s != rk_status::Ok {
                            assert!(id == 0, "output written on failure");
                        }
                    }
                    2 => {
                        let c = inp.u8();
                        let cap = if c & 1 == 0 {
                            KEM_LEN
                        } else {
                            usize::from(c) * 7
                        };
                        let mut buf = vec![0xAAu8; cap];
                        let s = rk_bundle_kyber_prekey(b.ptr, buf.as_mut_ptr(), cap);
                        finish(s, bad, &[], w);
                        if s == rk_status::Ok {
                            assert!(buf[0] == 0x08);
                        } else {
                            assert!(buf.iter().all(|&c| c == 0xAA), "output written on failure");
                        }
                    }
                    3 => {
                        let cap = usize::from(inp.u8() % 80);
                        let mut sig = vec![0xAAu8; cap];
                        let s = rk_bundle_kyber_prekey_signature(b.ptr, sig.as_mut_ptr(), cap);
                        finish(s, bad, &[], w);
                        if s != rk_status::Ok {
                            assert!(sig.iter().all(|&c| c == 0xAA), "output written on failure");
                        }
                    }
                    _ => {
                        // A bundle with a Kyber prekey from parts: the other
                        // parts from this bundle if it is real, else keys
                        // from the table.
                        let (reg, dev, spk_id, pk_id) =
                            (inp.u32(), inp.u32(), inp.u32(), inp.u32());
                        let ik = w.handle(&w.keys, inp);
                        let spk = w.handle(&w.keys, inp);
                        let pk = w.handle(&w.keys, inp);
                        let sig = w.data(inp);
                        let (kid, key, ksig) = kyber_parts(w, inp);
                        let null_key = inp.u8() == 0xFF;
                        let (kp, kl) = bytes_arg(&key, null_key);
                        let mut out = sentinel();
                        let s = rk_bundle_new_with_kyber_prekey(
                            reg,
                            dev,
                            ik.ptr,
                            spk_id,
                            spk.ptr,
                            sig.as_ptr(),
                            sig.len(),
                            pk_id,
                            pk.ptr,
                            kid,
                            kp,
                            kl,
                            ksig.as_ptr(),
                            ksig.len(),
                            &mut out,
                        );
                        finish(s, !ik.real || !spk.real || (null_key && kl > 0), &[], w);
                        if s == rk_status::Ok {
                            assert!(key.len() == KEM_LEN && key[0] == 0x08);
                            w.bundles.add(out, rk_bundle_free);
                        } else {
                            assert!(out == sentinel());
                        }
                    }
                }
            }
            _ => {
                let code = inp.u32();
                assert!(!rk_status_str(code).is_null());
                assert!(!rk_version().is_null());
                let _ = rk_abi_version();
                let cap = usize::from(inp.u8() % 8);
                let mut buf = vec![0u8; cap];
                let mut len = 0usize;
                let s = rk_last_error_message(
                    if cap == 0 {
                        null_mut()
                    } else {
                        buf.as_mut_ptr().cast()
                    },
                    cap,
                    &mut len,
                );
                assert!(matches!(s, rk_status::Ok | rk_status::BufferTooSmall));
            }
        }
    }
}
