//! The key directory: the prekey lifecycle of a device that publishes its
//! keys through a key server, as in the Signal flow.
//!
//! A device uploads its public identity key, its current signed prekey, a
//! last-resort Kyber prekey and a batch of one-time EC and Kyber prekeys
//! ([`ProtocolStore::prepare_upload`]); the store keeps every private half,
//! which is how it remembers what was uploaded. The server hands each
//! one-time key out once; the owner refills when the server's count drops
//! below a threshold and rotates its signed and last-resort prekeys after
//! an age the application chooses, keeping the previous ones for a grace
//! period so that messages in flight still decrypt
//! ([`ProtocolStore::prekey_status`], [`ProtocolStore::rotate_prekeys`]).
//! A sender turns the server's answer into bundles with [`parse_bundles`].
//!
//! The formats are those of the reference server (`ratchetkit-keyserver`,
//! keyserver/README.md): JSON with keys in Signal's serialization, base64
//! (standard alphabet, padded). The library speaks no HTTP; [`sign_request`]
//! makes the `Authorization` header value a request to the server carries.

mod auth;
mod json;

use rand::{CryptoRng, RngCore};

pub use auth::{sign_request, signed_message, AuthRequest, AUTH_CONTEXT};
pub use json::{parse_bundles, DirectoryBundle};

use crate::error::{Error, Result};
use crate::kem::KemPublicKey;
use crate::keys::PublicKey;
use crate::prekey::MAX_PREKEY_ID;
use crate::store::ProtocolStore;

/// The version of the upload format [`KeyUpload::to_json`] writes.
pub const UPLOAD_FORMAT_VERSION: u32 = 1;

/// The most one-time prekeys of each kind one upload carries (the
/// reference server refuses more).
pub const MAX_UPLOAD_BATCH: u32 = 200;

/// A signed prekey as uploaded: id, public key, signature by the identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedSignedPreKey {
    /// The prekey id.
    pub id: u32,
    /// The public key.
    pub public_key: PublicKey,
    /// XEdDSA signature by the identity key over the serialized public key.
    pub signature: [u8; 64],
}

/// A signed Kyber prekey as uploaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedKyberPreKey {
    /// The prekey id.
    pub id: u32,
    /// The Kyber public key.
    pub public_key: KemPublicKey,
    /// XEdDSA signature by the identity key over the serialized public key.
    pub signature: [u8; 64],
}

/// What a device uploads to the key server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUpload {
    /// The device's identity key.
    pub identity_key: PublicKey,
    /// The device's registration id.
    pub registration_id: u32,
    /// The device id (the server takes it from the request path).
    pub device_id: u32,
    /// The current signed prekey.
    pub signed_prekey: UploadedSignedPreKey,
    /// The current last-resort Kyber prekey.
    pub last_resort_kyber_prekey: UploadedKyberPreKey,
    /// New one-time EC prekeys.
    pub prekeys: Vec<(u32, PublicKey)>,
    /// New one-time Kyber prekeys.
    pub kyber_prekeys: Vec<UploadedKyberPreKey>,
}

/// When the application wants its keys refilled and rotated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreKeyPolicy {
    /// Refill when fewer one-time prekeys than this are left.
    pub refill_below: u32,
    /// Rotate the signed and last-resort prekeys once they are this old
    /// (milliseconds).
    pub rotate_after_ms: u64,
    /// Keep a replaced signed or last-resort prekey this long after its
    /// successor was made (milliseconds), for messages in flight.
    pub grace_ms: u64,
}

impl Default for PreKeyPolicy {
    /// Refill below 20 keys, rotate weekly, keep old keys for 30 days.
    fn default() -> Self {
        PreKeyPolicy {
            refill_below: 20,
            rotate_after_ms: 7 * 24 * 3600 * 1000,
            grace_ms: 30 * 24 * 3600 * 1000,
        }
    }
}

/// What the store's prekeys need, from [`ProtocolStore::prekey_status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreKeyStatus {
    /// One-time EC prekeys held (uploaded and not yet used by a message).
    pub prekeys_held: usize,
    /// One-time Kyber prekeys held.
    pub kyber_prekeys_held: usize,
    /// Time since the current signed prekey was made (ms); `None`: none.
    pub signed_prekey_age_ms: Option<u64>,
    /// Time since the current last-resort Kyber prekey was made (ms).
    pub last_resort_age_ms: Option<u64>,
    /// Upload a new batch of one-time prekeys.
    pub refill: bool,
    /// Rotate the signed and last-resort prekeys (then upload).
    pub rotate: bool,
    /// Replaced prekeys past their grace period, which
    /// [`ProtocolStore::rotate_prekeys`] removes.
    pub expired: usize,
}

