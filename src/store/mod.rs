//! The protocol store an application holds for one local device: identity,
//! registration id, prekeys, sessions per remote address and trusted
//! identities. Every operation is all-or-nothing: when it fails, the store
//! is exactly as it was.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::fingerprint::Fingerprint;
use crate::keys::{generate_registration_id, IdentityKeyPair, PublicKey};
use crate::prekey::{
    KyberPreKeyRecord, PreKeyBundle, PreKeyRecord, SignedPreKeyRecord, MAX_PREKEY_ID,
};
use crate::scrub;
use crate::session::{SessionRecord, SessionState, StateSource};
use crate::spqr::SpqrPolicy;
use crate::wire::{
    CiphertextMessage, PreKeySignalMessage, SignalMessageRef, MAX_PLAINTEXT_LEN, MESSAGE_VERSION,
    PREKEY_TYPE, WHISPER_TYPE,
};
use crate::x3dh;

/// An in-memory store holds sessions for at most this many remote
/// addresses, and the saved format (`save`, `restore`) at most this many.
/// A new session for another address beyond it (from
/// [`ProtocolStore::process_bundle`] or an incoming prekey message) is
/// [`Error::LimitExceeded`]; sessions can be dropped with
/// [`ProtocolStore::remove_session`].
pub const MAX_SESSIONS: usize = 65_536;

/// A durable store holds sessions for at most this many remote addresses
/// (2^20): it reads only the sessions a call needs, so its cap bounds the
/// file, not memory. A new session beyond it is [`Error::LimitExceeded`].
/// Saving a durable store that holds more than [`MAX_SESSIONS`] is
/// [`Error::LimitExceeded`] too, since no in-memory store could restore it.
pub const MAX_DURABLE_SESSIONS: usize = 1 << 20;

/// A remote device: the user's name (or service id) and a device id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// The remote user's name.
    pub name: String,
    /// The remote device id (1 is the primary device).
    pub device_id: u32,
}

impl Address {
    /// An address from a name and a device id.
    pub fn new(name: impl Into<String>, device_id: u32) -> Self {
        Address {
            name: name.into(),
            device_id,
        }
    }
}

/// Every change to a session record takes a new number from this counter
/// (process-wide, so a record removed and made again never repeats one).
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

fn next_generation() -> u64 {
    NEXT_GENERATION.fetch_add(1, Ordering::Relaxed)
}

/// One address's session record behind its own lock, so that different
/// sessions of one store encrypt and decrypt in parallel.
///
/// The record is boxed: the store's map moves its values when it grows or
/// rebalances, and a moved record would leave its root and chain keys in
/// the map's freed or reused nodes. Boxed, only the pointer moves.
///
/// `generation` changes with every committed change to the record, so that
/// work planned from a snapshot of it (a prekey message decrypted under
/// the store's shared lock) can tell at commit whether the record changed.
#[derive(Debug)]
pub(crate) struct SessionCell {
    record: Box<Mutex<SessionRecord>>,
    generation: AtomicU64,
}

impl Default for SessionCell {
    fn default() -> Self {
        SessionCell::new(SessionRecord::default())
    }
}

impl SessionCell {
    pub(crate) fn new(record: SessionRecord) -> Self {
        SessionCell {
            record: Box::new(Mutex::new(record)),
            generation: AtomicU64::new(next_generation()),
        }
    }
    /// Locks the record. Every change to a record is committed in one step
    /// after all checks, so a lock poisoned by a panic still guards a whole
    /// record and is used as is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, SessionRecord> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }
    pub(crate) fn get_mut(&mut self) -> &mut SessionRecord {
        self.generation.store(next_generation(), Ordering::Relaxed);
        self.record
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
    }
    /// Marks a change made through [`lock`](Self::lock); call it while the
    /// lock is held.
    fn changed(&self) {
        self.generation.store(next_generation(), Ordering::Relaxed);
    }
    /// The record's current generation. Read it while holding the record's
    /// lock or the store exclusively.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

impl Clone for SessionCell {
    fn clone(&self) -> Self {
        SessionCell::new(self.lock().clone())
    }
}

/// Trusted identities by remote name, behind a reader-writer lock.
#[derive(Debug, Default)]
pub(crate) struct TrustMap(RwLock<BTreeMap<String, PublicKey>>);

impl TrustMap {
    pub(crate) fn new(map: BTreeMap<String, PublicKey>) -> Self {
        TrustMap(RwLock::new(map))
    }
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, PublicKey>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }
    pub(crate) fn get_mut(&mut self) -> &mut BTreeMap<String, PublicKey> {
        self.0.get_mut().unwrap_or_else(PoisonError::into_inner)
    }
    /// Trust on first use from a shared reference: records `key` for `name`
    /// unless some key is already trusted.
    fn trust_if_unknown(&self, name: &str, key: PublicKey) {
        if self.read().contains_key(name) {
            return;
        }
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.to_owned())
            .or_insert(key);
    }
}

