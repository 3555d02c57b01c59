//! The key directory at the C boundary: the upload a device sends to the
//! reference key server, when to refill and rotate, the bundles a sender
//! fetches, and the signature every request to the server carries (see
//! `ratchetkit::directory`). The library speaks no HTTP.

use std::ffi::c_char;

use rand::rngs::OsRng;

use super::rk_store;
use crate::directory::{parse_bundles, sign_request, AuthRequest, PreKeyPolicy};
use crate::ffi::bundle::rk_bundle;
use crate::ffi::bytes::{rk_bytes, OwnedBytes};
use crate::ffi::guard::{guard, handle_ref, input_bytes, input_str, out_ptr, FfiError};
use crate::ffi::status::rk_status;
use crate::store::durable::Load;

/// When the application wants its prekeys refilled and rotated. Start from
/// `rk_prekey_policy_default()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rk_prekey_policy {
    /// Refill when fewer one-time prekeys than this are left. Default 20.
    pub refill_below: u32,
    /// Rotate the signed and last-resort prekeys at this age, in
    /// milliseconds. Default 7 days.
    pub rotate_after_ms: u64,
    /// Keep a replaced signed or last-resort prekey this long after its
    /// successor was made, in milliseconds. Default 30 days.
    pub grace_ms: u64,
}

/// `rk_prekey_status` ages when there is no such key.
pub const RK_NO_AGE: u64 = u64::MAX;

/// `server_count` of `rk_store_prekey_status` when the server's count is
/// not known (the store's own count decides).
pub const RK_COUNT_UNKNOWN: i64 = -1;

/// What a store's prekeys need (`rk_store_prekey_status`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rk_prekey_status {
    /// One-time EC prekeys held (uploaded and not yet used by a message).
    pub prekeys_held: u64,
    /// One-time Kyber prekeys held.
    pub kyber_prekeys_held: u64,
    /// Age of the current signed prekey (ms), `RK_NO_AGE` for none.
    pub signed_prekey_age_ms: u64,
    /// Age of the current last-resort Kyber prekey (ms), `RK_NO_AGE`.
    pub last_resort_age_ms: u64,
    /// Replaced prekeys past their grace period (`rk_store_rotate_prekeys`
    /// removes them).
    pub expired: u64,
    /// Upload a new batch of one-time prekeys.
    pub refill: bool,
    /// Rotate the signed and last-resort prekeys, then upload.
    pub rotate: bool,
}

/// The default prekey policy: refill below 20, rotate weekly, grace of 30
/// days.
///
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn rk_prekey_policy_default() -> rk_prekey_policy {
    let p = PreKeyPolicy::default();
    rk_prekey_policy {
        refill_below: p.refill_below,
        rotate_after_ms: p.rotate_after_ms,
        grace_ms: p.grace_ms,
    }
}

fn policy_from(p: Option<&rk_prekey_policy>) -> PreKeyPolicy {
    p.map_or_else(PreKeyPolicy::default, |p| PreKeyPolicy {
        refill_below: p.refill_below,
        rotate_after_ms: p.rotate_after_ms,
        grace_ms: p.grace_ms,
    })
}

/// Makes an upload for the key server: the current signed prekey and
/// last-resort Kyber prekey (made first when the store has none) and
/// `count` (at most `RK_MAX_UPLOAD_BATCH`) new one-time EC and Kyber
/// prekeys, which the store keeps. `timestamp_ms` dates the keys made.
/// The upload, JSON in the server's format (keyserver/README.md), goes to
/// a new `rk_bytes` at `*json_out` (free it with `rk_bytes_free`). `count`
/// 0 re-uploads the signed keys only (after a rotation).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_LIMIT_EXCEEDED` (`count` too large, or too many prekeys
/// held), `RK_STATUS_POISONED`, and a durable store's statuses.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `json_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_prepare_upload(
    store: *mut rk_store,
    count: u32,
    timestamp_ms: u64,
    json_out: *mut rk_bytes,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(json_out, "json_out")?;
        // The output is allocated inside the call: on a durable store a
        // failed allocation rolls the keys back.
        let json = store.exclusive(Load::prekeys, |s| {
            let upload = s.prepare_upload(count, timestamp_ms, &mut OsRng)?;
            OwnedBytes::from_vec(upload.to_json().into_bytes())
        })?;
        out.write(json.release());
        Ok(())
    })
}

/// What the store's prekeys need at `now_ms` under `policy` (NULL:
/// defaults), at `*status_out`. `server_count` is the number of one-time
/// prekeys the server says it holds, or `RK_COUNT_UNKNOWN` (the store's
/// own count decides, an upper bound).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`server_count` negative but not
/// `RK_COUNT_UNKNOWN`), `RK_STATUS_POISONED`, a durable store's statuses.
/// Thread safety: any thread.
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `policy` NULL or readable;
/// `status_out` writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_prekey_status(
    store: *const rk_store,
    now_ms: u64,
    server_count: i64,
    policy: *const rk_prekey_policy,
    status_out: *mut rk_prekey_status,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(status_out, "status_out")?;
        let server_count = match server_count {
            RK_COUNT_UNKNOWN => None,
            n if n < 0 => {
                return Err(FfiError::invalid(
                    "server_count must be at least 0, or RK_COUNT_UNKNOWN",
                ))
            }
            n => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        };
        // SAFETY: caller's contract (NULL or readable).
        let policy = policy_from(unsafe { policy.as_ref() });
        let s = store.shared(Load::prekeys, |s| {
            Ok(s.prekey_status(now_ms, server_count, &policy))
        })?;
        out.write(rk_prekey_status {
            prekeys_held: s.prekeys_held as u64,
            kyber_prekeys_held: s.kyber_prekeys_held as u64,
            signed_prekey_age_ms: s.signed_prekey_age_ms.unwrap_or(RK_NO_AGE),
            last_resort_age_ms: s.last_resort_age_ms.unwrap_or(RK_NO_AGE),
            expired: s.expired as u64,
            refill: s.refill,
            rotate: s.rotate,
        });
        Ok(())
    })
}

