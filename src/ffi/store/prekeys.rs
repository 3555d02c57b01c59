//! The store's prekeys: signed prekeys, one-time prekeys, Kyber prekeys
//! (one-time and last resort), and the bundles made from them.

use rand::rngs::OsRng;

use super::{rk_store, write_count, Count};
use crate::ffi::bundle::rk_bundle;
use crate::ffi::bytes::rk_bytes;
use crate::ffi::bytes::OwnedBytes;
use crate::ffi::guard::{guard, handle_ref, input_flag, out_buf, out_ptr, FfiError, FfiResult};
use crate::ffi::status::rk_status;
use crate::ffi::{
    RK_KYBER_PREKEY_LAST_RESORT, RK_KYBER_PREKEY_NONE, RK_KYBER_PREKEY_ONE_TIME,
    RK_KYBER_PREKEY_RECORD_LEN, RK_MAX_KYBER_PREKEYS_PER_CALL, RK_MAX_PREKEYS_PER_CALL,
    RK_PREKEY_RECORD_LEN,
};
use crate::store::durable::Load;
use crate::store::{BundleRequest, KyberPreKeyKind};

/// Generates a new signed prekey (rotation), which becomes the one put in
/// new bundles; older signed prekeys stay usable for messages in flight
/// until removed with `rk_store_remove_signed_prekey`. `timestamp_ms` is
/// the creation time in milliseconds since the Unix epoch. Its id goes to
/// `*id_out`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_LIMIT_EXCEEDED` (all ids in use), `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `id_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_generate_signed_prekey(
    store: *mut rk_store,
    timestamp_ms: u64,
    id_out: *mut u32,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(id_out, "id_out")?;
        let id = store.exclusive(Load::prekeys, |s| {
            Ok(s.generate_signed_prekey(timestamp_ms, &mut OsRng)?)
        })?;
        out.write(id);
        Ok(())
    })
}

/// Removes an old signed prekey (after rotation, once messages made with it
/// are no longer expected).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (it is the current signed prekey),
/// `RK_STATUS_MISSING_PREKEY` (no such id), `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_remove_signed_prekey(store: *mut rk_store, id: u32) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        store.exclusive(Load::prekeys, |s| Ok(s.remove_signed_prekey(id)?))?;
        Ok(())
    })
}

/// Generates `count` (at most `RK_MAX_PREKEYS_PER_CALL`) one-time prekeys
/// and writes them, for upload, into a new `rk_bytes` at `*records_out`
/// (freed with `rk_bytes_free`): `count` records of `RK_PREKEY_RECORD_LEN`
/// (37) bytes, each the id as 4 bytes big-endian followed by the 33-byte
/// public key. `count` 0 gives an empty buffer.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_LIMIT_EXCEEDED` (`count` too large, or prekey ids
/// exhausted), `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `records_out` must be
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_generate_prekeys(
    store: *mut rk_store,
    count: u32,
    records_out: *mut rk_bytes,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(records_out, "records_out")?;
        if count > RK_MAX_PREKEYS_PER_CALL {
            return Err(FfiError::new(
                rk_status::LimitExceeded,
                format!("count {count} is more than {RK_MAX_PREKEYS_PER_CALL} prekeys per call"),
            ));
        }
        // The output is allocated before the prekeys are kept: if that
        // fails, the store is unchanged.
        let records = store.exclusive(Load::prekeys, |s| {
            s.generate_prekeys_then(count, &mut OsRng, |keys| {
                let mut records = Vec::with_capacity(keys.len() * RK_PREKEY_RECORD_LEN);
                for (id, key) in keys {
                    records.extend_from_slice(&id.to_be_bytes());
                    records.extend_from_slice(&key.serialize());
                }
                OwnedBytes::from_vec(records)
            })
        })?;
        out.write(records.release());
        Ok(())
    })
}

/// The number of one-time prekeys the store holds (made and not yet used),
/// at `*count_out`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `count_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_prekey_count(
    store: *const rk_store,
    count_out: *mut usize,
) -> rk_status {
    // SAFETY: caller's contract.
    unsafe { write_count(store, count_out, Count::PreKeys) }
}