impl Clone for TrustMap {
    fn clone(&self) -> Self {
        TrustMap::new(self.read().clone())
    }
}

/// The protocol store of one local device.
///
/// `ProtocolStore` is `Send + Sync`. [`encrypt`](Self::encrypt) and
/// [`decrypt_message`](Self::decrypt_message) take `&self` and lock only the
/// one session they use, so independent sessions run in parallel from
/// several threads; operations that create sessions or change keys and trust
/// take `&mut self`.
#[derive(Clone, Debug)]
pub struct ProtocolStore {
    pub(crate) identity: IdentityKeyPair,
    pub(crate) registration_id: u32,
    pub(crate) device_id: u32,
    pub(crate) signed_prekeys: BTreeMap<u32, SignedPreKeyRecord>,
    pub(crate) current_signed_prekey: Option<u32>,
    pub(crate) prekeys: BTreeMap<u32, PreKeyRecord>,
    pub(crate) next_prekey_id: u32,
    pub(crate) next_signed_prekey_id: u32,
    pub(crate) kyber_prekeys: BTreeMap<u32, KyberPreKeyRecord>,
    pub(crate) current_last_resort: Option<u32>,
    pub(crate) next_kyber_prekey_id: u32,
    pub(crate) base_key_uses: BaseKeyUses,
    pub(crate) policy: SessionPolicy,
    /// Whether new version-4 sessions speak SPQR (default: required).
    pub(crate) spqr_policy: SpqrPolicy,
    /// Changes with every change of prekeys or policy (not saved): a prekey
    /// message opened before such a change is opened again before it is
    /// applied.
    pub(crate) prekeys_generation: u64,
    pub(crate) sessions: BTreeMap<Address, SessionCell>,
    pub(crate) trusted: TrustMap,
    /// Sessions held elsewhere and not in `sessions` (a durable store's
    /// view holds only the records a call needs): counted against
    /// `session_cap`. Always 0 for an in-memory store.
    pub(crate) unloaded_sessions: usize,
    /// The most sessions this store may hold: [`MAX_SESSIONS`] in memory,
    /// [`MAX_DURABLE_SESSIONS`] in a durable store's view.
    pub(crate) session_cap: usize,
}

/// A prekey message decrypted against a snapshot, not yet applied.
pub(crate) struct OpenedPreKeyMessage {
    address: Address,
    identity_key: PublicKey,
    /// The state after the message, to become current.
    state: SessionState,
    source: StateSource,
    /// The record's generation when opened (`None`: there was no record).
    generation: Option<u64>,
    /// The store's prekeys generation when opened.
    prekeys_generation: u64,
    used: UsedPreKeys,
    plaintext: Zeroizing<Vec<u8>>,
}

/// The prekeys a new session from a prekey message uses up or records.
#[derive(Default)]
struct UsedPreKeys {
    /// The one-time EC prekey (deleted on commit).
    pre_key: Option<u32>,
    /// The Kyber prekey (deleted on commit when one-time).
    kyber_pre_key: Option<u32>,
    /// The use of prekeys that stay after use (recorded on commit).
    base_key_use: Option<BaseKeyUse>,
}

/// The outcome of a commit planned from a snapshot.
pub(crate) enum Committed<T> {
    /// Applied.
    Done(T),
    /// The snapshot is out of date: nothing was applied.
    Stale,
}

// The checks below are shared by every path that creates state and by
// restore (src/persist.rs), so that what the store accepts at run time it
// restores, and what restore refuses it never creates.

/// Fails unless `registration_id` is in `1..=MAX_REGISTRATION_ID`.
pub(crate) fn check_registration_id(registration_id: u32) -> Result<()> {
    if !(1..=crate::keys::MAX_REGISTRATION_ID).contains(&registration_id) {
        return Err(Error::InvalidArgument(
            "registration id must be in 1..=16380",
        ));
    }
    Ok(())
}

/// Fails unless `device_id` is at least 1.
pub(crate) fn check_device_id(device_id: u32) -> Result<()> {
    if device_id == 0 {
        return Err(Error::InvalidArgument("device id must be at least 1"));
    }
    Ok(())
}

/// Fails unless `address` is one the store can hold (and restore).
pub(crate) fn check_address(address: &Address) -> Result<()> {
    check_device_id(address.device_id)
}

/// Fails unless `key` is `trusted`, the identity trusted for `name`, or none
/// is trusted yet.
fn check_trust_in(trusted: Option<&PublicKey>, name: &str, key: &PublicKey) -> Result<()> {
    match trusted {
        Some(trusted) if !trusted.ct_eq(key) => Err(Error::UntrustedIdentity(name.to_owned())),
        _ => Ok(()),
    }
}

mod base_key_uses;
pub mod durable;
mod prekeys;
pub use base_key_uses::MAX_BASE_KEY_USES_PER_PREKEY;
pub(crate) use base_key_uses::{BaseKeyUse, BaseKeyUses, Refused};
pub use prekeys::{BundleRequest, KyberPreKeyKind};

