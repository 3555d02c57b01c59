//! The durable store's calls: each names what it reads and runs the
//! in-memory store's code on that view (see the module docs).

use rand::{CryptoRng, RngCore};

use super::{DurableStore, Load};
use crate::directory::{KeyUpload, PreKeyPolicy, PreKeyStatus, Rotation};
use crate::error::Result;
use crate::fingerprint::Fingerprint;
use crate::kem::KemPublicKey;
use crate::keys::{IdentityKeyPair, PublicKey};
use crate::prekey::{KyberPreKeyRecord, PreKeyBundle, PreKeyRecord, SignedPreKeyRecord};
use crate::session::SessionRecord;
use crate::spqr::SpqrPolicy;
use crate::store::{Address, BundleRequest, ProtocolStore, SessionPolicy};
use crate::wire::CiphertextMessage;

impl DurableStore {
    /// The local identity key pair.
    pub fn identity(&self) -> &IdentityKeyPair {
        &self.shared.identity
    }

    /// The local identity public key.
    pub fn identity_key(&self) -> &PublicKey {
        self.shared.identity.public_key()
    }

    /// The local registration id.
    pub fn registration_id(&self) -> u32 {
        self.shared.registration_id
    }

    /// The local device id.
    pub fn device_id(&self) -> u32 {
        self.shared.device_id
    }

    /// The identity key trusted for `name`, if any.
    pub fn trusted_identity(&self, name: &str) -> Result<Option<PublicKey>> {
        self.with(&Load::trust(name), false, |s| Ok(s.trusted_identity(name)))
    }

    /// As [`ProtocolStore::approve_identity`].
    pub fn approve_identity(&self, name: &str, identity_key: PublicKey) -> Result<bool> {
        self.with(&Load::trust(name), true, |s| {
            Ok(s.approve_identity(name, identity_key))
        })
    }

    /// The session policy.
    pub fn policy(&self) -> Result<SessionPolicy> {
        self.with(&Load::meta(), false, |s| Ok(s.policy()))
    }

    /// Sets the session policy.
    pub fn set_policy(&self, policy: SessionPolicy) -> Result<()> {
        self.with(&Load::meta(), true, |s| {
            s.set_policy(policy);
            Ok(())
        })
    }

    /// The SPQR policy (see [`ProtocolStore::set_spqr_policy`]).
    pub fn spqr_policy(&self) -> Result<SpqrPolicy> {
        self.with(&Load::meta(), false, |s| Ok(s.spqr_policy()))
    }

    /// Sets the SPQR policy, kept in the store's meta row.
    pub fn set_spqr_policy(&self, policy: SpqrPolicy) -> Result<()> {
        self.with(&Load::meta(), true, |s| {
            s.set_spqr_policy(policy);
            Ok(())
        })
    }

    /// As [`ProtocolStore::session_has_spqr`].
    pub fn session_has_spqr(&self, address: &Address) -> Result<Option<bool>> {
        self.with(&Load::session(address), false, |s| {
            Ok(s.session_has_spqr(address))
        })
    }

    /// As [`ProtocolStore::session_spqr_epoch`].
    pub fn session_spqr_epoch(&self, address: &Address) -> Result<Option<u64>> {
        self.with(&Load::session(address), false, |s| {
            Ok(s.session_spqr_epoch(address))
        })
    }

    /// As [`ProtocolStore::process_bundle`].
    pub fn process_bundle<R: RngCore + CryptoRng>(
        &self,
        address: &Address,
        bundle: &PreKeyBundle,
        rng: &mut R,
    ) -> Result<()> {
        self.with(&Load::new_session(address), true, |s| {
            s.process_bundle(address, bundle, rng)
        })
    }

    /// As [`ProtocolStore::has_session`].
    pub fn has_session(&self, address: &Address) -> Result<bool> {
        self.with(&Load::session(address), false, |s| {
            Ok(s.has_session(address))
        })
    }

    /// As [`ProtocolStore::session_version`].
    pub fn session_version(&self, address: &Address) -> Result<Option<u8>> {
        self.with(&Load::session(address), false, |s| {
            Ok(s.session_version(address))
        })
    }

