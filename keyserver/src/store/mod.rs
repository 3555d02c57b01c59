//! Storage behind one trait, [`Store`], with two backends: SQLite
//! ([`sqlite::SqliteStore`], one file, WAL, every acknowledged write
//! fsynced) and PostgreSQL ([`postgres::PgStore`], which several server
//! processes can share).
//!
//! Every method is one transaction: a method that returns has committed
//! (and, on SQLite, synced) everything it changed.

pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;

/// A storage failure (the database is unreachable, a query failed): the
/// server answers 503 and the request changed nothing.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend reported an error.
    #[error("database error: {0}")]
    Backend(String),
    /// The database URL is not one the server understands.
    #[error("bad database URL: {0}")]
    BadUrl(String),
}

/// A result of a storage operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// A public key with its id and the identity key's signature over it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedKey {
    /// The key id.
    pub id: u32,
    /// The serialized public key (Signal's serialization).
    pub public_key: Vec<u8>,
    /// The XEdDSA signature by the identity key.
    pub signature: Vec<u8>,
}

/// A one-time EC prekey.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneTimeKey {
    /// The key id.
    pub id: u32,
    /// The serialized public key.
    pub public_key: Vec<u8>,
}

/// A verified upload, as stored.
#[derive(Clone, Debug)]
pub struct KeySet {
    /// The identity key the upload was signed under (must be the device's).
    pub identity_key: Vec<u8>,
    /// The device's registration id.
    pub registration_id: u32,
    /// The signed prekey (replaces the stored one).
    pub signed_prekey: SignedKey,
    /// The last-resort Kyber prekey (replaces the stored one).
    pub last_resort: SignedKey,
    /// One-time EC prekeys to add.
    pub prekeys: Vec<OneTimeKey>,
    /// One-time Kyber prekeys to add.
    pub kyber_prekeys: Vec<SignedKey>,
}

/// What an upload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Stored; the counts of one-time keys now held.
    Stored(KeyCounts),
    /// No such device.
    NoDevice,
    /// The upload's identity key is not the device's.
    IdentityMismatch,
    /// The one-time keys would exceed the per-device cap.
    TooMany,
}

/// One-time keys held for a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyCounts {
    /// One-time EC prekeys.
    pub prekeys: u64,
    /// One-time Kyber prekeys.
    pub kyber_prekeys: u64,
}

/// One device's bundle, with the one-time keys this fetch claimed.
#[derive(Clone, Debug)]
pub struct Bundle {
    /// The name.
    pub name: String,
    /// The device id.
    pub device_id: u32,
    /// The registration id.
    pub registration_id: u32,
    /// The identity key.
    pub identity_key: Vec<u8>,
    /// The signed prekey.
    pub signed_prekey: SignedKey,
    /// The claimed one-time EC prekey; `None` when none were left.
    pub prekey: Option<OneTimeKey>,
    /// The claimed one-time Kyber prekey, or the last-resort one.
    pub kyber_prekey: SignedKey,
    /// `kyber_prekey` is the last-resort key.
    pub kyber_last_resort: bool,
}

/// What a registration did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// The device is new.
    Created,
    /// The device existed; its identity key was set (its keys were dropped
    /// if the identity key changed).
    Updated,
    /// The device is new but the name already holds the most devices
    /// allowed; nothing changed.
    TooManyDevices,
}

/// The most devices one name holds: the most the library takes in one
/// answer (`parse_bundles`), which also bounds the work of one fetch of
/// all of a name's devices.
pub const MAX_DEVICES_PER_NAME: u64 = 64;

/// A stored mailbox message.
#[derive(Clone, Debug)]
pub struct Message {
    /// The message id (for the acknowledgement).
    pub id: i64,
    /// The sender's name.
    pub sender_name: String,
    /// The sender's device id.
    pub sender_device: u32,
    /// The ciphertext.
    pub body: Vec<u8>,
    /// When it was stored (seconds since the Unix epoch).
    pub timestamp: i64,
}

/// Bounds on one device's mailbox.
#[derive(Clone, Copy, Debug)]
pub struct MailboxLimits {
    /// The most messages held.
    pub max_messages: u64,
    /// The most bytes held (sum of bodies).
    pub max_bytes: u64,
}