/// Generates `count` (at most `RK_MAX_KYBER_PREKEYS_PER_CALL`) signed
/// one-time Kyber prekeys (Kyber1024, signed by the identity key) created at
/// `timestamp_ms` (milliseconds since the Unix epoch), and writes them, for
/// upload, into a new `rk_bytes` at `*records_out` (freed with
/// `rk_bytes_free`): `count` records of `RK_KYBER_PREKEY_RECORD_LEN` (1637)
/// bytes, each the id as 4 bytes big-endian, the `RK_KEM_PUBLIC_KEY_LEN`
/// (1569) byte public key (`0x08` then 1568 bytes) and the
/// `RK_SIGNATURE_LEN` (64) byte signature over that key. A one-time Kyber
/// prekey is deleted after the first session it starts. `count` 0 gives an
/// empty buffer.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_LIMIT_EXCEEDED` (`count` too large, or Kyber prekey ids
/// exhausted), `RK_STATUS_POISONED`. On failure nothing is kept.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `records_out` must be
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_generate_kyber_prekeys(
    store: *mut rk_store,
    count: u32,
    timestamp_ms: u64,
    records_out: *mut rk_bytes,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(records_out, "records_out")?;
        if count > RK_MAX_KYBER_PREKEYS_PER_CALL {
            return Err(FfiError::new(
                rk_status::LimitExceeded,
                format!(
                    "count {count} is more than {RK_MAX_KYBER_PREKEYS_PER_CALL} Kyber prekeys \
                     per call"
                ),
            ));
        }
        // The output is allocated before the prekeys are kept.
        let records = store.exclusive(Load::prekeys, |s| {
            s.generate_kyber_prekeys_then(count, timestamp_ms, &mut OsRng, |keys| {
                let mut records = Vec::with_capacity(keys.len() * RK_KYBER_PREKEY_RECORD_LEN);
                for (id, key, signature) in keys {
                    records.extend_from_slice(&id.to_be_bytes());
                    records.extend_from_slice(&key.serialize());
                    records.extend_from_slice(signature);
                }
                OwnedBytes::from_vec(records)
            })
        })?;
        out.write(records.release());
        Ok(())
    })
}
/// Generates a new signed last-resort Kyber prekey created at
/// `timestamp_ms`, which becomes the one bundles carry when they carry no
/// one-time Kyber prekey (`rk_store_create_bundle` with 0,
/// `RK_KYBER_PREKEY_LAST_RESORT`). Unlike a one-time Kyber prekey it is kept
/// after use and serves any number of sessions; older last-resort prekeys
/// stay usable for messages in flight until removed with
/// `rk_store_remove_kyber_prekey`. Its id goes to `*id_out`; its public key
/// and signature, for upload, come from `rk_store_kyber_prekey`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_LIMIT_EXCEEDED` (Kyber prekey ids exhausted),
/// `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `id_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_generate_last_resort_kyber_prekey(
    store: *mut rk_store,
    timestamp_ms: u64,
    id_out: *mut u32,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(id_out, "id_out")?;
        let id = store.exclusive(Load::prekeys, |s| {
            Ok(s.generate_last_resort_kyber_prekey(timestamp_ms, &mut OsRng)?)
        })?;
        out.write(id);
        Ok(())
    })
}

/// The number of one-time Kyber prekeys the store holds (made and not yet
/// used; last-resort Kyber prekeys are not counted), at `*count_out`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `count_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_kyber_prekey_count(
    store: *const rk_store,
    count_out: *mut usize,
) -> rk_status {
    // SAFETY: caller's contract.
    unsafe { write_count(store, count_out, Count::KyberPreKeys) }
}

/// Writes the public record of the Kyber prekey `id` (one-time or last
/// resort) into `record_out`, which holds `record_cap` bytes (at least
/// `RK_KYBER_PREKEY_RECORD_LEN`): the id as 4 bytes big-endian, the
/// 1569-byte public key and the 64-byte signature, as
/// `rk_store_generate_kyber_prekeys` writes them. For uploading a
/// last-resort Kyber prekey.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_BUFFER_TOO_SMALL`, `RK_STATUS_MISSING_PREKEY` (the store holds
/// no Kyber prekey `id`: never made, removed, or a one-time one used up),
/// `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `record_out` must point to
/// `record_cap` writable bytes.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_kyber_prekey(
    store: *const rk_store,
    id: u32,
    record_out: *mut u8,
    record_cap: usize,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_buf(
            record_out,
            record_cap,
            RK_KYBER_PREKEY_RECORD_LEN,
            "record_out",
        )?;
        let record = store.shared(Load::prekeys, |s| {
            let k = s
                .kyber_prekey(id)
                .ok_or(crate::Error::MissingKyberPreKey(id))?;
            let mut record = Vec::with_capacity(RK_KYBER_PREKEY_RECORD_LEN);
            record.extend_from_slice(&k.id.to_be_bytes());
            record.extend_from_slice(&k.key_pair.public_key.serialize());
            record.extend_from_slice(&k.signature);
            Ok(record)
        })?;
        out.write(&record)
    })
}

/// The id of the current last-resort Kyber prekey (the one bundles carry),
/// if the store has made one. On `RK_STATUS_OK` both outputs are written:
/// `*has_out` is whether there is one, and `*id_out` its id (0 if none).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; the outputs must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_last_resort_kyber_prekey_id(
    store: *const rk_store,
    has_out: *mut bool,
    id_out: *mut u32,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let has_out = out_ptr(has_out, "has_out")?;
        let id_out = out_ptr(id_out, "id_out")?;
        let id = store.shared(Load::meta, |s| Ok(s.last_resort_kyber_prekey_id()))?;
        has_out.write(id.is_some());
        id_out.write(id.unwrap_or(0));
        Ok(())
    })
}

