//! The extern fns called from Rust: panic guard (through a test hook), the
//! NULL / length / wrong-handle matrix, last-error rules, status numbers and
//! the generated header's agreement with them.

use std::ffi::{c_char, CStr};
use std::ptr::{null, null_mut};

use super::bundle::*;
use super::bytes::*;
use super::fingerprint::*;
use super::guard::guard;
use super::keys::*;
use super::status::*;
use super::store::*;
use super::*;

fn last_error() -> String {
    let mut buf = [0 as c_char; 512];
    let mut len = 0usize;
    let s = unsafe { rk_last_error_message(buf.as_mut_ptr(), buf.len(), &mut len) };
    assert_eq!(s, rk_status::Ok);
    let msg = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(msg.len(), len);
    msg
}

#[track_caller]
fn ok(s: rk_status) {
    assert_eq!(s, rk_status::Ok, "{}", last_error());
}

fn new_store(device: u32) -> *mut rk_store {
    let mut s = null_mut();
    ok(unsafe { rk_store_new(device, &mut s) });
    s
}

fn save(store: *const rk_store) -> Vec<u8> {
    let mut b = rk_bytes {
        ptr: null_mut(),
        len: 0,
    };
    ok(unsafe { rk_store_save(store, &mut b) });
    let v = unsafe { std::slice::from_raw_parts(b.ptr, b.len) }.to_vec();
    unsafe { rk_bytes_free(b) };
    v
}

fn take(b: rk_bytes) -> Vec<u8> {
    let v = unsafe { std::slice::from_raw_parts(b.ptr, b.len) }.to_vec();
    unsafe { rk_bytes_free(b) };
    v
}

const EMPTY: rk_bytes = rk_bytes {
    ptr: std::ptr::dangling_mut::<u8>(),
    len: 77,
};

/// Alice (device 1) has a session with bob (device 2); returns both and
/// a first prekey message from Alice.
fn pair() -> (*mut rk_store, *mut rk_store, Vec<u8>) {
    let alice = new_store(1);
    let bob = new_store(2);
    let mut bundle = null_mut();
    ok(unsafe { rk_store_create_bundle(bob, 1, 1000, &mut bundle) });
    ok(unsafe { rk_store_process_bundle(alice, c"bob".as_ptr(), 2, bundle) });
    unsafe { rk_bundle_free(bundle) };
    let mut t = 0u32;
    let mut ct = EMPTY;
    ok(unsafe {
        rk_store_encrypt(
            alice,
            c"bob".as_ptr(),
            2,
            b"hi".as_ptr(),
            2,
            &mut t,
            &mut ct,
        )
    });
    assert_eq!(t, RK_MESSAGE_TYPE_PREKEY);
    (alice, bob, take(ct))
}

#[test]
fn status_numbers_are_stable() {
    let pinned: [(rk_status, u32); 30] = [
        (rk_status::Ok, 0),
        (rk_status::NullPointer, 100),
        (rk_status::InvalidArgument, 101),
        (rk_status::BufferTooSmall, 102),
        (rk_status::InvalidHandle, 103),
        (rk_status::InvalidKey, 200),
        (rk_status::InvalidSignature, 201),
        (rk_status::InvalidMessage, 202),
        (rk_status::DuplicateMessage, 203),
        (rk_status::InvalidBundle, 204),
        (rk_status::InvalidFingerprint, 205),
        (rk_status::FingerprintVersionMismatch, 206),
        (rk_status::LimitExceeded, 207),
        (rk_status::VersionRefused, 208),
        (rk_status::SpqrRequired, 209),
        (rk_status::UntrustedIdentity, 300),
        (rk_status::NoSession, 301),
        (rk_status::MissingPrekey, 302),
        (rk_status::NoTrustedIdentity, 303),
        (rk_status::InvalidState, 400),
        (rk_status::WrongPickleKey, 401),
        (rk_status::UnsupportedStateVersion, 402),
        (rk_status::WrongStoreKey, 403),
        (rk_status::StoreCorrupt, 404),
        (rk_status::StoreBusy, 405),
        (rk_status::Conflict, 406),
        (rk_status::Storage, 407),
        (rk_status::Internal, 900),
        (rk_status::Panic, 901),
        (rk_status::Poisoned, 902),
    ];
    assert_eq!(rk_status::all().len(), pinned.len());
    for (s, n) in pinned {
        assert_eq!(s as u32, n);
        assert_eq!(rk_status::from_u32(n), Some(s));
        let text = unsafe { CStr::from_ptr(rk_status_str(n)) }
            .to_str()
            .unwrap();
        assert!(!text.is_empty() && text != "unknown status", "{n}");
    }
    for n in [1, 99, 104, 199, 210, 304, 408, 899, 903, u32::MAX] {
        let text = unsafe { CStr::from_ptr(rk_status_str(n)) }
            .to_str()
            .unwrap();
        assert_eq!(text, "unknown status");
    }
}