/// What posting a message did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostOutcome {
    /// Stored under this id.
    Stored(i64),
    /// No such recipient device.
    NoDevice,
    /// The recipient's mailbox is full.
    Full,
}

/// The server's storage.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The identity key of a device, if registered.
    async fn identity_key(&self, name: &str, device_id: u32) -> StoreResult<Option<Vec<u8>>>;

    /// Whether any device is registered under `name`.
    async fn name_exists(&self, name: &str) -> StoreResult<bool>;

    /// Records a request nonce of a device until `expires` (seconds since
    /// the Unix epoch); false when it was already recorded (a replay).
    async fn use_nonce(
        &self,
        name: &str,
        device_id: u32,
        nonce: &str,
        expires: i64,
    ) -> StoreResult<bool>;

    /// Forgets nonces that expired before `now`; returns how many.
    async fn prune_nonces(&self, now: i64) -> StoreResult<u64>;

    /// Claims a new name with its first device; false (and nothing
    /// changed) when the name is taken.
    async fn register_name(
        &self,
        name: &str,
        device_id: u32,
        identity_key: &[u8],
    ) -> StoreResult<bool>;

    /// Adds a device to an existing name (unless it already holds
    /// [`MAX_DEVICES_PER_NAME`]) or sets a device's identity key (dropping
    /// its uploaded keys when the identity key changes). The caller has
    /// authorised this. `None` when the name does not exist.
    async fn put_device(
        &self,
        name: &str,
        device_id: u32,
        identity_key: &[u8],
    ) -> StoreResult<Option<RegisterOutcome>>;

    /// Stores an upload: replaces the signed and last-resort prekeys and
    /// adds the one-time keys, unless a device would then hold more than
    /// `max_one_time` of either kind.
    async fn upload(
        &self,
        name: &str,
        device_id: u32,
        keys: &KeySet,
        max_one_time: u64,
    ) -> StoreResult<UploadOutcome>;

    /// One-time keys held for a device; `None` if it is not registered.
    async fn count(&self, name: &str, device_id: u32) -> StoreResult<Option<KeyCounts>>;

    /// A device's bundle, claiming one one-time EC prekey and one one-time
    /// Kyber prekey (the last-resort one when none is left). With
    /// `one_time` false nothing is claimed: the bundle has the last-resort
    /// Kyber prekey and no one-time EC prekey. `None` when the device is
    /// unknown or has uploaded no keys.
    async fn claim(
        &self,
        name: &str,
        device_id: u32,
        one_time: bool,
    ) -> StoreResult<Option<Bundle>>;

    /// The bundles of every device of `name` that has uploaded keys, each
    /// claiming as [`claim`](Self::claim) does, in one transaction.
    async fn claim_all(&self, name: &str, one_time: bool) -> StoreResult<Vec<Bundle>>;

    /// Stores a message for a device, within `limits`.
    #[allow(clippy::too_many_arguments)]
    async fn post_message(
        &self,
        name: &str,
        device_id: u32,
        sender_name: &str,
        sender_device: u32,
        body: &[u8],
        now: i64,
        limits: MailboxLimits,
    ) -> StoreResult<PostOutcome>;

    /// Up to `limit` of a device's messages, oldest first.
    async fn messages(&self, name: &str, device_id: u32, limit: u32) -> StoreResult<Vec<Message>>;

    /// Deletes one of a device's messages; false when there is none.
    async fn delete_message(&self, name: &str, device_id: u32, id: i64) -> StoreResult<bool>;
}

/// Opens the store a `--database` URL names: `sqlite:PATH` or
/// `postgres://...` (also `postgresql://...`).
pub async fn open(url: &str, pg_pool_size: usize) -> StoreResult<std::sync::Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(StoreError::BadUrl("sqlite: needs a file path".into()));
        }
        Ok(std::sync::Arc::new(sqlite::SqliteStore::open(path)?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(
            postgres::PgStore::connect(url, pg_pool_size).await?,
        ))
    } else {
        Err(StoreError::BadUrl(
            "expected sqlite:PATH or postgres://...".into(),
        ))
    }
}