/// Removes the Kyber prekey `id`: a one-time Kyber prekey that will not be
/// used (withdrawn from the server), or an old last-resort Kyber prekey
/// after rotation (`rk_store_generate_last_resort_kyber_prekey`), once
/// prekey messages made with it are no longer expected. The current
/// last-resort Kyber prekey cannot be removed.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (it is the current last-resort Kyber
/// prekey), `RK_STATUS_MISSING_PREKEY` (no such id), `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_remove_kyber_prekey(store: *mut rk_store, id: u32) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        store.exclusive(Load::prekeys, |s| Ok(s.remove_kyber_prekey(id)?))?;
        Ok(())
    })
}

/// Makes a prekey bundle for this device that starts version-4 (PQXDH)
/// sessions. A signed prekey is generated first if there is none (with
/// `timestamp_ms`, milliseconds since the Unix epoch). With
/// `with_one_time_prekey` = 1, a new one-time prekey and a new one-time
/// Kyber prekey are made, kept, and put in the bundle (never handed out
/// twice); with 0, neither, and the bundle carries the last-resort Kyber
/// prekey (made on first use, then reused). The same as
/// `rk_store_create_bundle_with` with `RK_KYBER_PREKEY_ONE_TIME` or
/// `RK_KYBER_PREKEY_LAST_RESORT`. On `RK_STATUS_OK`, `*bundle_out` receives
/// a new handle the caller frees with `rk_bundle_free`; on failure nothing
/// is kept.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`with_one_time_prekey` not 0 or 1),
/// `RK_STATUS_LIMIT_EXCEEDED` (prekey ids exhausted), `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `bundle_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_create_bundle(
    store: *mut rk_store,
    with_one_time_prekey: u32,
    timestamp_ms: u64,
    bundle_out: *mut *mut rk_bundle,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let one_time = input_flag(with_one_time_prekey, "with_one_time_prekey")?;
        let out = out_ptr(bundle_out, "bundle_out")?;
        let bundle = store.exclusive(Load::prekeys, |s| {
            Ok(s.create_bundle(one_time, timestamp_ms, &mut OsRng)?)
        })?;
        out.write(rk_bundle::boxed(bundle));
        Ok(())
    })
}

/// Which Kyber prekey a bundle carries, from its C constant.
fn kyber_kind(value: u32) -> FfiResult<KyberPreKeyKind> {
    match value {
        RK_KYBER_PREKEY_NONE => Ok(KyberPreKeyKind::None),
        RK_KYBER_PREKEY_ONE_TIME => Ok(KyberPreKeyKind::OneTime),
        RK_KYBER_PREKEY_LAST_RESORT => Ok(KyberPreKeyKind::LastResort),
        v => Err(FfiError::invalid(format!(
            "kyber_prekey must be RK_KYBER_PREKEY_NONE (0), _ONE_TIME (1) or \
             _LAST_RESORT (2), got {v}"
        ))),
    }
}

/// Makes a prekey bundle for this device with the parts asked for. A signed
/// prekey is generated first if there is none (with `timestamp_ms`,
/// milliseconds since the Unix epoch). With `with_one_time_prekey` = 1, a
/// new one-time prekey is made, kept, and put in the bundle; with 0, none.
/// `kyber_prekey` chooses the Kyber prekey:
/// - `RK_KYBER_PREKEY_ONE_TIME`: a new one-time Kyber prekey, kept, used by
///   one session only;
/// - `RK_KYBER_PREKEY_LAST_RESORT`: the current last-resort Kyber prekey
///   (made on first use, with `timestamp_ms`), reused across bundles;
/// - `RK_KYBER_PREKEY_NONE`: none. Such a bundle starts a version-3 (X3DH)
///   session, which stores refuse by default (`rk_store_set_policy`).
///
/// With a Kyber prekey, the bundle starts version-4 (PQXDH) sessions. On
/// `RK_STATUS_OK`, `*bundle_out` receives a new handle the caller frees
/// with `rk_bundle_free`; on failure nothing is kept.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`with_one_time_prekey` not 0 or 1,
/// `kyber_prekey` not one of the `RK_KYBER_PREKEY_*` values),
/// `RK_STATUS_LIMIT_EXCEEDED` (prekey ids exhausted), `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `bundle_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_create_bundle_with(
    store: *mut rk_store,
    with_one_time_prekey: u32,
    kyber_prekey: u32,
    timestamp_ms: u64,
    bundle_out: *mut *mut rk_bundle,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let request = BundleRequest {
            one_time_prekey: input_flag(with_one_time_prekey, "with_one_time_prekey")?,
            kyber: kyber_kind(kyber_prekey)?,
            timestamp: timestamp_ms,
        };
        let out = out_ptr(bundle_out, "bundle_out")?;
        let bundle = store.exclusive(Load::prekeys, |s| {
            Ok(s.create_bundle_with(request, &mut OsRng)?)
        })?;
        out.write(rk_bundle::boxed(bundle));
        Ok(())
    })
}
