//! The C ABI (`include/ratchetkit.h`, generated from this module tree by
//! cbindgen in `build.rs`).
//!
//! This layer only checks and converts arguments, calls the core and
//! converts results; the protocol lives in the core. Every extern fn runs
//! inside one guard (`guard::guard`) that turns errors into an `rk_status` and a
//! thread-local message, and catches panics so that none crosses into C.
//!
//! Conventions (also in the header preamble):
//! - Handles (`rk_store`, `rk_bundle`, `rk_public_key`,
//!   `rk_identity_keypair`, `rk_fingerprint`) are opaque, made only by the
//!   library, and freed exactly once with their `rk_*_free` (NULL is a
//!   no-op). A live handle of the wrong type is detected (its type tag);
//!   a use after free or double free is not reliably (see
//!   `guard::free_handle`).
//! - Outputs are written only on `RK_STATUS_OK`. Variable-length outputs are
//!   `rk_bytes`, freed (and zeroized) with `rk_bytes_free`.
//! - Inputs are borrowed for the call only. NULL with length 0 is an empty
//!   input; NULL with a nonzero length, a NULL handle or a NULL out-pointer
//!   is `RK_STATUS_NULL_POINTER`.
//! - A failing call leaves every handle as it was.

#![allow(unsafe_code)]
#![allow(non_camel_case_types)]

use std::ffi::c_char;

pub mod bundle;
pub mod bytes;
pub mod fingerprint;
pub(crate) mod guard;
pub mod keys;
pub mod pending;
pub mod status;
pub mod store;
#[cfg(test)]
mod tests;

/// The ABI version, shared with `build.rs`.
mod abi;
pub use abi::RK_ABI_VERSION;

/// Length of a serialized public key (`0x05` then 32 bytes).
pub const RK_PUBLIC_KEY_LEN: usize = 33;
/// Length of a private key.
pub const RK_PRIVATE_KEY_LEN: usize = 32;
/// Length of an XEdDSA signature.
pub const RK_SIGNATURE_LEN: usize = 64;
/// Number of digits of a displayable safety number (a buffer for it needs
/// one more byte, for the NUL).
pub const RK_SAFETY_NUMBER_LEN: usize = 60;
/// Length of the application key that encrypts saved state.
pub const RK_PICKLE_KEY_LEN: usize = 32;
/// Length of one record from `rk_store_generate_prekeys`: a 4-byte
/// big-endian id and a 33-byte public key.
pub const RK_PREKEY_RECORD_LEN: usize = 37;
/// The most prekeys one `rk_store_generate_prekeys` call makes.
pub const RK_MAX_PREKEYS_PER_CALL: u32 = 10000;
/// The most one-time prekeys of each kind `rk_store_prepare_upload` puts in
/// one upload (the reference key server refuses more).
pub const RK_MAX_UPLOAD_BATCH: u32 = 200;
const _: () = assert!(RK_MAX_UPLOAD_BATCH == crate::directory::MAX_UPLOAD_BATCH);
/// Length of a serialized Kyber1024 public key (`0x08` then 1568 bytes), as
/// a bundle's Kyber prekey.
pub const RK_KEM_PUBLIC_KEY_LEN: usize = 1569;
/// Length of one record from `rk_store_generate_kyber_prekeys` and
/// `rk_store_kyber_prekey`: a 4-byte big-endian id, the
/// `RK_KEM_PUBLIC_KEY_LEN`-byte public key and its `RK_SIGNATURE_LEN`-byte
/// signature.
pub const RK_KYBER_PREKEY_RECORD_LEN: usize = 1637;
/// The most Kyber prekeys one `rk_store_generate_kyber_prekeys` call makes.
pub const RK_MAX_KYBER_PREKEYS_PER_CALL: u32 = 1000;
/// `rk_store_create_bundle_with`: no Kyber prekey (the bundle starts
/// version-3 sessions).
pub const RK_KYBER_PREKEY_NONE: u32 = 0;
/// `rk_store_create_bundle_with`: a new one-time Kyber prekey.
pub const RK_KYBER_PREKEY_ONE_TIME: u32 = 1;
/// `rk_store_create_bundle_with`: the last-resort Kyber prekey.
pub const RK_KYBER_PREKEY_LAST_RESORT: u32 = 2;
/// Session (message) version of sessions started with X3DH.
pub const RK_SESSION_VERSION_X3DH: u32 = 3;
/// Session (message) version of sessions started with PQXDH (X3DH and
/// Kyber1024): what stores start and accept by default.
pub const RK_SESSION_VERSION_PQXDH: u32 = 4;
/// Message type of a whisper message (`SignalMessage`).
pub const RK_MESSAGE_TYPE_WHISPER: u32 = 2;
/// Message type of a prekey message (`PreKeySignalMessage`).
pub const RK_MESSAGE_TYPE_PREKEY: u32 = 3;
/// The safety-number iteration count Signal clients use.
pub const RK_DEFAULT_ITERATIONS: u32 = 5200;
/// The scannable safety-number version Signal clients use today.
pub const RK_FINGERPRINT_VERSION: u32 = 2;