    /// As [`ProtocolStore::session`].
    pub fn session(&self, address: &Address) -> Result<Option<SessionRecord>> {
        self.with(&Load::session(address), false, |s| Ok(s.session(address)))
    }

    /// The number of remote addresses with a session record (at most
    /// [`MAX_DURABLE_SESSIONS`](crate::store::MAX_DURABLE_SESSIONS)).
    pub fn session_count(&self) -> Result<usize> {
        self.shared.lock()?.session_count()
    }

    /// As [`ProtocolStore::remove_session`].
    pub fn remove_session(&self, address: &Address) -> Result<bool> {
        self.with(&Load::session(address), true, |s| {
            Ok(s.remove_session(address))
        })
    }

    /// As [`ProtocolStore::encrypt`]; the sending chain's advance is on
    /// disk before the message is returned, in every [`Durability`](super::Durability).
    pub fn encrypt(&self, address: &Address, plaintext: &[u8]) -> Result<CiphertextMessage> {
        self.with(&Load::session(address), true, |s| {
            s.encrypt(address, plaintext)
        })
    }

    /// As [`ProtocolStore::decrypt`]; the change is committed before the
    /// plaintext is returned.
    pub fn decrypt<R: RngCore + CryptoRng>(
        &self,
        address: &Address,
        message_type: u8,
        bytes: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        self.with(&Load::decrypt(address, message_type, bytes), false, |s| {
            s.decrypt(address, message_type, bytes, rng)
        })
    }

    /// As [`ProtocolStore::prepare_upload`], in one transaction.
    pub fn prepare_upload<R: RngCore + CryptoRng>(
        &self,
        count: u32,
        timestamp: u64,
        rng: &mut R,
    ) -> Result<KeyUpload> {
        self.with(&Load::prekeys(), true, |s| {
            s.prepare_upload(count, timestamp, rng)
        })
    }

    /// As [`ProtocolStore::prekey_status`].
    pub fn prekey_status(
        &self,
        now: u64,
        server_count: Option<u32>,
        policy: &PreKeyPolicy,
    ) -> Result<PreKeyStatus> {
        self.with(&Load::prekeys(), false, |s| {
            Ok(s.prekey_status(now, server_count, policy))
        })
    }

    /// As [`ProtocolStore::rotate_prekeys`], in one transaction.
    pub fn rotate_prekeys<R: RngCore + CryptoRng>(
        &self,
        now: u64,
        policy: &PreKeyPolicy,
        rng: &mut R,
    ) -> Result<Rotation> {
        self.with(&Load::prekeys(), true, |s| {
            s.rotate_prekeys(now, policy, rng)
        })
    }

    /// As [`ProtocolStore::generate_signed_prekey`].
    pub fn generate_signed_prekey<R: RngCore + CryptoRng>(
        &self,
        timestamp: u64,
        rng: &mut R,
    ) -> Result<u32> {
        self.with(&Load::prekeys(), true, |s| {
            s.generate_signed_prekey(timestamp, rng)
        })
    }

    /// As [`ProtocolStore::generate_prekeys`].
    pub fn generate_prekeys<R: RngCore + CryptoRng>(
        &self,
        count: u32,
        rng: &mut R,
    ) -> Result<Vec<(u32, PublicKey)>> {
        self.with(&Load::prekeys(), true, |s| s.generate_prekeys(count, rng))
    }

    /// As [`ProtocolStore::generate_kyber_prekeys`].
    pub fn generate_kyber_prekeys<R: RngCore + CryptoRng>(
        &self,
        count: u32,
        timestamp: u64,
        rng: &mut R,
    ) -> Result<Vec<(u32, KemPublicKey, [u8; 64])>> {
        self.with(&Load::prekeys(), true, |s| {
            s.generate_kyber_prekeys(count, timestamp, rng)
        })
    }

    /// As [`ProtocolStore::generate_last_resort_kyber_prekey`].
    pub fn generate_last_resort_kyber_prekey<R: RngCore + CryptoRng>(
        &self,
        timestamp: u64,
        rng: &mut R,
    ) -> Result<u32> {
        self.with(&Load::prekeys(), true, |s| {
            s.generate_last_resort_kyber_prekey(timestamp, rng)
        })
    }