/// Which session versions a store starts and accepts, beyond version 4
/// (PQXDH), which it always does. The defaults refuse version 3 both ways,
/// as the official library does since 0.75; sessions that already exist
/// keep working whatever the policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Start a version-3 (X3DH) session from a bundle without a Kyber
    /// prekey. Off: [`ProtocolStore::process_bundle`] refuses such a bundle
    /// with [`Error::VersionRefused`].
    pub allow_v3_initiation: bool,
    /// Accept an incoming version-3 prekey message that starts a new
    /// session. Off: it is refused with [`Error::VersionRefused`] (after the
    /// check for an existing session from the same base key, which keeps
    /// working).
    pub accept_v3_prekey_messages: bool,
}

fn next_id(next: u32) -> u32 {
    if next >= MAX_PREKEY_ID {
        1
    } else {
        next + 1
    }
}

impl ProtocolStore {
    /// A new store with a fresh identity and registration id, for `device_id`.
    pub fn generate<R: RngCore + CryptoRng>(device_id: u32, rng: &mut R) -> Result<Self> {
        Self::with_identity(
            IdentityKeyPair::generate(rng),
            generate_registration_id(rng),
            device_id,
            rng,
        )
    }

    /// A new store around an existing identity.
    pub fn with_identity<R: RngCore + CryptoRng>(
        identity: IdentityKeyPair,
        registration_id: u32,
        device_id: u32,
        rng: &mut R,
    ) -> Result<Self> {
        check_registration_id(registration_id)?;
        check_device_id(device_id)?;
        // Random starting ids, so that ids differ across reinstalls.
        let start = |rng: &mut R| (rng.next_u32() % MAX_PREKEY_ID) + 1;
        Ok(ProtocolStore {
            identity,
            registration_id,
            device_id,
            signed_prekeys: BTreeMap::new(),
            current_signed_prekey: None,
            prekeys: BTreeMap::new(),
            next_prekey_id: start(rng),
            next_signed_prekey_id: start(rng),
            kyber_prekeys: BTreeMap::new(),
            current_last_resort: None,
            next_kyber_prekey_id: start(rng),
            base_key_uses: BaseKeyUses::default(),
            policy: SessionPolicy::default(),
            spqr_policy: SpqrPolicy::default(),
            prekeys_generation: 0,
            sessions: BTreeMap::new(),
            trusted: TrustMap::default(),
            unloaded_sessions: 0,
            session_cap: MAX_SESSIONS,
        })
    }

    /// The local identity key pair.
    pub fn identity(&self) -> &IdentityKeyPair {
        &self.identity
    }
    /// The local public identity key.
    pub fn identity_key(&self) -> &PublicKey {
        self.identity.public_key()
    }
    /// The local registration id.
    pub fn registration_id(&self) -> u32 {
        self.registration_id
    }
    /// The local device id.
    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    fn check_trust(&self, name: &str, key: &PublicKey) -> Result<()> {
        check_trust_in(self.trusted.read().get(name), name, key)
    }

    /// The identity key trusted for `name`, if any.
    pub fn trusted_identity(&self, name: &str) -> Option<PublicKey> {
        self.trusted.read().get(name).copied()
    }

    /// Approves `identity_key` for `name` (a user accepting a key change, or
    /// a key verified out of band). Returns whether it replaced another key.
    pub fn approve_identity(&mut self, name: &str, identity_key: PublicKey) -> bool {
        self.trusted
            .get_mut()
            .insert(name.to_owned(), identity_key)
            .is_some_and(|old| old != identity_key)
    }

    /// The store's session policy (which version-3 sessions it starts and
    /// accepts).
    pub fn policy(&self) -> SessionPolicy {
        self.policy
    }

    /// Sets the store's session policy. Kept in saved state.
    pub fn set_policy(&mut self, policy: SessionPolicy) {
        self.policy = policy;
        self.prekeys_changed();
    }

    /// The store's SPQR policy for new version-4 sessions (default:
    /// [`SpqrPolicy::Required`]).
    pub fn spqr_policy(&self) -> SpqrPolicy {
        self.spqr_policy
    }

    /// Sets the store's SPQR policy, kept in saved state. It decides how
    /// sessions started from now on speak SPQR:
    ///
    /// - [`SpqrPolicy::Required`]: every new version-4 session speaks SPQR;
    ///   a peer that does not (its first message has no SPQR field, or its
    ///   prekey message has none) fails with [`Error::SpqrRequired`].
    /// - [`SpqrPolicy::Offered`]: SPQR is offered and dropped for the
    ///   session when the peer answers without it (libsignal 0.83–0.91).
    /// - [`SpqrPolicy::Off`]: new sessions do not speak SPQR.
    ///
    /// Sessions that already exist keep the SPQR state they were started
    /// with (a session without SPQR keeps working under every policy).
    /// Version-3 sessions never speak SPQR; whether they are started or
    /// accepted is the [`SessionPolicy`]'s decision alone.
    pub fn set_spqr_policy(&mut self, policy: SpqrPolicy) {
        self.spqr_policy = policy;
        self.prekeys_changed();
    }