// The C constants are literals (cbindgen cannot evaluate paths): keep them
// equal to the core's.
const _: () = {
    assert!(RK_PUBLIC_KEY_LEN == crate::keys::PUBLIC_KEY_LEN);
    assert!(RK_PRIVATE_KEY_LEN == crate::keys::PRIVATE_KEY_LEN);
    assert!(RK_SIGNATURE_LEN == crate::keys::SIGNATURE_LEN);
    assert!(RK_SAFETY_NUMBER_LEN == crate::fingerprint::SAFETY_NUMBER_DIGITS);
    assert!(RK_PICKLE_KEY_LEN == crate::pickle::PICKLE_KEY_LEN);
    assert!(RK_PREKEY_RECORD_LEN == 4 + crate::keys::PUBLIC_KEY_LEN);
    assert!(RK_KEM_PUBLIC_KEY_LEN == crate::kem::KEM_PUBLIC_KEY_LEN);
    assert!(
        RK_KYBER_PREKEY_RECORD_LEN
            == 4 + crate::kem::KEM_PUBLIC_KEY_LEN + crate::keys::SIGNATURE_LEN
    );
    assert!(RK_SESSION_VERSION_X3DH == crate::wire::MESSAGE_VERSION as u32);
    assert!(RK_SESSION_VERSION_PQXDH == crate::wire::PQXDH_VERSION as u32);
    assert!(RK_MESSAGE_TYPE_WHISPER == crate::wire::WHISPER_TYPE as u32);
    assert!(RK_MESSAGE_TYPE_PREKEY == crate::wire::PREKEY_TYPE as u32);
    assert!(RK_DEFAULT_ITERATIONS == crate::fingerprint::DEFAULT_ITERATIONS);
};

/// The library version, for example "0.1.0" (the same as the
/// `RK_VERSION_STRING` macro of the header it was built with).
///
/// Ownership: a static string; never free it.
/// Thread safety: any thread. Does not touch the thread's last error.
#[no_mangle]
pub extern "C" fn rk_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    guard::guard_value(c"".as_ptr(), || VERSION.as_ptr().cast())
}

/// The ABI version of the library (`RK_ABI_VERSION` of the header it was
/// built with; also the number in the shared library's SONAME,
/// `libratchetkit.so.<abi>`). A program built against a header whose
/// `RK_ABI_VERSION` differs must not use this library.
///
/// Thread safety: any thread. Does not touch the thread's last error.
#[no_mangle]
pub extern "C" fn rk_abi_version() -> u32 {
    guard::guard_value(RK_ABI_VERSION, || RK_ABI_VERSION)
}

/// Copies the detail message of the last failed call on this thread (empty
/// if the last call succeeded) into `buf` as a NUL-terminated UTF-8 string.
/// `*len_out` receives the message length in bytes, without the NUL, on
/// `RK_STATUS_OK` *and* on `RK_STATUS_BUFFER_TOO_SMALL` (the one exception
/// to "outputs only on OK", so callers can size a buffer: `buf` NULL with
/// `cap` 0 queries the length). The message never contains key material.
///
/// This call neither clears nor replaces the last error: it may be called
/// twice. Every other status-returning call sets it (on failure) or clears
/// it (on success); calls without a status leave it alone.
///
/// Statuses: `RK_STATUS_NULL_POINTER` (`len_out` NULL, or `buf` NULL with
/// `cap` > 0), `RK_STATUS_BUFFER_TOO_SMALL` (`cap` < length + 1).
/// Thread safety: any thread; the message is per thread.
///
/// # Safety
/// `buf` must point to `cap` writable bytes; `len_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_last_error_message(
    buf: *mut c_char,
    cap: usize,
    len_out: *mut usize,
) -> rk_status {
    guard::guard_value(rk_status::Panic, || {
        let Ok(len_out) = guard::out_ptr(len_out, "len_out") else {
            return rk_status::NullPointer;
        };
        if buf.is_null() && cap > 0 {
            return rk_status::NullPointer;
        }
        guard::with_last_error(|msg| {
            len_out.write(msg.len());
            if cap < msg.len() + 1 {
                return rk_status::BufferTooSmall;
            }
            // SAFETY: `buf` holds `cap` >= len + 1 writable bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(msg.as_ptr(), buf.cast::<u8>(), msg.len());
                buf.add(msg.len()).write(0);
            }
            rk_status::Ok
        })
        .unwrap_or(rk_status::Internal)
    })
}

pub use bytes::rk_bytes;
pub use status::rk_status;