/// What [`ProtocolStore::rotate_prekeys`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// A new signed prekey and last-resort Kyber prekey were made (upload
    /// them).
    pub rotated: bool,
    /// Replaced signed and last-resort prekeys removed after their grace
    /// period.
    pub removed: usize,
}

/// The replaced keys among `keys` (id, creation time) that are past
/// `grace_ms` at `now`: a key is replaced when a newer one exists, from the
/// time the next newer one was made. `current` is never among them.
fn expired_ids(
    mut keys: Vec<(u32, u64)>,
    current: Option<u32>,
    now: u64,
    grace_ms: u64,
) -> Vec<u32> {
    keys.sort_by_key(|&(id, ts)| (ts, id));
    let mut out = Vec::new();
    for (i, &(id, _)) in keys.iter().enumerate() {
        if Some(id) == current {
            continue;
        }
        // The successor: the next key made after this one.
        let Some(&(_, replaced_at)) = keys.get(i + 1) else {
            continue;
        };
        if now.saturating_sub(replaced_at) >= grace_ms {
            out.push(id);
        }
    }
    out
}

impl ProtocolStore {
    /// The signed prekeys (id, creation time).
    fn signed_prekey_times(&self) -> Vec<(u32, u64)> {
        self.signed_prekeys
            .values()
            .map(|r| (r.id, r.timestamp))
            .collect()
    }

    /// The last-resort Kyber prekeys (id, creation time).
    fn last_resort_times(&self) -> Vec<(u32, u64)> {
        self.kyber_prekeys
            .values()
            .filter(|r| r.last_resort)
            .map(|r| (r.id, r.timestamp))
            .collect()
    }

    /// Makes a new upload: the current signed prekey and last-resort Kyber
    /// prekey (each made first if the store has none) and `count` new
    /// one-time EC and Kyber prekeys, which the store keeps. `timestamp`
    /// (ms since the Unix epoch) dates the keys made. `count` is at most
    /// [`MAX_UPLOAD_BATCH`]; 0 uploads only the signed keys (after a
    /// rotation). All or nothing: the checks come before any key is kept.
    pub fn prepare_upload<R: RngCore + CryptoRng>(
        &mut self,
        count: u32,
        timestamp: u64,
        rng: &mut R,
    ) -> Result<KeyUpload> {
        if count > MAX_UPLOAD_BATCH {
            return Err(Error::LimitExceeded(
                "more one-time prekeys than one upload carries (MAX_UPLOAD_BATCH)",
            ));
        }
        // With room for `count` (and two more) ids, no id search below can
        // fail, so nothing is kept unless everything is made.
        let room =
            |held: usize, more: u32| held as u64 + u64::from(more) <= u64::from(MAX_PREKEY_ID);
        if !room(self.prekeys.len(), count)
            || !room(self.kyber_prekeys.len(), count + 1)
            || !room(self.signed_prekeys.len(), 1)
        {
            return Err(Error::LimitExceeded("too many prekeys held"));
        }
        if self.current_signed_prekey.is_none() {
            self.generate_signed_prekey(timestamp, rng)?;
        }
        if self.current_last_resort.is_none() {
            self.generate_last_resort_kyber_prekey(timestamp, rng)?;
        }
        let prekeys = self.generate_prekeys(count, rng)?;
        let kyber_prekeys = self
            .generate_kyber_prekeys(count, timestamp, rng)?
            .into_iter()
            .map(|(id, public_key, signature)| UploadedKyberPreKey {
                id,
                public_key,
                signature,
            })
            .collect();
        Ok(KeyUpload {
            identity_key: *self.identity_key(),
            registration_id: self.registration_id(),
            device_id: self.device_id(),
            signed_prekey: self.current_signed_upload()?,
            last_resort_kyber_prekey: self.current_last_resort_upload()?,
            prekeys,
            kyber_prekeys,
        })
    }

