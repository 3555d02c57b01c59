//! The store's prekeys: signed prekeys, one-time EC prekeys, signed Kyber
//! prekeys (one-time and last resort), and the bundles made from them.
//!
//! Every operation is all-or-nothing: new keys are made aside and inserted
//! only when nothing can fail any more.

use std::collections::BTreeSet;

use rand::{CryptoRng, RngCore};

use super::{next_id, ProtocolStore};
use crate::error::{Error, Result};
use crate::kem::{KemKeyPair, KemPublicKey};
use crate::keys::{KeyPair, PublicKey};
use crate::prekey::{
    KyberPreKeyRecord, PreKeyBundle, PreKeyRecord, SignedPreKeyRecord, MAX_PREKEY_ID,
};

/// Which Kyber prekey a bundle carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KyberPreKeyKind {
    /// A new one-time Kyber prekey, deleted after its first successful use.
    OneTime,
    /// The store's current last-resort Kyber prekey (made on first use),
    /// kept and reused across bundles.
    LastResort,
    /// None: the bundle starts version-3 (X3DH) sessions.
    None,
}

/// What [`ProtocolStore::create_bundle_with`] puts in a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundleRequest {
    /// Include a new one-time EC prekey.
    pub one_time_prekey: bool,
    /// Which Kyber prekey to include.
    pub kyber: KyberPreKeyKind,
    /// Creation time of any key made for it, milliseconds since the epoch.
    pub timestamp: u64,
}

/// Fails unless `pair`'s public key is its private key's (the fields of a
/// key pair are public, so a caller can pair any two keys).
fn check_key_pair(pair: &KeyPair) -> Result<()> {
    if pair.private_key.public_key() != pair.public_key {
        return Err(Error::InvalidArgument(
            "the public key is not the private key's",
        ));
    }
    Ok(())
}

/// The first id from `start` on that `taken` does not hold.
fn free_id(mut id: u32, taken: impl Fn(u32) -> bool) -> Result<u32> {
    for _ in 0..MAX_PREKEY_ID {
        if !taken(id) {
            return Ok(id);
        }
        id = next_id(id);
    }
    Err(Error::LimitExceeded("all prekey ids are in use"))
}

impl ProtocolStore {
    /// Makes (without keeping) a signed prekey with the next free id.
    fn make_signed_prekey<R: RngCore + CryptoRng>(
        &self,
        timestamp: u64,
        rng: &mut R,
    ) -> Result<SignedPreKeyRecord> {
        let id = free_id(self.next_signed_prekey_id, |id| {
            self.signed_prekeys.contains_key(&id)
        })?;
        let key_pair = KeyPair::generate(rng);
        let signature = self
            .identity
            .private_key()
            .sign(&key_pair.public_key.serialize(), rng);
        Ok(SignedPreKeyRecord {
            id,
            key_pair,
            signature,
            timestamp,
        })
    }

    /// Keeps `record` as the current signed prekey.
    fn keep_signed_prekey(&mut self, record: SignedPreKeyRecord) -> u32 {
        self.prekeys_changed();
        let id = record.id;
        self.signed_prekeys.insert(id, record);
        self.current_signed_prekey = Some(id);
        self.next_signed_prekey_id = next_id(id);
        id
    }

    /// Generates a new signed prekey, which becomes the one put in bundles.
    /// Older signed prekeys stay usable for messages in flight. `timestamp`
    /// is milliseconds since the Unix epoch. Returns its id.
    pub fn generate_signed_prekey<R: RngCore + CryptoRng>(
        &mut self,
        timestamp: u64,
        rng: &mut R,
    ) -> Result<u32> {
        let record = self.make_signed_prekey(timestamp, rng)?;
        Ok(self.keep_signed_prekey(record))
    }