    /// Whether the current session with `address` speaks SPQR: `Some(true)`
    /// when its state runs SPQR (for a session that only offered it, until
    /// the peer's first reply shows whether it speaks it), `Some(false)`
    /// when it does not, `None` without a session.
    pub fn session_has_spqr(&self, address: &Address) -> Option<bool> {
        let cell = self.sessions.get(address)?;
        let record = cell.lock();
        record.current.as_ref().map(|s| s.spqr().is_active())
    }

    /// The SPQR epoch of the current session with `address` (1 at the
    /// start, one more with every completed ML-KEM exchange), or `None`
    /// without a session or without SPQR.
    pub fn session_spqr_epoch(&self, address: &Address) -> Option<u64> {
        let cell = self.sessions.get(address)?;
        let record = cell.lock();
        record.current.as_ref().and_then(|s| s.spqr().epoch())
    }

    /// Marks a change of prekeys or policy (see `prekeys_generation`).
    pub(crate) fn prekeys_changed(&mut self) {
        self.prekeys_generation = self.prekeys_generation.wrapping_add(1);
    }

    /// The number of sessions started from reusable prekeys that the store
    /// remembers (to refuse replays), and the most against one prekey (at
    /// most [`MAX_BASE_KEY_USES_PER_PREKEY`]; rotate before it is reached).
    pub fn base_key_use_counts(&self) -> (usize, usize) {
        (
            self.base_key_uses.len(),
            self.base_key_uses.max_per_prekey(),
        )
    }

    /// Runs PQXDH (a bundle with a Kyber prekey: a version-4 session) or
    /// X3DH (without: version 3, only if the policy allows it, else
    /// [`Error::VersionRefused`]) as the initiator with `bundle`, making the
    /// new session current for `address` (an older session is archived).
    /// Both signatures of the bundle are verified. Trusts the identity on
    /// first use; a different identity than the trusted one is
    /// [`Error::UntrustedIdentity`].
    pub fn process_bundle<R: RngCore + CryptoRng>(
        &mut self,
        address: &Address,
        bundle: &PreKeyBundle,
        rng: &mut R,
    ) -> Result<()> {
        check_address(address)?;
        bundle.validate()?;
        if bundle.kyber_pre_key.is_none() && !self.policy.allow_v3_initiation {
            return Err(Error::VersionRefused(
                "the bundle has no Kyber prekey, and starting version-3 sessions is off",
            ));
        }
        self.check_trust(&address.name, &bundle.identity_key)?;
        self.check_session_limit(address)?;
        let state = x3dh::initiate(
            &self.identity,
            self.registration_id,
            bundle,
            self.spqr_policy,
            rng,
        )?;
        self.sessions
            .entry(address.clone())
            .or_default()
            .get_mut()
            .promote_state(state);
        self.trusted
            .get_mut()
            .entry(address.name.clone())
            .or_insert(bundle.identity_key);
        Ok(())
    }

    /// True exactly when [`encrypt`](Self::encrypt) for `address` would not
    /// fail for lack of a session.
    pub fn has_session(&self, address: &Address) -> bool {
        self.sessions
            .get(address)
            .is_some_and(|r| r.lock().current.is_some())
    }

    /// The version (3 or 4) of the current session with `address`, if any.
    pub fn session_version(&self, address: &Address) -> Option<u8> {
        let cell = self.sessions.get(address)?;
        let record = cell.lock();
        record.current.as_ref().map(SessionState::version)
    }

    /// A copy of the session record for `address`, if any.
    pub fn session(&self, address: &Address) -> Option<SessionRecord> {
        self.sessions.get(address).map(|cell| cell.lock().clone())
    }

    /// The number of remote addresses with a session record (at most
    /// [`MAX_SESSIONS`] in memory).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Deletes the session record (current and archived states) for
    /// `address`. Returns whether there was one. Trust is kept.
    pub fn remove_session(&mut self, address: &Address) -> bool {
        self.sessions.remove(address).is_some()
    }

    /// Fails when a session for `address` would be one too many.
    fn check_session_limit(&self, address: &Address) -> Result<()> {
        if self.sessions.len() + self.unloaded_sessions >= self.session_cap
            && !self.sessions.contains_key(address)
        {
            return Err(Error::LimitExceeded("too many sessions in one store"));
        }
        Ok(())
    }

    /// Encrypts `plaintext` for `address`: a prekey message until the other
    /// side has answered, a whisper message after. Locks only this session.
    pub fn encrypt(&self, address: &Address, plaintext: &[u8]) -> Result<CiphertextMessage> {
        self.encrypt_then(address, plaintext, Ok)
    }