    fn current_signed_upload(&self) -> Result<UploadedSignedPreKey> {
        let id = self
            .current_signed_prekey
            .ok_or(Error::InvalidArgument("no signed prekey"))?;
        let r = self
            .signed_prekeys
            .get(&id)
            .ok_or(Error::MissingSignedPreKey(id))?;
        Ok(UploadedSignedPreKey {
            id,
            public_key: r.key_pair.public_key,
            signature: r.signature,
        })
    }

    fn current_last_resort_upload(&self) -> Result<UploadedKyberPreKey> {
        let id = self
            .current_last_resort
            .ok_or(Error::InvalidArgument("no last-resort Kyber prekey"))?;
        let r = self
            .kyber_prekeys
            .get(&id)
            .ok_or(Error::MissingKyberPreKey(id))?;
        Ok(UploadedKyberPreKey {
            id,
            public_key: r.key_pair.public_key.clone(),
            signature: r.signature,
        })
    }

    /// What the prekeys need at `now` (ms since the Unix epoch) under
    /// `policy`. `server_count` is the number of one-time prekeys the
    /// server says it still holds (its count endpoint); without it the
    /// store's own count (keys not yet used by a message, an upper bound)
    /// decides.
    pub fn prekey_status(
        &self,
        now: u64,
        server_count: Option<u32>,
        policy: &PreKeyPolicy,
    ) -> PreKeyStatus {
        let prekeys_held = self.prekeys.len();
        let kyber_prekeys_held = self.kyber_prekey_count();
        let age = |ts: u64| now.saturating_sub(ts);
        let signed_prekey_age_ms = self
            .current_signed_prekey
            .and_then(|id| self.signed_prekeys.get(&id))
            .map(|r| age(r.timestamp));
        let last_resort_age_ms = self
            .current_last_resort
            .and_then(|id| self.kyber_prekeys.get(&id))
            .map(|r| age(r.timestamp));
        let left = server_count.map_or(prekeys_held.min(kyber_prekeys_held) as u64, u64::from);
        let old = |a: Option<u64>| a.is_none_or(|a| a >= policy.rotate_after_ms);
        let expired = expired_ids(
            self.signed_prekey_times(),
            self.current_signed_prekey,
            now,
            policy.grace_ms,
        )
        .len()
            + expired_ids(
                self.last_resort_times(),
                self.current_last_resort,
                now,
                policy.grace_ms,
            )
            .len();
        PreKeyStatus {
            prekeys_held,
            kyber_prekeys_held,
            signed_prekey_age_ms,
            last_resort_age_ms,
            refill: left < u64::from(policy.refill_below),
            rotate: old(signed_prekey_age_ms) || old(last_resort_age_ms),
            expired,
        }
    }

    /// Rotates and prunes at `now` (ms since the Unix epoch) under
    /// `policy`: when the current signed or last-resort prekey is at least
    /// `rotate_after_ms` old (or missing), makes a new signed prekey and a
    /// new last-resort Kyber prekey (upload them next, e.g.
    /// [`prepare_upload`](Self::prepare_upload) with a count of 0); then
    /// removes replaced ones whose successor is at least `grace_ms` old.
    /// The previous keys stay until then, so messages that senders started
    /// from bundles fetched before the rotation still decrypt.
    pub fn rotate_prekeys<R: RngCore + CryptoRng>(
        &mut self,
        now: u64,
        policy: &PreKeyPolicy,
        rng: &mut R,
    ) -> Result<Rotation> {
        let status = self.prekey_status(now, Some(u32::MAX), policy);
        let mut rotation = Rotation::default();
        if status.rotate {
            if self.signed_prekeys.len() as u64 >= u64::from(MAX_PREKEY_ID)
                || self.kyber_prekeys.len() as u64 >= u64::from(MAX_PREKEY_ID)
            {
                return Err(Error::LimitExceeded("too many prekeys held"));
            }
            self.generate_signed_prekey(now, rng)?;
            self.generate_last_resort_kyber_prekey(now, rng)?;
            rotation.rotated = true;
        }
        for id in expired_ids(
            self.signed_prekey_times(),
            self.current_signed_prekey,
            now,
            policy.grace_ms,
        ) {
            self.remove_signed_prekey(id)?;
            rotation.removed += 1;
        }
        for id in expired_ids(
            self.last_resort_times(),
            self.current_last_resort,
            now,
            policy.grace_ms,
        ) {
            self.remove_kyber_prekey(id)?;
            rotation.removed += 1;
        }
        Ok(rotation)
    }
}

#[cfg(test)]
mod tests;