    /// Generates `count` one-time prekeys with fresh unique ids and returns
    /// their ids and public keys (for upload).
    pub fn generate_prekeys<R: RngCore + CryptoRng>(
        &mut self,
        count: u32,
        rng: &mut R,
    ) -> Result<Vec<(u32, PublicKey)>> {
        self.generate_prekeys_then(count, rng, |keys| Ok::<_, Error>(keys.to_vec()))
    }

    /// As [`generate_prekeys`](Self::generate_prekeys), handing the ids and
    /// public keys to `sink` before any prekey is kept: when `sink` fails
    /// (an output allocation at the C boundary), nothing changes.
    pub(crate) fn generate_prekeys_then<R, T, E>(
        &mut self,
        count: u32,
        rng: &mut R,
        sink: impl FnOnce(&[(u32, PublicKey)]) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        R: RngCore + CryptoRng,
        E: From<Error>,
    {
        if self.prekeys.len() as u64 + u64::from(count) > u64::from(MAX_PREKEY_ID) {
            return Err(Error::LimitExceeded("too many one-time prekeys").into());
        }
        let mut made: Vec<PreKeyRecord> = Vec::with_capacity(count as usize);
        let mut taken = BTreeSet::new();
        let mut next = self.next_prekey_id;
        for _ in 0..count {
            let id = free_id(next, |id| {
                self.prekeys.contains_key(&id) || taken.contains(&id)
            })?;
            taken.insert(id);
            made.push(PreKeyRecord {
                id,
                key_pair: KeyPair::generate(rng),
            });
            next = next_id(id);
        }
        let public: Vec<(u32, PublicKey)> =
            made.iter().map(|p| (p.id, p.key_pair.public_key)).collect();
        let out = sink(&public)?;
        self.prekeys_changed();
        for record in made {
            self.prekeys.insert(record.id, record);
        }
        self.next_prekey_id = next;
        Ok(out)
    }

    /// The number of one-time prekeys held.
    pub fn prekey_count(&self) -> usize {
        self.prekeys.len()
    }

    /// Removes a signed prekey (e.g. an old one after rotation), and the
    /// last-resort uses recorded with it.
    pub fn remove_signed_prekey(&mut self, id: u32) -> Result<()> {
        if self.current_signed_prekey == Some(id) {
            return Err(Error::InvalidArgument(
                "cannot remove the current signed prekey",
            ));
        }
        self.signed_prekeys
            .remove(&id)
            .ok_or(Error::MissingSignedPreKey(id))?;
        self.prekeys_changed();
        self.base_key_uses.retain(|u| u.signed_pre_key_id != id);
        Ok(())
    }

    /// Makes (without keeping) a signed Kyber prekey with the next free id.
    fn make_kyber_prekey<R: RngCore + CryptoRng>(
        &self,
        last_resort: bool,
        timestamp: u64,
        rng: &mut R,
    ) -> Result<KyberPreKeyRecord> {
        let id = free_id(self.next_kyber_prekey_id, |id| {
            self.kyber_prekeys.contains_key(&id)
        })?;
        let key_pair = KemKeyPair::generate(rng);
        let signature = self
            .identity
            .private_key()
            .sign(&key_pair.public_key.serialize(), rng);
        Ok(KyberPreKeyRecord {
            id,
            key_pair,
            signature,
            timestamp,
            last_resort,
        })
    }

    /// Keeps a Kyber prekey made by [`make_kyber_prekey`](Self::make_kyber_prekey);
    /// a last-resort one becomes the current last-resort key.
    fn keep_kyber_prekey(&mut self, record: KyberPreKeyRecord) -> u32 {
        self.prekeys_changed();
        let id = record.id;
        if record.last_resort {
            self.current_last_resort = Some(id);
        }
        self.kyber_prekeys.insert(id, record);
        self.next_kyber_prekey_id = next_id(id);
        id
    }

    /// Generates `count` signed one-time Kyber prekeys and returns their
    /// ids, public keys and signatures (for upload).
    pub fn generate_kyber_prekeys<R: RngCore + CryptoRng>(
        &mut self,
        count: u32,
        timestamp: u64,
        rng: &mut R,
    ) -> Result<Vec<(u32, KemPublicKey, [u8; 64])>> {
        self.generate_kyber_prekeys_then(count, timestamp, rng, |keys| {
            Ok::<_, Error>(keys.to_vec())
        })
    }

    /// As [`generate_kyber_prekeys`](Self::generate_kyber_prekeys), handing
    /// the ids, public keys and signatures to `sink` before any prekey is
    /// kept: when `sink` fails, nothing changes.
    pub(crate) fn generate_kyber_prekeys_then<R, T, E>(
        &mut self,
        count: u32,
        timestamp: u64,
        rng: &mut R,
        sink: impl FnOnce(&[(u32, KemPublicKey, [u8; 64])]) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        R: RngCore + CryptoRng,
        E: From<Error>,
    {
        if self.kyber_prekeys.len() as u64 + u64::from(count) > u64::from(MAX_PREKEY_ID) {
            return Err(Error::LimitExceeded("too many Kyber prekeys").into());
        }
        let mut made: Vec<KyberPreKeyRecord> = Vec::with_capacity(count as usize);
        let mut taken = BTreeSet::new();
        let mut next = self.next_kyber_prekey_id;
        for _ in 0..count {
            let id = free_id(next, |id| {
                self.kyber_prekeys.contains_key(&id) || taken.contains(&id)
            })?;
            taken.insert(id);
            let key_pair = KemKeyPair::generate(rng);
            let signature = self
                .identity
                .private_key()
                .sign(&key_pair.public_key.serialize(), rng);
            made.push(KyberPreKeyRecord {
                id,
                key_pair,
                signature,
                timestamp,
                last_resort: false,
            });
            next = next_id(id);
        }
        let public: Vec<_> = made
            .iter()
            .map(|k| (k.id, k.key_pair.public_key.clone(), k.signature))
            .collect();
        let out = sink(&public)?;
        self.prekeys_changed();
        for record in made {
            self.kyber_prekeys.insert(record.id, record);
        }
        self.next_kyber_prekey_id = next;
        Ok(out)
    }

    /// Generates a new signed last-resort Kyber prekey, which becomes the
    /// one put in bundles that ask for the last-resort key. Older ones stay
    /// usable until removed. Returns its id.
    pub fn generate_last_resort_kyber_prekey<R: RngCore + CryptoRng>(
        &mut self,
        timestamp: u64,
        rng: &mut R,
    ) -> Result<u32> {
        let record = self.make_kyber_prekey(true, timestamp, rng)?;
        Ok(self.keep_kyber_prekey(record))
    }

    /// The number of one-time Kyber prekeys held (last-resort keys not
    /// counted).
    pub fn kyber_prekey_count(&self) -> usize {
        self.kyber_prekeys
            .values()
            .filter(|k| !k.last_resort)
            .count()
    }

    /// The Kyber prekey with `id`, if held.
    pub fn kyber_prekey(&self, id: u32) -> Option<&KyberPreKeyRecord> {
        self.kyber_prekeys.get(&id)
    }

    /// The current last-resort Kyber prekey's id, if one was made.
    pub fn last_resort_kyber_prekey_id(&self) -> Option<u32> {
        self.current_last_resort
    }

    /// Removes a Kyber prekey (a one-time key not used, or an old
    /// last-resort key after rotation) and forgets the uses recorded with
    /// it. The current last-resort key cannot be removed: make a new one
    /// first.
    pub fn remove_kyber_prekey(&mut self, id: u32) -> Result<()> {
        if self.current_last_resort == Some(id) {
            return Err(Error::InvalidArgument(
                "cannot remove the current last-resort Kyber prekey",
            ));
        }
        self.kyber_prekeys
            .remove(&id)
            .ok_or(Error::MissingKyberPreKey(id))?;
        self.prekeys_changed();
        self.base_key_uses.retain(|u| u.kyber_pre_key_id != id);
        Ok(())
    }

    /// Adds a signed prekey made elsewhere (an import from another store or
    /// library); `current` makes it the one put in bundles. Its id must be
    /// free and in range, its public key must be its private key's, no
    /// other signed prekey may hold the same key, and its signature must
    /// verify under this store's identity.
    pub fn add_signed_prekey(&mut self, record: SignedPreKeyRecord, current: bool) -> Result<()> {
        crate::prekey::check_prekey_id(record.id)?;
        if self.signed_prekeys.contains_key(&record.id) {
            return Err(Error::InvalidArgument("signed prekey id already in use"));
        }
        check_key_pair(&record.key_pair)?;
        let public = record.key_pair.public_key;
        if self
            .signed_prekeys
            .values()
            .any(|r| r.key_pair.public_key == public)
        {
            return Err(Error::InvalidArgument(
                "signed prekey already held under another id",
            ));
        }
        if !self
            .identity_key()
            .verify_signature(&public.serialize(), &record.signature)
        {
            return Err(Error::InvalidSignature(
                "signed prekey signature does not verify under this identity",
            ));
        }
        let id = record.id;
        self.signed_prekeys.insert(id, record);
        if current {
            self.current_signed_prekey = Some(id);
        }
        self.prekeys_changed();
        Ok(())
    }

    /// Adds a one-time prekey made elsewhere. Its id must be free and in
    /// range, its public key its private key's, and its key not held under
    /// another id.
    pub fn add_prekey(&mut self, record: PreKeyRecord) -> Result<()> {
        crate::prekey::check_prekey_id(record.id)?;
        if self.prekeys.contains_key(&record.id) {
            return Err(Error::InvalidArgument("prekey id already in use"));
        }
        check_key_pair(&record.key_pair)?;
        let public = record.key_pair.public_key;
        if self
            .prekeys
            .values()
            .any(|r| r.key_pair.public_key == public)
        {
            return Err(Error::InvalidArgument(
                "prekey already held under another id",
            ));
        }
        self.prekeys.insert(record.id, record);
        self.prekeys_changed();
        Ok(())
    }

    /// Adds a signed Kyber prekey made elsewhere; a last-resort one becomes
    /// the current last-resort key. Its id must be free and in range, its
    /// public key must be the one its secret key embeds (as a restore
    /// rebuilds it), no other Kyber prekey may hold the same key, and its
    /// signature must verify under this store's identity.
    pub fn add_kyber_prekey(&mut self, record: KyberPreKeyRecord) -> Result<()> {
        crate::prekey::check_prekey_id(record.id)?;
        if self.kyber_prekeys.contains_key(&record.id) {
            return Err(Error::InvalidArgument("Kyber prekey id already in use"));
        }
        let rebuilt = KemKeyPair::from_secret_key(record.key_pair.secret_key.clone())?;
        if rebuilt.public_key != record.key_pair.public_key {
            return Err(Error::InvalidKemKey(
                "Kyber prekey public key is not the one its secret key holds",
            ));
        }
        let public = &record.key_pair.public_key;
        if self
            .kyber_prekeys
            .values()
            .any(|r| r.key_pair.public_key == *public)
        {
            return Err(Error::InvalidArgument(
                "Kyber prekey already held under another id",
            ));
        }
        if !self
            .identity_key()
            .verify_signature(&public.serialize(), &record.signature)
        {
            return Err(Error::InvalidSignature(
                "Kyber prekey signature does not verify under this identity",
            ));
        }
        if record.last_resort {
            self.current_last_resort = Some(record.id);
        }
        self.kyber_prekeys.insert(record.id, record);
        self.prekeys_changed();
        Ok(())
    }

    /// A bundle for this device. A signed prekey is made if none exists.
    /// With `one_time_prekey`, a new one-time EC prekey and a new one-time
    /// Kyber prekey are made, kept, and put in the bundle (never handed out
    /// twice); without, the bundle carries the last-resort Kyber prekey
    /// (made on first use). Either way the bundle starts a version-4
    /// (PQXDH) session; [`create_bundle_with`](Self::create_bundle_with)
    /// chooses each part.
    pub fn create_bundle<R: RngCore + CryptoRng>(
        &mut self,
        one_time_prekey: bool,
        timestamp: u64,
        rng: &mut R,
    ) -> Result<PreKeyBundle> {
        let kyber = if one_time_prekey {
            KyberPreKeyKind::OneTime
        } else {
            KyberPreKeyKind::LastResort
        };
        self.create_bundle_with(
            BundleRequest {
                one_time_prekey,
                kyber,
                timestamp,
            },
            rng,
        )
    }

    /// A bundle for this device with the parts `request` asks for. A signed
    /// prekey (and a last-resort Kyber prekey, when asked for) is made if
    /// none exists. Nothing is kept unless the bundle is made.
    pub fn create_bundle_with<R: RngCore + CryptoRng>(
        &mut self,
        request: BundleRequest,
        rng: &mut R,
    ) -> Result<PreKeyBundle> {
        let new_signed = match self.current_signed_prekey {
            Some(_) => None,
            None => Some(self.make_signed_prekey(request.timestamp, rng)?),
        };
        let signed = match (&new_signed, self.current_signed_prekey) {
            (Some(record), _) => record,
            (None, Some(id)) => self
                .signed_prekeys
                .get(&id)
                .ok_or(Error::MissingSignedPreKey(id))?,
            (None, None) => return Err(Error::InvalidArgument("no signed prekey")),
        };
        if request.one_time_prekey && self.prekeys.len() as u64 >= u64::from(MAX_PREKEY_ID) {
            return Err(Error::LimitExceeded("too many one-time prekeys"));
        }
        let new_prekey = if request.one_time_prekey {
            let id = free_id(self.next_prekey_id, |id| self.prekeys.contains_key(&id))?;
            Some(PreKeyRecord {
                id,
                key_pair: KeyPair::generate(rng),
            })
        } else {
            None
        };
        let new_kyber = match (request.kyber, self.current_last_resort) {
            (KyberPreKeyKind::OneTime, _) => {
                Some(self.make_kyber_prekey(false, request.timestamp, rng)?)
            }
            (KyberPreKeyKind::LastResort, None) => {
                Some(self.make_kyber_prekey(true, request.timestamp, rng)?)
            }
            _ => None,
        };
        let kyber = match (&new_kyber, request.kyber, self.current_last_resort) {
            (Some(record), _, _) => Some(record),
            (None, KyberPreKeyKind::LastResort, Some(id)) => Some(
                self.kyber_prekeys
                    .get(&id)
                    .ok_or(Error::MissingKyberPreKey(id))?,
            ),
            _ => None,
        };
        let mut bundle = PreKeyBundle::new(
            self.registration_id,
            self.device_id,
            *self.identity_key(),
            signed.id,
            signed.key_pair.public_key,
            &signed.signature,
            new_prekey.as_ref().map(|p| (p.id, p.key_pair.public_key)),
        )?;
        if let Some(k) = kyber {
            bundle =
                bundle.with_kyber_pre_key(k.id, k.key_pair.public_key.clone(), &k.signature)?;
        }
        // Nothing fails from here on.
        if let Some(record) = new_signed {
            self.keep_signed_prekey(record);
        }
        if let Some(record) = new_prekey {
            self.prekeys_changed();
            self.next_prekey_id = next_id(record.id);
            self.prekeys.insert(record.id, record);
        }
        if let Some(record) = new_kyber {
            self.keep_kyber_prekey(record);
        }
        Ok(bundle)
    }
}