/// The committed header names every status with its number, and its version
/// macros are Cargo.toml's.
#[test]
fn header_agrees_with_the_code() {
    let header =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/ratchetkit.h"))
            .unwrap();
    let in_header: Vec<(String, u32)> = header
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_end_matches(',');
            let (name, num) = l.split_once(" = ")?;
            name.starts_with("RK_STATUS_")
                .then(|| (name.to_owned(), num.parse().unwrap()))
        })
        .collect();
    assert_eq!(in_header.len(), rk_status::all().len());
    for s in rk_status::all() {
        assert!(
            in_header.iter().any(|(_, n)| *n == s as u32),
            "{s:?} missing from the header"
        );
    }
    for (name, value) in [
        ("RK_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("RK_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("RK_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
        (
            "RK_VERSION_STRING",
            &format!("\"{}\"", env!("CARGO_PKG_VERSION")),
        ),
        ("RK_ABI_VERSION", &RK_ABI_VERSION.to_string()),
    ] {
        let line = format!("#define {name} {value}");
        assert!(header.lines().any(|l| l == line), "missing: {line}");
    }
    // Every constant of the C API, as cbindgen writes it.
    let constants = [
        ("RK_PUBLIC_KEY_LEN", RK_PUBLIC_KEY_LEN as u64),
        ("RK_PRIVATE_KEY_LEN", RK_PRIVATE_KEY_LEN as u64),
        ("RK_SIGNATURE_LEN", RK_SIGNATURE_LEN as u64),
        ("RK_SAFETY_NUMBER_LEN", RK_SAFETY_NUMBER_LEN as u64),
        ("RK_PICKLE_KEY_LEN", RK_PICKLE_KEY_LEN as u64),
        ("RK_PREKEY_RECORD_LEN", RK_PREKEY_RECORD_LEN as u64),
        (
            "RK_MAX_PREKEYS_PER_CALL",
            u64::from(RK_MAX_PREKEYS_PER_CALL),
        ),
        ("RK_KEM_PUBLIC_KEY_LEN", RK_KEM_PUBLIC_KEY_LEN as u64),
        (
            "RK_KYBER_PREKEY_RECORD_LEN",
            RK_KYBER_PREKEY_RECORD_LEN as u64,
        ),
        (
            "RK_MAX_KYBER_PREKEYS_PER_CALL",
            u64::from(RK_MAX_KYBER_PREKEYS_PER_CALL),
        ),
        ("RK_KYBER_PREKEY_NONE", u64::from(RK_KYBER_PREKEY_NONE)),
        (
            "RK_KYBER_PREKEY_ONE_TIME",
            u64::from(RK_KYBER_PREKEY_ONE_TIME),
        ),
        (
            "RK_KYBER_PREKEY_LAST_RESORT",
            u64::from(RK_KYBER_PREKEY_LAST_RESORT),
        ),
        (
            "RK_SESSION_VERSION_X3DH",
            u64::from(RK_SESSION_VERSION_X3DH),
        ),
        (
            "RK_SESSION_VERSION_PQXDH",
            u64::from(RK_SESSION_VERSION_PQXDH),
        ),
        (
            "RK_MESSAGE_TYPE_WHISPER",
            u64::from(RK_MESSAGE_TYPE_WHISPER),
        ),
        ("RK_MESSAGE_TYPE_PREKEY", u64::from(RK_MESSAGE_TYPE_PREKEY)),
        ("RK_DEFAULT_ITERATIONS", u64::from(RK_DEFAULT_ITERATIONS)),
        ("RK_FINGERPRINT_VERSION", u64::from(RK_FINGERPRINT_VERSION)),
        ("RK_STORE_KEY_LEN", RK_STORE_KEY_LEN as u64),
        ("RK_DURABILITY_FULL", u64::from(RK_DURABILITY_FULL)),
        ("RK_DURABILITY_NORMAL", u64::from(RK_DURABILITY_NORMAL)),
        (
            "RK_SPQR_POLICY_REQUIRED",
            u64::from(RK_SPQR_POLICY_REQUIRED),
        ),
        ("RK_SPQR_POLICY_OFFERED", u64::from(RK_SPQR_POLICY_OFFERED)),
        ("RK_SPQR_POLICY_OFF", u64::from(RK_SPQR_POLICY_OFF)),
    ];
    for (name, value) in constants {
        let line = format!("#define {name} {value}");
        assert!(header.lines().any(|l| l == line), "missing: {line}");
    }
    // Constants the list above cannot hold (not a u64 or not a number).
    assert_eq!(RK_NO_AGE, u64::MAX);
    assert_eq!(RK_COUNT_UNKNOWN, -1);
    let others = [
        format!("#define RK_MAX_UPLOAD_BATCH {RK_MAX_UPLOAD_BATCH}"),
        "#define RK_NO_AGE UINT64_MAX".to_string(),
        "#define RK_COUNT_UNKNOWN -1".to_string(),
    ];
    for line in &others {
        assert!(header.lines().any(|l| l == line), "missing: {line}");
    }
    // ...and no other: a new constant is added to the list above.
    let defined: Vec<&str> = header
        .lines()
        .filter_map(|l| l.strip_prefix("#define RK_"))
        .filter(|l| {
            !l.starts_with("VERSION_") && !l.starts_with("MUST_USE") && !l.starts_with("ABI")
        })
        .collect();
    assert_eq!(defined.len(), constants.len() + others.len(), "{defined:?}");
    let v = unsafe { CStr::from_ptr(rk_version()) }.to_str().unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
    assert_eq!(rk_abi_version(), RK_ABI_VERSION);
}

#[test]
fn guard_turns_a_panic_into_a_status() {
    #[allow(clippy::panic)]
    let s = guard(|| panic!("boom {}", 42));
    assert_eq!(s, rk_status::Panic);
    assert!(last_error().contains("panic caught"), "{}", last_error());
    assert!(last_error().contains("boom 42"));
    // The next successful call clears it.
    let mut k = null_mut();
    ok(unsafe { rk_identity_keypair_generate(&mut k) });
    assert_eq!(last_error(), "");
    unsafe { rk_identity_keypair_free(k) };
}

#[test]
fn panic_inside_a_store_call_poisons_only_that_store() {
    let (alice, bob, _) = pair();
    let before = save(alice);
    // A panic under the exclusive lock (a call that changes the store).
    PANIC_WHILE_LOCKED.with(|p| p.set(true));
    let mut has = false;
    let s = unsafe { rk_store_remove_signed_prekey(alice, 4242) };
    assert_eq!(s, rk_status::Panic);
    assert!(last_error().contains("test hook"));
    // Later calls report the poisoned lock instead of panicking.
    let s = unsafe { rk_store_has_session(alice, c"bob".as_ptr(), 2, &mut has) };
    assert_eq!(s, rk_status::Poisoned);
    let mut b = EMPTY;
    assert_eq!(unsafe { rk_store_save(alice, &mut b) }, rk_status::Poisoned);
    assert_eq!(b.len, EMPTY.len, "output written on failure");
    // Other stores are unaffected; the saved state restores.
    ok(unsafe { rk_store_has_session(bob, c"alice".as_ptr(), 1, &mut has) });
    let mut restored = null_mut();
    ok(unsafe { rk_store_restore(before.as_ptr(), before.len(), &mut restored) });
    ok(unsafe { rk_store_has_session(restored, c"bob".as_ptr(), 2, &mut has) });
    assert!(has);
    unsafe {
        rk_store_free(alice);
        rk_store_free(bob);
        rk_store_free(restored);
    }
}

#[test]
fn free_functions_accept_null() {
    unsafe {
        rk_store_free(null_mut());
        rk_bundle_free(null_mut());
        rk_public_key_free(null_mut());
        rk_identity_keypair_free(null_mut());
        rk_fingerprint_free(null_mut());
        rk_bytes_free(rk_bytes {
            ptr: null_mut(),
            len: 0,
        });
        rk_bytes_free(rk_bytes {
            ptr: null_mut(),
            len: 5,
        });
    }
}

#[test]
fn last_error_rules() {
    let mut len = 99usize;
    // Fails: unknown flag value.
    let store = new_store(1);
    let mut b = null_mut();
    assert_eq!(
        unsafe { rk_store_create_bundle(store, 2, 0, &mut b) },
        rk_status::InvalidArgument
    );
    assert!(b.is_null());
    // Length query with NULL/0.
    assert_eq!(
        unsafe { rk_last_error_message(null_mut(), 0, &mut len) },
        rk_status::BufferTooSmall
    );
    let msg = last_error();
    assert_eq!(len, msg.len());
    assert!(msg.contains("with_one_time_prekey"), "{msg}");
    // Too small by one (no room for the NUL).
    let mut small = vec![0 as c_char; msg.len()];
    assert_eq!(
        unsafe { rk_last_error_message(small.as_mut_ptr(), small.len(), &mut len) },
        rk_status::BufferTooSmall
    );
    // Reading did not clear it; NULL len_out and NULL buf with cap are refused.
    assert_eq!(last_error(), msg);
    assert_eq!(
        unsafe { rk_last_error_message(small.as_mut_ptr(), small.len(), null_mut()) },
        rk_status::NullPointer
    );
    assert_eq!(
        unsafe { rk_last_error_message(null_mut(), 10, &mut len) },
        rk_status::NullPointer
    );
    // Per thread.
    std::thread::spawn(|| assert_eq!(last_error(), ""))
        .join()
        .unwrap();
    // A success clears it.
    let mut id = 0;
    ok(unsafe { rk_store_device_id(store, &mut id) });
    assert_eq!(last_error(), "");
    unsafe { rk_store_free(store) };
}

#[test]
fn null_and_length_matrix() {
    let (alice, bob, first) = pair();
    let alice_before = save(alice);
    let bob_before = save(bob);
    let name = c"bob".as_ptr();
    let mut t = 7u32;
    let mut out = EMPTY;
    let np = rk_status::NullPointer;
    unsafe {
        // NULL store / name / out-pointers / bytes with a length.
        assert_eq!(
            rk_store_encrypt(null_mut(), name, 2, b"x".as_ptr(), 1, &mut t, &mut out),
            np
        );
        assert_eq!(
            rk_store_encrypt(alice, null(), 2, b"x".as_ptr(), 1, &mut t, &mut out),
            np
        );
        assert_eq!(
            rk_store_encrypt(alice, name, 2, null(), 1, &mut t, &mut out),
            np
        );
        assert_eq!(
            rk_store_encrypt(alice, name, 2, b"x".as_ptr(), 1, null_mut(), &mut out),
            np
        );
        assert_eq!(
            rk_store_encrypt(alice, name, 2, b"x".as_ptr(), 1, &mut t, null_mut()),
            np
        );
        assert_eq!((t, out.len), (7, EMPTY.len), "outputs written on failure");
        // Not UTF-8.
        assert_eq!(
            rk_store_encrypt(alice, c"\xff".as_ptr(), 2, null(), 0, &mut t, &mut out),
            rk_status::InvalidArgument
        );
        // Decrypt: NULL, zero length, garbage, unknown type.
        let an = c"alice".as_ptr();
        assert_eq!(rk_store_decrypt(bob, an, 1, 3, null(), 5, &mut out), np);
        assert_eq!(
            rk_store_decrypt(bob, an, 1, 3, null(), 0, &mut out),
            rk_status::InvalidMessage
        );
        assert_eq!(
            rk_store_decrypt(bob, an, 1, 3, b"garbage".as_ptr(), 7, &mut out),
            rk_status::InvalidMessage
        );
        assert_eq!(
            rk_store_decrypt(bob, an, 1, 4, first.as_ptr(), first.len(), &mut out),
            rk_status::InvalidArgument
        );
        assert_eq!(
            rk_store_decrypt_whisper_message(bob, an, 1, first.as_ptr(), first.len(), &mut out),
            rk_status::InvalidMessage
        );
        // Every truncation of the first message fails and changes nothing.
        for n in 0..first.len() {
            assert_ne!(
                rk_store_decrypt_prekey_message(bob, an, 1, first.as_ptr(), n, &mut out),
                rk_status::Ok
            );
        }
        assert_eq!(out.len, EMPTY.len, "output written on failure");
        assert_eq!(save(bob), bob_before);
        assert_eq!(save(alice), alice_before);
        // Then the real message decrypts.
        ok(rk_store_decrypt(
            bob,
            an,
            1,
            3,
            first.as_ptr(),
            first.len(),
            &mut out,
        ));
        assert_eq!(take(out), b"hi");
        // ...once.
        let mut again = EMPTY;
        assert_eq!(
            rk_store_decrypt(bob, an, 1, 3, first.as_ptr(), first.len(), &mut again),
            rk_status::DuplicateMessage
        );
        // A whisper reply: every flipped byte (all are authenticated) and
        // every truncation fails and leaves Alice unchanged.
        let mut reply = EMPTY;
        ok(rk_store_encrypt(
            bob,
            an,
            1,
            b"yo".as_ptr(),
            2,
            &mut t,
            &mut reply,
        ));
        assert_eq!(t, RK_MESSAGE_TYPE_WHISPER);
        let reply = take(reply);
        let alice_before = save(alice);
        let mut out = EMPTY;
        for i in 0..reply.len() {
            let mut m = reply.clone();
            m[i] ^= 0x01;
            assert_ne!(
                rk_store_decrypt(alice, name, 2, 2, m.as_ptr(), m.len(), &mut out),
                rk_status::Ok,
                "flipped byte {i}"
            );
            assert_ne!(
                rk_store_decrypt(alice, name, 2, 2, reply.as_ptr(), i, &mut out),
                rk_status::Ok
            );
        }
        assert_eq!(out.len, EMPTY.len, "output written on failure");
        assert_eq!(save(alice), alice_before);
        ok(rk_store_decrypt_whisper_message(
            alice,
            name,
            2,
            reply.as_ptr(),
            reply.len(),
            &mut out,
        ));
        assert_eq!(take(out), b"yo");
        let alice_before = save(alice);

        // Keys: lengths and types.
        let mut key = null_mut();
        let mut k33 = [5u8; 33];
        assert_eq!(
            rk_public_key_deserialize(k33.as_ptr(), 32, &mut key),
            rk_status::InvalidKey
        );
        assert_eq!(
            rk_public_key_deserialize(null(), 0, &mut key),
            rk_status::InvalidKey
        );
        assert_eq!(rk_public_key_deserialize(null(), 33, &mut key), np);
        k33[0] = 6;
        assert_eq!(
            rk_public_key_deserialize(k33.as_ptr(), 33, &mut key),
            rk_status::InvalidKey
        );
        assert!(last_error().contains("0x06"), "{}", last_error());
        k33[0] = 5;
        assert_eq!(rk_public_key_deserialize(k33.as_ptr(), 33, null_mut()), np);
        ok(rk_public_key_deserialize(k33.as_ptr(), 33, &mut key));
        let mut buf = [0u8; 33];
        assert_eq!(
            rk_public_key_serialize(key, buf.as_mut_ptr(), 32),
            rk_status::BufferTooSmall
        );
        ok(rk_public_key_serialize(key, buf.as_mut_ptr(), 33));
        assert_eq!(buf, k33);

        // Wrong handle type (a bad cast in C) is refused, not used.
        let mut id = 0u32;
        assert_eq!(
            rk_bundle_device_id(key.cast::<rk_bundle>(), &mut id),
            rk_status::InvalidHandle
        );
        assert_eq!(
            rk_store_device_id(key.cast::<rk_store>(), &mut id),
            rk_status::InvalidHandle
        );
        // A wrong-type free is a no-op (the key stays usable).
        rk_store_free(key.cast::<rk_store>());
        ok(rk_public_key_serialize(key, buf.as_mut_ptr(), 33));
        rk_public_key_free(key);

        // Saved state: empty, garbage, truncated, wrong key, short key.
        let mut s = null_mut();
        assert_eq!(rk_store_restore(null(), 0, &mut s), rk_status::InvalidState);
        assert_eq!(
            rk_store_restore(b"RKST".as_ptr(), 4, &mut s),
            rk_status::InvalidState
        );
        assert_eq!(
            rk_store_restore(alice_before.as_ptr(), alice_before.len() - 1, &mut s),
            rk_status::InvalidState
        );
        let key = [9u8; 32];
        let mut sealed = EMPTY;
        assert_eq!(
            rk_store_save_encrypted(alice, key.as_ptr(), 31, &mut sealed),
            rk_status::InvalidKey
        );
        ok(rk_store_save_encrypted(
            alice,
            key.as_ptr(),
            32,
            &mut sealed,
        ));
        let sealed = take(sealed);
        let wrong = [8u8; 32];
        assert_eq!(
            rk_store_restore_encrypted(sealed.as_ptr(), sealed.len(), wrong.as_ptr(), 32, &mut s),
            rk_status::WrongPickleKey
        );
        assert!(s.is_null());
        ok(rk_store_restore_encrypted(
            sealed.as_ptr(),
            sealed.len(),
            key.as_ptr(),
            32,
            &mut s,
        ));
        assert_eq!(save(s), alice_before);
        rk_store_free(s);

        rk_store_free(alice);
        rk_store_free(bob);
    }
}

/// The NULL / length / type-byte / wrong-handle matrix of the PQXDH
/// functions (policy, Kyber prekeys, bundles with Kyber prekeys, session
/// version): every failure leaves outputs unwritten and the store's saved
/// bytes as they were.
#[test]
fn null_and_length_matrix_pqxdh() {
    let (alice, bob, _) = pair();
    let np = rk_status::NullPointer;
    let mut bundle = null_mut();
    ok(unsafe { rk_store_create_bundle(bob, 1, 5, &mut bundle) });
    let mut kyber_id = 0u32;
    let mut kyber_key = [0u8; RK_KEM_PUBLIC_KEY_LEN];
    let mut kyber_sig = [0u8; RK_SIGNATURE_LEN];
    ok(unsafe { rk_bundle_kyber_prekey_id(bundle, &mut kyber_id) });
    ok(unsafe { rk_bundle_kyber_prekey(bundle, kyber_key.as_mut_ptr(), kyber_key.len()) });
    ok(unsafe {
        rk_bundle_kyber_prekey_signature(bundle, kyber_sig.as_mut_ptr(), kyber_sig.len())
    });
    assert_eq!(kyber_key[0], 0x08);
    let (mut ik, mut spk) = (null_mut(), null_mut());
    ok(unsafe { rk_bundle_identity_key(bundle, &mut ik) });
    ok(unsafe { rk_bundle_signed_prekey(bundle, &mut spk) });
    let mut spk_id = 0u32;
    ok(unsafe { rk_bundle_signed_prekey_id(bundle, &mut spk_id) });
    let mut sig = [0u8; RK_SIGNATURE_LEN];
    ok(unsafe { rk_bundle_signed_prekey_signature(bundle, sig.as_mut_ptr(), sig.len()) });
    let bob_before = save(bob);
    let alice_before = save(alice);
    unsafe {
        // Policy.
        let (mut allow, mut accept) = (7u32, 7u32);
        assert_eq!(rk_store_set_policy(null_mut(), 1, 1), np);
        for (a, b) in [(2, 0), (0, 2), (1, u32::MAX)] {
            assert_eq!(rk_store_set_policy(bob, a, b), rk_status::InvalidArgument);
        }
        assert!(last_error().contains("0 or 1"), "{}", last_error());
        assert_eq!(
            rk_store_set_policy(bundle.cast::<rk_store>(), 1, 1),
            rk_status::InvalidHandle
        );
        assert_eq!(rk_store_policy(null(), &mut allow, &mut accept), np);
        assert_eq!(rk_store_policy(bob, null_mut(), &mut accept), np);
        assert_eq!(rk_store_policy(bob, &mut allow, null_mut()), np);
        assert_eq!(
            rk_store_policy(bundle.cast::<rk_store>(), &mut allow, &mut accept),
            rk_status::InvalidHandle
        );
        assert_eq!((allow, accept), (7, 7), "outputs written on failure");
        ok(rk_store_policy(bob, &mut allow, &mut accept));
        assert_eq!((allow, accept), (0, 0), "the defaults refuse version 3");

        // Kyber prekeys.
        let mut out = EMPTY;
        let mut id = 77u32;
        let mut n = 77usize;
        assert_eq!(
            rk_store_generate_kyber_prekeys(null_mut(), 1, 0, &mut out),
            np
        );
        assert_eq!(rk_store_generate_kyber_prekeys(bob, 1, 0, null_mut()), np);
        assert_eq!(
            rk_store_generate_kyber_prekeys(bob, RK_MAX_KYBER_PREKEYS_PER_CALL + 1, 0, &mut out),
            rk_status::LimitExceeded
        );
        assert_eq!(
            rk_store_generate_kyber_prekeys(bundle.cast::<rk_store>(), 1, 0, &mut out),
            rk_status::InvalidHandle
        );
        assert_eq!(out.len, EMPTY.len, "output written on failure");
        assert_eq!(
            rk_store_generate_last_resort_kyber_prekey(null_mut(), 0, &mut id),
            np
        );
        assert_eq!(
            rk_store_generate_last_resort_kyber_prekey(bob, 0, null_mut()),
            np
        );
        assert_eq!(rk_store_kyber_prekey_count(null(), &mut n), np);
        assert_eq!(rk_store_kyber_prekey_count(bob, null_mut()), np);
        assert_eq!(
            rk_store_kyber_prekey_count(ik.cast::<rk_store>(), &mut n),
            rk_status::InvalidHandle
        );
        assert_eq!((id, n), (77, 77), "outputs written on failure");
        let mut record = [0xAAu8; RK_KYBER_PREKEY_RECORD_LEN];
        assert_eq!(
            rk_store_kyber_prekey(null(), kyber_id, record.as_mut_ptr(), record.len()),
            np
        );
        assert_eq!(
            rk_store_kyber_prekey(bob, kyber_id, null_mut(), record.len()),
            np
        );
        assert_eq!(
            rk_store_kyber_prekey(bob, kyber_id, record.as_mut_ptr(), record.len() - 1),
            rk_status::BufferTooSmall
        );
        assert_eq!(
            rk_store_kyber_prekey(bob, 0, record.as_mut_ptr(), record.len()),
            rk_status::MissingPrekey
        );
        assert_eq!(
            rk_store_kyber_prekey(alice, kyber_id, record.as_mut_ptr(), record.len()),
            rk_status::MissingPrekey,
            "Alice does not hold Bob's Kyber prekey"
        );
        assert!(
            record.iter().all(|&b| b == 0xAA),
            "output written on failure"
        );
        let mut has = true;
        assert_eq!(
            rk_store_last_resort_kyber_prekey_id(null(), &mut has, &mut id),
            np
        );
        assert_eq!(
            rk_store_last_resort_kyber_prekey_id(bob, null_mut(), &mut id),
            np
        );
        assert_eq!(
            rk_store_last_resort_kyber_prekey_id(bob, &mut has, null_mut()),
            np
        );
        assert!(has && id == 77, "outputs written on failure");
        assert_eq!(rk_store_remove_kyber_prekey(null_mut(), kyber_id), np);
        assert_eq!(
            rk_store_remove_kyber_prekey(bob, 0x00FF_FFFF),
            rk_status::MissingPrekey
        );
        assert_eq!(
            rk_store_remove_kyber_prekey(ik.cast::<rk_store>(), kyber_id),
            rk_status::InvalidHandle
        );

        // Bundles made with a choice of Kyber prekey.
        let mut b = null_mut();
        for kind in [3, 4, u32::MAX] {
            assert_eq!(
                rk_store_create_bundle_with(bob, 0, kind, 0, &mut b),
                rk_status::InvalidArgument
            );
        }
        assert!(last_error().contains("RK_KYBER_PREKEY"), "{}", last_error());
        assert_eq!(
            rk_store_create_bundle_with(bob, 2, RK_KYBER_PREKEY_ONE_TIME, 0, &mut b),
            rk_status::InvalidArgument
        );
        assert_eq!(
            rk_store_create_bundle_with(null_mut(), 0, RK_KYBER_PREKEY_NONE, 0, &mut b),
            np
        );
        assert_eq!(
            rk_store_create_bundle_with(bob, 0, RK_KYBER_PREKEY_ONE_TIME, 0, null_mut()),
            np
        );
        assert!(b.is_null(), "output written on failure");

        // Session version.
        let mut v = 77u32;
        assert_eq!(
            rk_store_session_version(null(), c"alice".as_ptr(), 1, &mut v),
            np
        );
        assert_eq!(rk_store_session_version(bob, null(), 1, &mut v), np);
        assert_eq!(
            rk_store_session_version(bob, c"alice".as_ptr(), 1, null_mut()),
            np
        );
        assert_eq!(
            rk_store_session_version(bob, c"\xff".as_ptr(), 1, &mut v),
            rk_status::InvalidArgument
        );
        assert_eq!(
            rk_store_session_version(bob, c"alice".as_ptr(), 1, &mut v),
            rk_status::NoSession,
            "Bob has not decrypted Alice's first message"
        );
        assert_eq!(
            rk_store_session_version(bundle.cast::<rk_store>(), c"bob".as_ptr(), 2, &mut v),
            rk_status::InvalidHandle
        );
        assert_eq!(v, 77, "output written on failure");
        ok(rk_store_session_version(alice, c"bob".as_ptr(), 2, &mut v));
        assert_eq!(v, RK_SESSION_VERSION_PQXDH);

        // A bundle from parts with a Kyber prekey: key lengths and types,
        // signature lengths, ids, NULLs.
        let new = |kid: u32,
                   key: *const u8,
                   key_len: usize,
                   ksig: *const u8,
                   ksig_len: usize,
                   out: *mut *mut rk_bundle| {
            rk_bundle_new_with_kyber_prekey(
                9,
                2,
                ik,
                spk_id,
                spk,
                sig.as_ptr(),
                sig.len(),
                0,
                null(),
                kid,
                key,
                key_len,
                ksig,
                ksig_len,
                out,
            )
        };
        let (k, ks) = (kyber_key.as_ptr(), kyber_sig.as_ptr());
        let mut r = null_mut();
        let kl = RK_KEM_PUBLIC_KEY_LEN;
        for len in [0, 1, 33, kl - 1, kl + 1] {
            let mut long = kyber_key.to_vec();
            long.push(0);
            assert_eq!(
                new(kyber_id, long.as_ptr(), len, ks, 64, &mut r),
                rk_status::InvalidKey,
                "key length {len}"
            );
        }
        assert_eq!(
            new(kyber_id, null(), 0, ks, 64, &mut r),
            rk_status::InvalidKey
        );
        assert_eq!(new(kyber_id, null(), kl, ks, 64, &mut r), np);
        for (kind, needle) in [
            (0x0Au8, "ML-KEM"),
            (0x05, "0x08"),
            (0x09, "0x08"),
            (0, "0x08"),
        ] {
            let mut typed = kyber_key;
            typed[0] = kind;
            assert_eq!(
                new(kyber_id, typed.as_ptr(), kl, ks, 64, &mut r),
                rk_status::InvalidKey,
                "type byte {kind:#04x}"
            );
            assert!(last_error().contains(needle), "{}", last_error());
        }
        assert_eq!(
            new(kyber_id, k, kl, ks, 63, &mut r),
            rk_status::InvalidBundle
        );
        assert_eq!(
            new(kyber_id, k, kl, ks, 65, &mut r),
            rk_status::InvalidBundle
        );
        assert_eq!(
            new(kyber_id, k, kl, null(), 0, &mut r),
            rk_status::InvalidBundle
        );
        assert_eq!(new(kyber_id, k, kl, null(), 64, &mut r), np);
        assert_eq!(new(0, k, kl, ks, 64, &mut r), rk_status::InvalidBundle);
        assert_eq!(
            new(0x0100_0000, k, kl, ks, 64, &mut r),
            rk_status::InvalidBundle
        );
        assert_eq!(new(kyber_id, k, kl, ks, 64, null_mut()), np);
        assert_eq!(
            rk_bundle_new_with_kyber_prekey(
                9,
                2,
                null(),
                spk_id,
                spk,
                sig.as_ptr(),
                64,
                0,
                null(),
                kyber_id,
                k,
                kl,
                ks,
                64,
                &mut r,
            ),
            np
        );
        assert_eq!(
            rk_bundle_new_with_kyber_prekey(
                9,
                2,
                ik,
                spk_id,
                bundle.cast(),
                sig.as_ptr(),
                64,
                0,
                null(),
                kyber_id,
                k,
                kl,
                ks,
                64,
                &mut r,
            ),
            rk_status::InvalidHandle
        );
        // A NULL handle is reported before a bad Kyber key.
        assert_eq!(
            rk_bundle_new_with_kyber_prekey(
                9,
                2,
                null(),
                spk_id,
                spk,
                sig.as_ptr(),
                64,
                0,
                null(),
                kyber_id,
                k,
                5,
                ks,
                64,
                &mut r,
            ),
            np
        );
        assert!(r.is_null(), "output written on failure");
        ok(new(kyber_id, k, kl, ks, 64, &mut r));
        let mut valid = false;
        ok(rk_bundle_verify_signature(r, &mut valid));
        assert!(valid);
        rk_bundle_free(r);

        // Kyber accessors: NULL, wrong type, short buffers, no Kyber prekey.
        let mut no_kyber = null_mut();
        ok(rk_bundle_new(
            9,
            2,
            ik,
            spk_id,
            spk,
            sig.as_ptr(),
            64,
            0,
            null(),
            &mut no_kyber,
        ));
        let mut has = true;
        ok(rk_bundle_has_kyber_prekey(no_kyber, &mut has));
        assert!(!has);
        let mut has = 7u8;
        let has_p = std::ptr::addr_of_mut!(has).cast::<bool>();
        assert_eq!(rk_bundle_has_kyber_prekey(null(), has_p), np);
        assert_eq!(rk_bundle_has_kyber_prekey(bundle, null_mut()), np);
        assert_eq!(
            rk_bundle_has_kyber_prekey(ik.cast::<rk_bundle>(), has_p),
            rk_status::InvalidHandle
        );
        assert_eq!(has, 7, "output written on failure");
        let mut kid = 77u32;
        assert_eq!(rk_bundle_kyber_prekey_id(null(), &mut kid), np);
        assert_eq!(rk_bundle_kyber_prekey_id(bundle, null_mut()), np);
        assert_eq!(
            rk_bundle_kyber_prekey_id(no_kyber, &mut kid),
            rk_status::MissingPrekey
        );
        assert_eq!(
            rk_bundle_kyber_prekey_id(bob.cast::<rk_bundle>(), &mut kid),
            rk_status::InvalidHandle
        );
        assert_eq!(kid, 77, "output written on failure");
        let mut kbuf = [0xAAu8; RK_KEM_PUBLIC_KEY_LEN];
        assert_eq!(rk_bundle_kyber_prekey(null(), kbuf.as_mut_ptr(), kl), np);
        assert_eq!(rk_bundle_kyber_prekey(bundle, null_mut(), kl), np);
        assert_eq!(
            rk_bundle_kyber_prekey(bundle, kbuf.as_mut_ptr(), kl - 1),
            rk_status::BufferTooSmall
        );
        assert_eq!(
            rk_bundle_kyber_prekey(no_kyber, kbuf.as_mut_ptr(), kl),
            rk_status::MissingPrekey
        );
        assert!(kbuf.iter().all(|&b| b == 0xAA), "output written on failure");
        let mut sbuf = [0xAAu8; 64];
        assert_eq!(
            rk_bundle_kyber_prekey_signature(null(), sbuf.as_mut_ptr(), 64),
            np
        );
        assert_eq!(rk_bundle_kyber_prekey_signature(bundle, null_mut(), 64), np);
        assert_eq!(
            rk_bundle_kyber_prekey_signature(bundle, sbuf.as_mut_ptr(), 63),
            rk_status::BufferTooSmall
        );
        assert_eq!(
            rk_bundle_kyber_prekey_signature(no_kyber, sbuf.as_mut_ptr(), 64),
            rk_status::MissingPrekey
        );
        assert!(sbuf.iter().all(|&b| b == 0xAA), "output written on failure");

        // The default policy refuses a bundle without a Kyber prekey, and
        // the store stays as it was.
        assert_eq!(
            rk_store_process_bundle(alice, c"bob".as_ptr(), 3, no_kyber),
            rk_status::VersionRefused
        );
        assert!(last_error().contains("Kyber"), "{}", last_error());

        assert_eq!(save(bob), bob_before, "a failed call changed Bob");
        assert_eq!(save(alice), alice_before, "a failed call changed Alice");

        rk_bundle_free(no_kyber);
        rk_bundle_free(bundle);
        rk_public_key_free(ik);
        rk_public_key_free(spk);
        rk_store_free(alice);
        rk_store_free(bob);
    }
}

#[test]
fn rk_bytes_are_nul_terminated_and_never_null() {
    let store = new_store(1);
    let mut b = EMPTY;
    ok(unsafe { rk_store_generate_prekeys(store, 0, &mut b) });
    assert!(!b.ptr.is_null());
    assert_eq!(b.len, 0);
    assert_eq!(unsafe { *b.ptr }, 0);
    unsafe { rk_bytes_free(b) };
    let mut b = EMPTY;
    ok(unsafe { rk_store_generate_prekeys(store, 3, &mut b) });
    assert_eq!(b.len, 3 * RK_PREKEY_RECORD_LEN);
    assert_eq!(unsafe { *b.ptr.add(b.len) }, 0);
    unsafe { rk_bytes_free(b) };
    let mut b = EMPTY;
    let mut n = 0usize;
    ok(unsafe { rk_store_prekey_count(store, &mut n) });
    assert_eq!(n, 3);
    assert_eq!(
        unsafe { rk_store_generate_prekeys(store, RK_MAX_PREKEYS_PER_CALL + 1, &mut b) },
        rk_status::LimitExceeded
    );
    let mut b = EMPTY;
    ok(unsafe { rk_store_generate_kyber_prekeys(store, 0, 0, &mut b) });
    assert!(!b.ptr.is_null());
    assert_eq!((b.len, unsafe { *b.ptr }), (0, 0));
    unsafe { rk_bytes_free(b) };
    let mut b = EMPTY;
    ok(unsafe { rk_store_generate_kyber_prekeys(store, 2, 0, &mut b) });
    assert_eq!(b.len, 2 * RK_KYBER_PREKEY_RECORD_LEN);
    assert_eq!(unsafe { *b.ptr.add(b.len) }, 0);
    unsafe { rk_bytes_free(b) };
    ok(unsafe { rk_store_kyber_prekey_count(store, &mut n) });
    assert_eq!(n, 2);
    unsafe { rk_store_free(store) };
}

/// Issue 14, item 6: a failed output allocation (status 900) leaves the
/// session as it was, so a retry sends under the same counter and the
/// message is neither lost nor a duplicate; the same for decryption of both
/// message types.
#[test]
fn failed_output_allocation_changes_nothing() {
    let fail_next = || FAIL_NEXT_OUTPUT.with(|f| f.set(true));
    let (alice, bob, first) = pair();
    // Decrypt (prekey): the allocation fails, nothing changes, it decrypts again.
    let before = save(bob);
    let mut pt = EMPTY;
    fail_next();
    let s = unsafe {
        rk_store_decrypt(
            bob,
            c"alice".as_ptr(),
            1,
            3,
            first.as_ptr(),
            first.len(),
            &mut pt,
        )
    };
    assert_eq!(s, rk_status::Internal);
    assert_eq!(save(bob), before);
    ok(unsafe {
        rk_store_decrypt(
            bob,
            c"alice".as_ptr(),
            1,
            3,
            first.as_ptr(),
            first.len(),
            &mut pt,
        )
    });
    assert_eq!(take(std::mem::replace(&mut pt, EMPTY)), b"hi");
    // Encrypt: the allocation fails, the chain does not advance.
    let encrypt = |store, name: &CStr, device, text: &[u8]| {
        let (mut t, mut ct) = (0u32, EMPTY);
        let s = unsafe {
            rk_store_encrypt(
                store,
                name.as_ptr(),
                device,
                text.as_ptr(),
                text.len(),
                &mut t,
                &mut ct,
            )
        };
        (s, t, ct)
    };
    let before = save(bob);
    fail_next();
    let (s, _, _) = encrypt(bob, c"alice", 1, b"reply");
    assert_eq!(s, rk_status::Internal);
    assert_eq!(save(bob), before);
    let (s, t, ct) = encrypt(bob, c"alice", 1, b"reply");
    ok(s);
    assert_eq!(t, RK_MESSAGE_TYPE_WHISPER);
    let reply = take(ct);
    // Decrypt (whisper): the allocation fails, nothing changes.
    let before = save(alice);
    fail_next();
    let s = unsafe {
        rk_store_decrypt(
            alice,
            c"bob".as_ptr(),
            2,
            2,
            reply.as_ptr(),
            reply.len(),
            &mut pt,
        )
    };
    assert_eq!(s, rk_status::Internal);
    assert_eq!(save(alice), before);
    ok(unsafe {
        rk_store_decrypt(
            alice,
            c"bob".as_ptr(),
            2,
            2,
            reply.as_ptr(),
            reply.len(),
            &mut pt,
        )
    });
    assert_eq!(take(pt), b"reply");
    // The retried reply was the first message of Bob's chain: counter 0.
    let parsed = crate::wire::SignalMessage::deserialize(&reply).unwrap();
    assert_eq!(parsed.counter(), 0);
    unsafe {
        rk_store_free(alice);
        rk_store_free(bob);
    }
}

/// A store handle shared between threads, as C code shares it (`rk_store`
/// is internally locked).
#[derive(Clone, Copy)]
struct SharedStore(*mut rk_store);
// SAFETY: the store's functions may be called from any thread.
unsafe impl Send for SharedStore {}
// SAFETY: as above.
unsafe impl Sync for SharedStore {}
impl SharedStore {
    fn get(self) -> *mut rk_store {
        self.0
    }
}

/// A version-4 prekey message as the library writes it (version byte
/// 0x44, protobuf fields by tag number, no one-time prekey) around the
/// serialized `inner` message (itself version 4), naming Kyber prekey
/// `kyber_pre_key_id` with the KEM ciphertext `kyber_ciphertext`.
fn forge_prekey_message(
    registration_id: u32,
    signed_pre_key_id: u32,
    base_key: &[u8],
    identity_key: &[u8],
    inner: &[u8],
    kyber_pre_key_id: u32,
    kyber_ciphertext: &[u8],
) -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = vec![0x44];
    for (tag, bytes) in [(2u8, base_key), (3, identity_key), (4, inner)] {
        out.push((tag << 3) | 2);
        varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
    }
    for (tag, v) in [(5u8, registration_id), (6, signed_pre_key_id)] {
        out.push(tag << 3);
        varint(u64::from(v), &mut out);
    }
    out.push(7 << 3);
    varint(u64::from(kyber_pre_key_id), &mut out);
    out.push((8 << 3) | 2);
    varint(kyber_ciphertext.len() as u64, &mut out);
    out.extend_from_slice(kyber_ciphertext);
    out
}