/// Rotates and prunes at `now_ms` under `policy` (NULL: defaults): when
/// the current signed or last-resort prekey is `rotate_after_ms` old (or
/// missing), makes new ones (upload them next: `rk_store_prepare_upload`
/// with a count of 0); then removes replaced ones whose successor is
/// `grace_ms` old. `*rotated_out` says whether new keys were made,
/// `*removed_out` how many old ones went.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_LIMIT_EXCEEDED`, `RK_STATUS_POISONED`, a durable store's
/// statuses.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `policy` NULL or readable;
/// `rotated_out` and `removed_out` writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_rotate_prekeys(
    store: *mut rk_store,
    now_ms: u64,
    policy: *const rk_prekey_policy,
    rotated_out: *mut bool,
    removed_out: *mut u32,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let rotated = out_ptr(rotated_out, "rotated_out")?;
        let removed = out_ptr(removed_out, "removed_out")?;
        // SAFETY: caller's contract (NULL or readable).
        let policy = policy_from(unsafe { policy.as_ref() });
        let r = store.exclusive(Load::prekeys, |s| {
            Ok(s.rotate_prekeys(now_ms, &policy, &mut OsRng)?)
        })?;
        rotated.write(r.rotated);
        removed.write(u32::try_from(r.removed).unwrap_or(u32::MAX));
        Ok(())
    })
}

/// The number of device bundles in the key server's answer `json` (one
/// bundle, or `{"devices": [...]}`), at `*count_out`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_BUNDLE` (not an
/// answer of the server, a malformed field), `RK_STATUS_INVALID_KEY`.
/// Thread safety: any thread.
///
/// # Safety
/// `json` must point to `len` readable bytes; `count_out` writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundles_json_count(
    json: *const u8,
    len: usize,
    count_out: *mut usize,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let json = unsafe { input_bytes(json, len, "json") }?;
        let out = out_ptr(count_out, "count_out")?;
        out.write(parse_bundles(json)?.len());
        Ok(())
    })
}

/// Bundle `index` of the key server's answer `json`, as a new handle at
/// `*bundle_out` (free it with `rk_bundle_free`). Its signatures are
/// checked when it is processed (`rk_store_process_bundle`).
///
/// Statuses: as `rk_bundles_json_count`, and `RK_STATUS_INVALID_ARGUMENT`
/// (`index` out of range).
/// Thread safety: any thread.
///
/// # Safety
/// `json` must point to `len` readable bytes; `bundle_out` writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_from_json(
    json: *const u8,
    len: usize,
    index: usize,
    bundle_out: *mut *mut rk_bundle,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let json = unsafe { input_bytes(json, len, "json") }?;
        let out = out_ptr(bundle_out, "bundle_out")?;
        let mut bundles = parse_bundles(json)?;
        if index >= bundles.len() {
            return Err(FfiError::invalid(format!(
                "index {index} is out of range: the answer holds {} bundles",
                bundles.len()
            )));
        }
        out.write(rk_bundle::boxed(bundles.swap_remove(index).bundle));
        Ok(())
    })
}

/// The `Authorization` header value (after `Authorization: `) for a
/// request to the key server by this store's device `device_id` of
/// `name`: `method` (uppercase), `path` (with any query), the `body`
/// (`body_len` 0 and `body` NULL for none) and `timestamp` (seconds since
/// the Unix epoch), signed with the store's identity key under a fresh
/// nonce. A NUL-terminated string in a new `rk_bytes` at `*header_out`
/// (free it with `rk_bytes_free`).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (a name with ',', '=', spaces or
/// controls, a lowercase method, a path not starting with '/'),
/// `RK_STATUS_POISONED`.
/// Thread safety: any thread.
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `name`, `method` and `path`
/// NULL or NUL-terminated; `body` must point to `body_len` readable bytes
/// (or be NULL with `body_len` 0); `header_out` writable.
#[no_mangle]
#[must_use]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn rk_store_sign_request(
    store: *const rk_store,
    name: *const c_char,
    device_id: u32,
    method: *const c_char,
    path: *const c_char,
    body: *const u8,
    body_len: usize,
    timestamp: u64,
    header_out: *mut rk_bytes,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        // SAFETY: caller's contract.
        let name = unsafe { input_str(name, "name") }?;
        // SAFETY: caller's contract.
        let method = unsafe { input_str(method, "method") }?;
        // SAFETY: caller's contract.
        let path = unsafe { input_str(path, "path") }?;
        let body: &[u8] = if body.is_null() && body_len == 0 {
            &[]
        } else {
            // SAFETY: caller's contract.
            unsafe { input_bytes(body, body_len, "body") }?
        };
        let out = out_ptr(header_out, "header_out")?;
        let request = AuthRequest {
            name,
            device_id,
            method,
            path,
            body,
            timestamp,
        };
        let header = store.shared(Load::meta, |s| {
            Ok(sign_request(s.identity(), &request, &mut OsRng)?)
        })?;
        out.write(rk_bytes::from_string(header)?);
        Ok(())
    })
}