    /// As [`encrypt`](Self::encrypt), handing the message to `sink` before
    /// the sending chain advances: when `sink` fails, nothing changes.
    pub(crate) fn encrypt_then<T, E: From<Error>>(
        &self,
        address: &Address,
        plaintext: &[u8],
        sink: impl FnOnce(CiphertextMessage) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(Error::LimitExceeded("plaintext longer than MAX_PLAINTEXT_LEN").into());
        }
        let no_session = || Error::NoSession(address.name.clone());
        let cell = self.sessions.get(address).ok_or_else(no_session)?;
        let mut record = cell.lock();
        let state = record.current.as_mut().ok_or_else(no_session)?;
        let remote = state.remote_identity;
        let trusted = self.trusted_identity(&address.name);
        check_trust_in(trusted.as_ref(), &address.name, &remote)?;
        let out = state.encrypt_then(plaintext, sink)?;
        cell.changed();
        drop(record);
        if trusted.is_none() {
            self.trusted.trust_if_unknown(&address.name, remote);
        }
        Ok(out)
    }

    /// Decrypts a message of application type `message_type` (2 = whisper,
    /// 3 = prekey).
    pub fn decrypt<R: RngCore + CryptoRng>(
        &mut self,
        address: &Address,
        message_type: u8,
        bytes: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        match message_type {
            WHISPER_TYPE => self.decrypt_message(address, bytes, rng),
            PREKEY_TYPE => self.decrypt_prekey_message(address, bytes, rng),
            _ => Err(Error::InvalidArgument(
                "message type must be 2 (whisper) or 3 (prekey)",
            )),
        }
    }

    /// As [`decrypt`](Self::decrypt), handing the plaintext to `sink`
    /// before the store changes: when `sink` fails, nothing changes.
    pub(crate) fn decrypt_then<R, T, E>(
        &mut self,
        address: &Address,
        message_type: u8,
        bytes: &[u8],
        rng: &mut R,
        sink: impl FnOnce(Vec<u8>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        R: RngCore + CryptoRng,
        E: From<Error>,
    {
        match message_type {
            WHISPER_TYPE => self.decrypt_message_then(address, bytes, rng, sink),
            PREKEY_TYPE => self.decrypt_prekey_message_then(address, bytes, rng, sink),
            _ => {
                Err(Error::InvalidArgument("message type must be 2 (whisper) or 3 (prekey)").into())
            }
        }
    }

    /// Decrypts a `SignalMessage` ("whisper") from `address`. Locks only
    /// this session.
    pub fn decrypt_message<R: RngCore + CryptoRng>(
        &self,
        address: &Address,
        bytes: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        self.decrypt_message_then(address, bytes, rng, Ok)
    }

    /// As [`decrypt_message`](Self::decrypt_message), handing the plaintext
    /// to `sink` before the session changes: when `sink` fails, nothing
    /// changes and the message can be decrypted again.
    pub(crate) fn decrypt_message_then<R, T, E>(
        &self,
        address: &Address,
        bytes: &[u8],
        rng: &mut R,
        sink: impl FnOnce(Vec<u8>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        R: RngCore + CryptoRng,
        E: From<Error>,
    {
        check_address(address)?;
        let message = SignalMessageRef::parse(bytes)?;
        let no_session = || Error::NoSession(address.name.clone());
        let cell = self.sessions.get(address).ok_or_else(no_session)?;
        let mut record = cell.lock();
        if record.current.is_none() {
            return Err(no_session().into());
        }
        // One lookup, a copy of the (public) key: the trust map's lock is not
        // held while decrypting.
        let trusted = self.trusted_identity(&address.name);
        let out = record.decrypt_then(
            &message,
            rng,
            |key| check_trust_in(trusted.as_ref(), &address.name, key),
            sink,
        )?;
        cell.changed();
        // A previous state may have become current: its identity may differ.
        let remote = record.current.as_ref().map(|s| s.remote_identity);
        drop(record);
        if let (None, Some(remote)) = (trusted, remote) {
            self.trusted.trust_if_unknown(&address.name, remote);
        }
        Ok(out)
    }

    /// Decrypts a `PreKeySignalMessage` from `address`, running X3DH as the
    /// responder unless a session from the same base key exists. The
    /// one-time prekey is deleted only after a successful decrypt.
    pub fn decrypt_prekey_message<R: RngCore + CryptoRng>(
        &mut self,
        address: &Address,
        bytes: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        self.decrypt_prekey_message_then(address, bytes, rng, Ok)
    }

    /// As [`decrypt_prekey_message`](Self::decrypt_prekey_message), handing
    /// the plaintext to `sink` before anything changes: when `sink` fails,
    /// nothing changes and the message can be decrypted again.
    pub(crate) fn decrypt_prekey_message_then<R, T, E>(
        &mut self,
        address: &Address,
        bytes: &[u8],
        rng: &mut R,
        sink: impl FnOnce(Vec<u8>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        R: RngCore + CryptoRng,
        E: From<Error>,
    {
        let opened = self.open_prekey_message(address, bytes, rng)?;
        match self.commit_prekey_message(opened, sink)? {
            Committed::Done(out) => Ok(out),
            // Exclusive access: nothing changed between the two steps.
            Committed::Stale => {
                Err(Error::InvalidMessage("session changed while the message was decrypted").into())
            }
        }
    }

    /// The expensive half of decrypting a prekey message, under a shared
    /// reference (so other sessions go on meanwhile): parses it, checks
    /// trust, runs X3DH as the responder (or picks the state built from the
    /// same base key) and decrypts with a copy of that one state. Nothing
    /// changes; [`commit_prekey_message`](Self::commit_prekey_message)
    /// applies the result.
    pub(crate) fn open_prekey_message<R: RngCore + CryptoRng>(
        &self,
        address: &Address,
        bytes: &[u8],
        rng: &mut R,
    ) -> Result<OpenedPreKeyMessage> {
        check_address(address)?;
        let message = PreKeySignalMessage::deserialize(bytes)?;
        let identity_key = *message.identity_key();
        self.check_trust(&address.name, &identity_key)?;
        self.check_session_limit(address)?;
        // A copy of the state built from this base key, if one is held, and
        // the record's generation, under the record's lock.
        let (generation, held) = match self.sessions.get(address) {
            Some(cell) => {
                let record = cell.lock();
                let held = record.state_from_base_key(message.base_key());
                (Some(cell.generation()), held)
            }
            None => (None, None),
        };
        let (mut state, source, used) = match held {
            Some((source, state)) => (state, source, UsedPreKeys::default()),
            None => {
                if message.version() == MESSAGE_VERSION && !self.policy.accept_v3_prekey_messages {
                    return Err(Error::VersionRefused(
                        "a version-3 prekey message would start a new session, \
                         and accepting them is off",
                    ));
                }
                let spk = self
                    .signed_prekeys
                    .get(&message.signed_pre_key_id())
                    .ok_or(Error::MissingSignedPreKey(message.signed_pre_key_id()))?;
                let opk = match message.pre_key_id() {
                    Some(id) => Some(self.prekeys.get(&id).ok_or(Error::MissingPreKey(id))?),
                    None => None,
                };
                let kyber = match message.kyber() {
                    Some(k) => Some((
                        self.kyber_prekeys
                            .get(&k.pre_key_id)
                            .ok_or(Error::MissingKyberPreKey(k.pre_key_id))?,
                        k.ciphertext.as_slice(),
                    )),
                    None => None,
                };
                // Only prekeys that stay after use need the record.
                let reusable = match kyber {
                    Some((record, _)) => record.last_resort.then_some(record.id),
                    None => opk.is_none().then_some(0),
                };
                let base_key_use = match reusable {
                    Some(kyber_pre_key_id) => {
                        let used = BaseKeyUse {
                            kyber_pre_key_id,
                            signed_pre_key_id: message.signed_pre_key_id(),
                            base_key: *message.base_key().u_coordinate(),
                        };
                        self.check_base_key_use(&used)?;
                        Some(used)
                    }
                    None => None,
                };
                let state = x3dh::respond(
                    &self.identity,
                    self.registration_id,
                    &spk.key_pair,
                    opk.map(|p| &p.key_pair),
                    kyber.map(|(record, ct)| (&record.key_pair.secret_key, ct)),
                    &identity_key,
                    message.base_key(),
                    message.registration_id(),
                    self.spqr_policy,
                )?;
                // A base key with a small-order component gives the same
                // key agreement as the key without it, under other bytes:
                // the byte comparisons that recognise a replay (a held
                // session, a recorded use) would miss it. Honest base keys
                // are in the prime-order subgroup. (After the key agreement,
                // so that a purely low-order key keeps its own error.)
                if !message.base_key().is_in_prime_order_subgroup() {
                    return Err(Error::InvalidMessage(
                        "incoming base key is invalid (not in the prime-order subgroup)",
                    ));
                }
                let used = UsedPreKeys {
                    pre_key: message.pre_key_id(),
                    kyber_pre_key: kyber.map(|(record, _)| record.id),
                    base_key_use,
                };
                (state, StateSource::New, used)
            }
        };
        check_trust_in(
            self.trusted.read().get(&address.name),
            &address.name,
            &state.remote_identity,
        )?;
        // Only this state can answer a message wrapped in its base key.
        let plaintext = state.decrypt_then(&message.message().borrowed(), rng, |pt| {
            Ok::<_, Error>(Zeroizing::new(pt))
        })?;
        Ok(OpenedPreKeyMessage {
            address: address.clone(),
            identity_key,
            state,
            source,
            generation,
            prekeys_generation: self.prekeys_generation,
            used,
            plaintext,
        })
    }

    /// Fails when `used` was already recorded (a second session from the same
    /// base key with the same reusable prekeys: a replay), or when no more
    /// uses can be recorded.
    fn check_base_key_use(&self, used: &BaseKeyUse) -> Result<()> {
        match self.base_key_uses.check(used) {
            Ok(()) => Ok(()),
            Err(Refused::Replay) => Err(Error::InvalidMessage(
                "reused base key: a session from it was started before",
            )),
            Err(Refused::Full) => Err(Error::LimitExceeded(
                "this prekey started the most sessions it may: rotate the last-resort Kyber \
                 prekey (or the signed prekey)",
            )),
        }
    }

    /// Applies an opened prekey message: hands the plaintext to `sink`, then
    /// makes the new state current, deletes the one-time prekey and trusts
    /// the identity on first use. [`Committed::Stale`] (nothing written,
    /// `sink` not called) when the address's record changed since it was
    /// opened: open it again.
    pub(crate) fn commit_prekey_message<T, E: From<Error>>(
        &mut self,
        opened: OpenedPreKeyMessage,
        sink: impl FnOnce(Vec<u8>) -> std::result::Result<T, E>,
    ) -> std::result::Result<Committed<T>, E> {
        let OpenedPreKeyMessage {
            address,
            identity_key,
            state,
            source,
            generation,
            prekeys_generation,
            used,
            mut plaintext,
        } = opened;
        // The session, a prekey (a signed prekey removed, a Kyber prekey
        // replaced) or the policy changed since: open it again.
        if self.sessions.get(&address).map(SessionCell::generation) != generation
            || self.prekeys_generation != prekeys_generation
        {
            return Ok(Committed::Stale);
        }
        // What else may have changed since: trust, the prekey (used by
        // another sender's copy of the message), the number of sessions.
        self.check_trust(&address.name, &identity_key)?;
        if let Some(id) = used.pre_key {
            if !self.prekeys.contains_key(&id) {
                return Err(Error::MissingPreKey(id).into());
            }
        }
        if let Some(id) = used.kyber_pre_key {
            if !self.kyber_prekeys.contains_key(&id) {
                return Err(Error::MissingKyberPreKey(id).into());
            }
        }
        if let Some(u) = &used.base_key_use {
            self.check_base_key_use(u)?;
        }
        self.check_session_limit(&address)?;
        let out = sink(std::mem::take(&mut *plaintext))?;
        // Commit.
        let record = self.sessions.entry(address.clone()).or_default().get_mut();
        match source {
            StateSource::Current => record.current = Some(state),
            StateSource::Previous(i) => {
                scrub::remove(&mut record.previous, i);
                record.promote_state(state);
            }
            StateSource::New => record.promote_state(state),
        }
        if let Some(id) = used.pre_key {
            self.prekeys.remove(&id);
        }
        if used.pre_key.is_some() || used.kyber_pre_key.is_some() || used.base_key_use.is_some() {
            self.prekeys_changed();
        }
        match used.base_key_use {
            Some(u) => {
                self.base_key_uses.insert(u);
            }
            None => {
                if let Some(id) = used.kyber_pre_key {
                    self.kyber_prekeys.remove(&id);
                }
            }
        }
        self.trusted
            .get_mut()
            .entry(address.name)
            .or_insert(identity_key);
        Ok(Committed::Done(out))
    }

    /// The safety number between this store's identity and the identity
    /// trusted for `name`. `local_id` and `remote_id` are the stable ids
    /// (phone numbers for version 1, service-id bytes for version 2).
    pub fn safety_number(
        &self,
        name: &str,
        local_id: &[u8],
        remote_id: &[u8],
        iterations: u32,
        version: u32,
    ) -> Result<Fingerprint> {
        let remote = self
            .trusted_identity(name)
            .ok_or_else(|| Error::NoTrustedIdentity(name.to_owned()))?;
        Fingerprint::new(
            version,
            iterations,
            local_id,
            self.identity_key(),
            remote_id,
            &remote,
        )
    }
}

#[cfg(test)]
mod open_commit_tests {
    use rand::rngs::OsRng;

    use super::*;
    use crate::store::{BundleRequest, KyberPreKeyKind};

    /// Alice's first message to Bob, made from a bundle of `kyber` kind
    /// without a one-time prekey (so that only reusable prekeys are used),
    /// with both policies allowing version 3.
    fn first_message(kyber: KyberPreKeyKind) -> (ProtocolStore, Vec<u8>) {
        let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
        let mut bob = ProtocolStore::generate(1, &mut OsRng).unwrap();
        let v3 = SessionPolicy {
            allow_v3_initiation: true,
            accept_v3_prekey_messages: true,
        };
        alice.set_policy(v3);
        bob.set_policy(v3);
        let request = BundleRequest {
            one_time_prekey: false,
            kyber,
            timestamp: 0,
        };
        let bundle = bob.create_bundle_with(request, &mut OsRng).unwrap();
        let b = Address::new("bob", 1);
        alice.process_bundle(&b, &bundle, &mut OsRng).unwrap();
        let m = alice.encrypt(&b, b"hi").unwrap();
        (bob, m.serialize().to_vec())
    }

    /// Review finding: a message opened under the shared lock was applied
    /// after its signed prekey had been removed (leaving a base-key use no
    /// call could remove), or after the policy had turned version 3 off.
    /// Any change of prekeys or policy in between makes the commit stale:
    /// nothing is applied, and opening it again sees the change.
    #[test]
    fn a_prekey_or_policy_change_between_open_and_commit_makes_it_stale() {
        let a = Address::new("alice", 1);
        // The signed prekey is removed in between (after a rotation).
        let (mut bob, m) = first_message(KyberPreKeyKind::None);
        let opened = bob.open_prekey_message(&a, &m, &mut OsRng).unwrap();
        let old = bob.current_signed_prekey.unwrap();
        bob.generate_signed_prekey(1, &mut OsRng).unwrap();
        bob.remove_signed_prekey(old).unwrap();
        let before = bob.save();
        assert!(matches!(
            bob.commit_prekey_message(opened, Ok::<_, Error>),
            Ok(Committed::Stale)
        ));
        assert_eq!(bob.save(), before);
        assert_eq!(
            bob.decrypt_prekey_message(&a, &m, &mut OsRng),
            Err(Error::MissingSignedPreKey(old))
        );
        // The policy turns version 3 off in between.
        let (mut bob, m) = first_message(KyberPreKeyKind::None);
        let opened = bob.open_prekey_message(&a, &m, &mut OsRng).unwrap();
        bob.set_policy(SessionPolicy::default());
        let before = bob.save();
        assert!(matches!(
            bob.commit_prekey_message(opened, Ok::<_, Error>),
            Ok(Committed::Stale)
        ));
        assert_eq!(bob.save(), before);
        assert!(matches!(
            bob.decrypt_prekey_message(&a, &m, &mut OsRng),
            Err(Error::VersionRefused(_))
        ));
        // Nothing in between: it applies.
        let (mut bob, m) = first_message(KyberPreKeyKind::LastResort);
        let opened = bob.open_prekey_message(&a, &m, &mut OsRng).unwrap();
        assert!(matches!(
            bob.commit_prekey_message(opened, Ok::<_, Error>),
            Ok(Committed::Done(pt)) if pt == b"hi"
        ));
    }

    /// Review finding: the `add_*` imports accepted records that a restore
    /// refuses or changes (a Kyber public key that is not its secret key's;
    /// a key pair whose halves do not match), and keys already held under
    /// another id (which let a replay through under the second id).
    #[test]
    fn imports_refuse_what_restore_would_not_reproduce() {
        use crate::kem::KemKeyPair;
        use crate::keys::KeyPair;
        use crate::prekey::{KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord};
        let mut bob = ProtocolStore::generate(1, &mut OsRng).unwrap();
        let sign = |store: &ProtocolStore, bytes: &[u8]| {
            store.identity.private_key().sign(bytes, &mut OsRng)
        };
        // A Kyber record whose public key is another key's.
        let pair = KemKeyPair::generate(&mut OsRng);
        let other = KemKeyPair::generate(&mut OsRng);
        let signature = sign(&bob, &other.public_key.serialize());
        let mismatched = KyberPreKeyRecord {
            id: 5,
            key_pair: KemKeyPair {
                public_key: other.public_key.clone(),
                secret_key: pair.secret_key.clone(),
            },
            signature,
            timestamp: 0,
            last_resort: true,
        };
        let before = bob.save();
        assert!(matches!(
            bob.add_kyber_prekey(mismatched),
            Err(Error::InvalidKemKey(_))
        ));
        assert_eq!(bob.save(), before);
        // The genuine record goes in; the same key under a second id does not.
        let pair_signature = sign(&bob, &pair.public_key.serialize());
        let record = |id| KyberPreKeyRecord {
            id,
            key_pair: pair.clone(),
            signature: pair_signature,
            timestamp: 0,
            last_resort: true,
        };
        bob.add_kyber_prekey(record(5)).unwrap();
        assert!(matches!(
            bob.add_kyber_prekey(record(6)),
            Err(Error::InvalidArgument(_))
        ));
        let back = ProtocolStore::restore(&bob.save()).unwrap();
        assert_eq!(back.save(), bob.save());
        // EC key pairs whose halves do not match, and duplicates.
        let a = KeyPair::generate(&mut OsRng);
        let b = KeyPair::generate(&mut OsRng);
        let crossed = KeyPair {
            public_key: b.public_key,
            private_key: a.private_key.clone(),
        };
        assert!(bob
            .add_prekey(PreKeyRecord {
                id: 9,
                key_pair: crossed.clone()
            })
            .is_err());
        let crossed_signature = sign(&bob, &crossed.public_key.serialize());
        assert!(bob
            .add_signed_prekey(
                SignedPreKeyRecord {
                    id: 9,
                    key_pair: crossed,
                    signature: crossed_signature,
                    timestamp: 0
                },
                false
            )
            .is_err());
        bob.add_prekey(PreKeyRecord {
            id: 9,
            key_pair: a.clone(),
        })
        .unwrap();
        assert!(bob
            .add_prekey(PreKeyRecord {
                id: 10,
                key_pair: a
            })
            .is_err());
    }
}