/// Issue 14, item 2: a forged prekey message does not hold up other
/// sessions. Bob holds Alice's current state and 40 archived ones (all
/// version 4) and a session with Carol. One thread decrypts forged
/// version-4 prekey messages from "Alice" (fresh base keys, a real KEM
/// ciphertext to Bob's last-resort Kyber prekey, which stays available, and
/// an inner message 24,999 ahead on a new chain that does not
/// authenticate): each runs PQXDH with decapsulation and the 24,999-step
/// walk under the shared lock before the MAC fails. Another thread encrypts
/// to Carol meanwhile. No encrypt may wait longer than 3 honest worst-case
/// decrypts (a genuine message 24,999 ahead on a new chain) measured here.
/// Before the fix, the forged message was tried on all 41 states under the
/// store's exclusive lock (about 0.3 s, 40 honest worst cases) and every
/// encrypt waited.
#[test]
fn forged_prekey_messages_do_not_block_other_sessions() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Barrier;
    use std::time::{Duration, Instant};

    use rand::rngs::OsRng;

    use crate::keys::KeyPair;
    use crate::ratchet::MAX_FORWARD_JUMPS;
    use crate::session::MAX_ARCHIVED_STATES;
    use crate::store::{Address, ProtocolStore};
    use crate::wire::{PreKeySignalMessage, SignalMessage, PQXDH_VERSION, PREKEY_TYPE};

    const FORGED: usize = 8;
    let (a, b, c) = (
        Address::new("alice", 1),
        Address::new("bob", 2),
        Address::new("carol", 3),
    );
    let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let mut bob = ProtocolStore::generate(2, &mut OsRng).unwrap();
    let mut carol = ProtocolStore::generate(3, &mut OsRng).unwrap();
    // The Double Ratchet's cost is measured here: without SPQR, whose
    // state would refuse the forged messages before the MAC.
    for s in [&mut alice, &mut bob, &mut carol] {
        s.set_spqr_policy(crate::spqr::SpqrPolicy::Off);
    }
    let mut first = None;
    for _ in 0..=MAX_ARCHIVED_STATES {
        let bundle = bob.create_bundle(false, 0, &mut OsRng).unwrap();
        alice.process_bundle(&b, &bundle, &mut OsRng).unwrap();
        let m = alice.encrypt(&b, b"hello").unwrap();
        bob.decrypt(&a, m.message_type(), m.serialize(), &mut OsRng)
            .unwrap();
        first.get_or_insert_with(|| PreKeySignalMessage::deserialize(m.serialize()).unwrap());
    }
    let first = first.unwrap();
    assert_eq!(first.version(), PQXDH_VERSION);
    assert_eq!(
        bob.session(&a).unwrap().previous_count(),
        MAX_ARCHIVED_STATES
    );
    // Bob's bundles carried his last-resort Kyber prekey: it is kept.
    let last_resort = bob.last_resort_kyber_prekey_id().unwrap();
    let bob_kyber_key = bob
        .kyber_prekey(last_resort)
        .unwrap()
        .key_pair
        .public_key
        .clone();
    let bundle = carol.create_bundle(true, 0, &mut OsRng).unwrap();
    bob.process_bundle(&c, &bundle, &mut OsRng).unwrap();
    // The honest worst case: Alice turns the ratchet and Bob gets only the
    // 25,000th message of her new chain.
    let r = bob.encrypt(&a, b"hi").unwrap();
    alice
        .decrypt(&b, r.message_type(), r.serialize(), &mut OsRng)
        .unwrap();
    let honest = (0..MAX_FORWARD_JUMPS)
        .map(|_| alice.encrypt(&b, b"worst").unwrap())
        .last()
        .unwrap();
    let honest = honest.serialize().to_vec();
    // Forged: the same message with a wrong MAC, wrapped with a fresh base
    // key, Alice's (public) identity, Bob's signed prekey id, and a fresh
    // KEM ciphertext to Bob's (public) last-resort Kyber prekey.
    let mut inner = honest.clone();
    *inner.last_mut().unwrap() ^= 1;
    let inner = SignalMessage::deserialize(&inner).unwrap();
    assert_eq!(inner.counter(), MAX_FORWARD_JUMPS - 1);
    assert_eq!(inner.version(), PQXDH_VERSION);
    let forged: Vec<Vec<u8>> = (0..FORGED)
        .map(|_| {
            let (kyber_ciphertext, _) = bob_kyber_key.encapsulate(&mut OsRng);
            forge_prekey_message(
                first.registration_id(),
                first.signed_pre_key_id(),
                &KeyPair::generate(&mut OsRng).public_key.serialize(),
                &first.identity_key().serialize(),
                inner.serialize(),
                last_resort,
                &kyber_ciphertext,
            )
        })
        .collect();
    // Each parses as a version-4 prekey message naming the last-resort key,
    // and gets as far as the MAC: not refused cheaply by version, policy or
    // a missing prekey.
    for m in &forged {
        let parsed = PreKeySignalMessage::deserialize(m).unwrap();
        assert_eq!(parsed.version(), PQXDH_VERSION);
        let kyber = parsed.kyber().unwrap();
        assert_eq!(kyber.pre_key_id, last_resort);
        assert_eq!(kyber.ciphertext.len(), crate::kem::KEM_CIPHERTEXT_LEN);
        assert_eq!(kyber.ciphertext[0], crate::kem::KYBER1024_TYPE);
        assert_eq!(
            bob.decrypt(&a, PREKEY_TYPE, m, &mut OsRng).unwrap_err(),
            crate::Error::InvalidMessage("MAC verification failed")
        );
    }
    let saved = bob.save();
    let restore = || {
        let mut s = null_mut();
        ok(unsafe { rk_store_restore(saved.as_ptr(), saved.len(), &mut s) });
        s
    };
    let decrypt = |store: *mut rk_store, message_type: u32, m: &[u8], pt: &mut rk_bytes| unsafe {
        rk_store_decrypt(
            store,
            c"alice".as_ptr(),
            1,
            message_type,
            m.as_ptr(),
            m.len(),
            pt,
        )
    };

    // The honest worst case through the C ABI: the fastest of 3.
    let mut honest_worst = Duration::MAX;
    for _ in 0..3 {
        let store = restore();
        let mut pt = EMPTY;
        let start = Instant::now();
        let s = decrypt(store, RK_MESSAGE_TYPE_WHISPER, &honest, &mut pt);
        honest_worst = honest_worst.min(start.elapsed());
        ok(s);
        assert_eq!(take(pt), b"worst");
        unsafe { rk_store_free(store) };
    }

    // One attempt: the attacker's thread and Carol's sender start together
    // on a fresh copy of Bob's store; the sender encrypts until the attacker
    // is done. Returns each forged decrypt's time, the number of encrypts
    // and the slowest one.
    let attempt = || {
        let victim = SharedStore(restore());
        let done = AtomicBool::new(false);
        let start = Barrier::new(2);
        let (forged_times, (encrypts, max_latency)) = std::thread::scope(|scope| {
            let attacker = scope.spawn(|| {
                start.wait();
                let mut times = Vec::new();
                for m in &forged {
                    let mut pt = EMPTY;
                    let t = Instant::now();
                    let s = decrypt(victim.get(), RK_MESSAGE_TYPE_PREKEY, m, &mut pt);
                    times.push(t.elapsed());
                    assert_eq!(s, rk_status::InvalidMessage, "{}", last_error());
                    assert_eq!(pt.len, EMPTY.len, "output written on failure");
                }
                done.store(true, Ordering::SeqCst);
                times
            });
            let sender = scope.spawn(|| {
                start.wait();
                let (mut count, mut max) = (0u64, Duration::ZERO);
                while !done.load(Ordering::SeqCst) {
                    let (mut t, mut ct) = (0u32, EMPTY);
                    let began = Instant::now();
                    let s = unsafe {
                        rk_store_encrypt(
                            victim.get(),
                            c"carol".as_ptr(),
                            3,
                            b"ping".as_ptr(),
                            4,
                            &mut t,
                            &mut ct,
                        )
                    };
                    max = max.max(began.elapsed());
                    ok(s);
                    drop(take(ct));
                    count += 1;
                }
                (count, max)
            });
            (attacker.join().unwrap(), sender.join().unwrap())
        });
        // Nothing of Alice's changed; only Carol's sending chain moved.
        let expected = restore();
        for store in [victim.get(), expected] {
            let mut removed = false;
            ok(unsafe { rk_store_remove_session(store, c"carol".as_ptr(), 3, &mut removed) });
            assert!(removed);
        }
        assert_eq!(save(victim.get()), save(expected));
        unsafe {
            rk_store_free(victim.get());
            rk_store_free(expected);
        }
        assert_eq!(forged_times.len(), FORGED);
        (forged_times, encrypts, max_latency)
    };

    // The bound is on the slowest single encrypt, which a busy machine can
    // also delay by descheduling the thread: up to 3 attempts, the first
    // within the bound passes. Blocking behind a forged message (before the
    // fix) fails every attempt.
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let bound = honest_worst * 3;
    let mut latencies = Vec::new();
    for _ in 0..3 {
        let (forged_times, encrypts, max_latency) = attempt();
        let slowest_forged = forged_times.iter().max().copied().unwrap_or_default();
        let fastest_forged = forged_times.iter().min().copied().unwrap_or_default();
        eprintln!(
            "C ABI: honest worst-case decrypt {:.2} ms; {FORGED} forged prekey decrypts, \
             {:.2} to {:.2} ms; {encrypts} encrypts to another address meanwhile, \
             slowest {:.3} ms",
            ms(honest_worst),
            ms(fastest_forged),
            ms(slowest_forged),
            ms(max_latency)
        );
        // Every forged message did the expensive work (PQXDH, then the
        // 24,999-step walk) rather than being refused cheaply: each took at
        // least half an honest worst case (the work cannot be done faster).
        assert!(
            fastest_forged * 2 >= honest_worst,
            "a forged decrypt took {:.3} ms: refused before the walk",
            ms(fastest_forged)
        );
        latencies.push(format!("{:.2} ms", ms(max_latency)));
        if max_latency < bound {
            // The sender really ran alongside the forged decrypts (a
            // starved sender, as before the fix, makes few calls).
            assert!(encrypts >= 100, "only {encrypts} encrypts ran");
            return;
        }
    }
    panic!(
        "an encrypt to another address waited longer than 3 honest worst-case decrypts \
         ({:.2} ms) in every attempt: {}",
        ms(bound),
        latencies.join(", ")
    );
}

/// Review finding: a failed output allocation in the prekey generators kept
/// keys the caller never received. Now nothing changes.
#[test]
fn failed_output_allocation_keeps_no_prekeys() {
    let store = new_store(1);
    let before = save(store);
    let mut out = EMPTY;
    FAIL_NEXT_OUTPUT.with(|f| f.set(true));
    let s = unsafe { rk_store_generate_prekeys(store, 100, &mut out) };
    assert_eq!(s, rk_status::Internal);
    assert_eq!(save(store), before, "a failing call kept prekeys");
    FAIL_NEXT_OUTPUT.with(|f| f.set(true));
    let s = unsafe { rk_store_generate_kyber_prekeys(store, 3, 1_000, &mut out) };
    assert_eq!(s, rk_status::Internal);
    assert_eq!(save(store), before, "a failing call kept Kyber prekeys");
    assert_eq!(out.len, EMPTY.len, "output written on failure");
    ok(unsafe { rk_store_generate_prekeys(store, 100, &mut out) });
    assert_eq!(take(out).len(), 100 * RK_PREKEY_RECORD_LEN);
    unsafe { rk_store_free(store) };
}