    /// The number of one-time prekeys held.
    pub fn prekey_count(&self) -> Result<usize> {
        self.count_rows("prekeys")
    }

    /// The number of one-time Kyber prekeys held.
    pub fn kyber_prekey_count(&self) -> Result<usize> {
        self.count_rows("kyber_prekeys WHERE last_resort = 0")
    }

    /// A copy of Kyber prekey `id`, if held.
    pub fn kyber_prekey(&self, id: u32) -> Result<Option<KyberPreKeyRecord>> {
        self.with(&Load::prekeys(), false, |s| Ok(s.kyber_prekey(id).cloned()))
    }

    /// The current last-resort Kyber prekey's id, if any.
    pub fn last_resort_kyber_prekey_id(&self) -> Result<Option<u32>> {
        self.with(
            &Load::meta(),
            false,
            |s| Ok(s.last_resort_kyber_prekey_id()),
        )
    }

    /// As [`ProtocolStore::remove_signed_prekey`].
    pub fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.with(&Load::prekeys(), true, |s| s.remove_signed_prekey(id))
    }

    /// As [`ProtocolStore::remove_kyber_prekey`].
    pub fn remove_kyber_prekey(&self, id: u32) -> Result<()> {
        self.with(&Load::prekeys(), true, |s| s.remove_kyber_prekey(id))
    }

    /// As [`ProtocolStore::add_signed_prekey`].
    pub fn add_signed_prekey(&self, record: SignedPreKeyRecord, current: bool) -> Result<()> {
        self.with(&Load::prekeys(), true, |s| {
            s.add_signed_prekey(record, current)
        })
    }

    /// As [`ProtocolStore::add_prekey`].
    pub fn add_prekey(&self, record: PreKeyRecord) -> Result<()> {
        self.with(&Load::prekeys(), true, |s| s.add_prekey(record))
    }

    /// As [`ProtocolStore::add_kyber_prekey`].
    pub fn add_kyber_prekey(&self, record: KyberPreKeyRecord) -> Result<()> {
        self.with(&Load::prekeys(), true, |s| s.add_kyber_prekey(record))
    }

    /// As [`ProtocolStore::create_bundle`].
    pub fn create_bundle<R: RngCore + CryptoRng>(
        &self,
        with_prekey: bool,
        timestamp: u64,
        rng: &mut R,
    ) -> Result<PreKeyBundle> {
        self.with(&Load::prekeys(), true, |s| {
            s.create_bundle(with_prekey, timestamp, rng)
        })
    }

    /// As [`ProtocolStore::create_bundle_with`].
    pub fn create_bundle_with<R: RngCore + CryptoRng>(
        &self,
        request: BundleRequest,
        rng: &mut R,
    ) -> Result<PreKeyBundle> {
        self.with(&Load::prekeys(), true, |s| {
            s.create_bundle_with(request, rng)
        })
    }

    /// As [`ProtocolStore::safety_number`].
    pub fn safety_number(
        &self,
        name: &str,
        local_id: &[u8],
        remote_id: &[u8],
        iterations: u32,
        version: u32,
    ) -> Result<Fingerprint> {
        self.with(&Load::trust(name), false, |s| {
            s.safety_number(name, local_id, remote_id, iterations, version)
        })
    }

    /// Everything the store holds, as an in-memory store (for `save`, or a
    /// move to another database). [`Error::LimitExceeded`] when the store
    /// holds more than [`MAX_SESSIONS`](crate::store::MAX_SESSIONS)
    /// sessions, the most an in-memory store may.
    pub fn to_memory(&self) -> Result<ProtocolStore> {
        self.with(&Load::everything(), false, |s| Ok(s.clone()))
    }

    /// As [`ProtocolStore::save`]: every record, in the saved format.
    /// [`Error::LimitExceeded`] when the store holds more than
    /// [`MAX_SESSIONS`](crate::store::MAX_SESSIONS) sessions, the most the
    /// saved format may.
    pub fn save(&self) -> Result<Vec<u8>> {
        self.with(&Load::everything(), false, |s| Ok(s.save()))
    }

    fn count_rows(&self, from: &str) -> Result<usize> {
        let conn = self.shared.lock()?;
        conn.count(&format!("SELECT COUNT(*) FROM {from}"), [])
    }
}
