//! The durable store: a [`ProtocolStore`] kept in an embedded SQLite
//! database, one sealed row per record, every change committed before the
//! call returns.
//!
//! # How a call runs
//! Every call takes SQLite's write lock first (`BEGIN IMMEDIATE`, waiting
//! up to the busy timeout), then reads the rows it needs, builds an
//! in-memory *view* (a [`ProtocolStore`] holding just those records), runs
//! the same code an in-memory store runs on the view, writes back exactly
//! the rows that changed and commits. A call that fails rolls back: nothing
//! is written. Because the lock is taken before the read, two writers
//! (threads or processes) never interleave a read-modify-write.
//!
//! Decoded records (the meta row, sessions, trust) are cached per
//! connection, each with its row's `version` (a random number that changes
//! with every write by anyone): a cached record is used only when the
//! row's version inside the transaction matches. The version is read
//! again only when another connection has committed since the record was
//! last seen (SQLite's `data_version` changed). Opening reads only the key row and the meta row;
//! memory grows with the sessions touched (the cache holds at most
//! [`DurableOptions::cache_sessions`]), not with the sessions held.
//!
//! # Threads and group commit
//! A handle (and its clones) is one connection; its calls serialize on it.
//! Calls at full durability from several threads share commits: a call
//! that finds other threads waiting leaves its transaction open for them
//! (its own changes in a savepoint, so a failing call writes nothing and
//! leaves the others' changes) and returns when the shared commit is on
//! disk; the last one commits. One `fsync` then covers several calls. See
//! `group.rs`.
//!
//! # Durability
//! [`Durability::Full`] (the default): WAL with `synchronous = FULL`; a
//! call's changes are on disk when it returns. [`Durability::Normal`]:
//! decrypts commit without waiting for the disk (`synchronous = NORMAL`):
//! after a power loss (not a process crash) the last decrypts may be
//! undone, and those messages then decrypt again. Every other call —
//! encrypt in particular — still commits at full durability, which also
//! makes every earlier commit durable: a sending chain's advance is never
//! lost, so no message key is ever used twice.
//!
//! # Two-phase decrypt
//! [`DurableStore::decrypt_pending`] decrypts under a read transaction and
//! returns the plaintext with a [`PendingDecrypt`]; nothing is written
//! until [`PendingDecrypt::commit`], which checks that every row the
//! decrypt read is unchanged ([`Error::StoreConflict`] otherwise) and
//! writes in one transaction (and that the sessions and the prekey's
//! base-key uses are still within their limits, counted again:
//! [`Error::LimitExceeded`] otherwise). Dropping
//! it discards the change: the message can be decrypted again.
//!
//! # What encryption at rest does not cover
//! A row's value opens only in its own row and table, but the file itself
//! is not protected against being rolled back or having rows removed:
//! restoring an older copy of the file (or an older value of one row)
//! makes the next encrypt reuse message keys already used, and deleting a
//! base-key use or restoring a used one-time prekey lets a captured first
//! message start a session again. Only the application can keep an older
//! copy from being opened.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::OsRng;
use rand::{CryptoRng, RngCore};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::{IdentityKeyPair, PublicKey};
use crate::persist;
use crate::store::{
    Address, BaseKeyUse, ProtocolStore, SessionCell, MAX_BASE_KEY_USES_PER_PREKEY,
    MAX_DURABLE_SESSIONS, MAX_SESSIONS,
};
use crate::wire::{PreKeySignalMessage, PREKEY_TYPE, WHISPER_TYPE};

mod api;
mod group;
#[cfg(test)]
mod review_tests;
mod rows;
pub(crate) mod schema;
mod seal;

use schema::sql_error;
pub use seal::STORE_KEY_LEN;
use seal::{Sealer, Table};

/// How long a change takes to reach the disk. See the [module
/// docs](self#durability).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Every change is on disk when the call returns.
    #[default]
    Full,
    /// Decrypts do not wait for the disk (a power loss may undo the last
    /// ones); every other call, encrypt included, is as `Full`.
    Normal,
}

/// Options for [`DurableStore::open`].
#[derive(Clone, Debug)]
pub struct DurableOptions {
    /// The local device id of a new store, when the file holds none yet
    /// (default 1). `None`: opening a file without a store fails.
    pub create_device_id: Option<u32>,
    /// See [`Durability`].
    pub durability: Durability,
    /// How long a call waits for another connection's write lock before
    /// failing with [`Error::StoreBusy`] (default 5 s).
    pub busy_timeout: Duration,
    /// How many decoded session records a connection keeps (default 1,024).
    pub cache_sessions: usize,
}

impl Default for DurableOptions {
    fn default() -> Self {
        DurableOptions {
            create_device_id: Some(1),
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(5),
            cache_sessions: 1024,
        }
    }
}

/// A protocol store kept in a SQLite database file (see the [module
/// docs](self)). Cloning gives another handle to the same connection.
///
/// `Send + Sync`: calls from several threads serialize on the connection
/// (and, across processes, on the database's write lock).
#[derive(Clone, Debug)]
pub struct DurableStore {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    identity: IdentityKeyPair,
    registration_id: u32,
    device_id: u32,
    sealer: Sealer,
    durability: Durability,
    cache_sessions: usize,
    conn: Mutex<Conn>,
    /// Group commit's state (see [`group`]).
    group: group::Group,
}

struct Conn {
    db: Connection,
    /// The synchronous setting in force (true: FULL).
    full_sync: bool,
    /// The meta row's version and decoded content, and the stamp (below).
    meta: Option<(i64, ProtocolStore, i64)>,
    /// Decoded sessions by row key, with their row versions and stamps.
    sessions: HashMap<[u8; 32], (i64, Address, SessionCell, i64)>,
    /// Decoded trust rows by row key: row version, name, key, stamp.
    /// Filled from committed rows only (a call reads before it writes).
    ///
    /// Every cached record's *stamp* is SQLite's `data_version` in the
    /// transaction that last saw its row hold that version (read it, or
    /// committed it). `data_version` changes whenever another connection
    /// commits, and never for this connection's own commits: when it still
    /// equals the stamp, the row holds that version without being read
    /// again. A row this connection writes or deletes is dropped from the
    /// cache when written (and a session put back, with its new version,
    /// once committed).
    trust: HashMap<[u8; 32], (i64, String, PublicKey, i64)>,
    /// Row keys of session addresses and trust names: keyed hashes under
    /// the store key (which never changes for a connection; dropped on
    /// rekey all the same).
    session_keys: HashMap<Address, [u8; 32]>,
    trust_keys: HashMap<String, [u8; 32]>,
    /// The most entries each of `trust`, `session_keys` and `trust_keys`
    /// holds ([`DurableOptions::cache_sessions`]).
    cache_limit: usize,
    /// The write transaction calls of several threads share, while open
    /// (see [`group`]).
    batch: Option<group::Batch>,
    /// The last batch id given.
    next_batch: u64,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conn { .. }")
    }
}

/// Which prekeys a call needs.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) enum PreKeyLoad {
    /// None.
    #[default]
    None,
    /// Every signed, one-time and Kyber prekey (prekey management).
    All,
    /// The ones a prekey message names.
    Ids {
        signed: u32,
        one_time: Option<u32>,
        kyber: Option<u32>,
    },
}

/// What a call reads into its view.
#[derive(Clone, Debug, Default)]
pub(crate) struct Load {
    sessions: Vec<Address>,
    trust: Vec<String>,
    prekeys: PreKeyLoad,
    /// A use a prekey message would record: its row and its prekey's count.
    base_key_use: Option<BaseKeyUse>,
    /// Count the sessions not loaded (for calls that may create one).
    count_sessions: bool,
    /// Every record (save).
    everything: bool,
}

impl Load {
    /// The meta row only (ids, counters, policy).
    pub(crate) fn meta() -> Self {
        Load::default()
    }
    /// A session and its name's trust.
    pub(crate) fn session(address: &Address) -> Self {
        Load {
            sessions: vec![address.clone()],
            trust: vec![address.name.clone()],
            ..Load::default()
        }
    }
    /// A session that the call may create.
    pub(crate) fn new_session(address: &Address) -> Self {
        Load {
            count_sessions: true,
            ..Load::session(address)
        }
    }
    /// A name's trust.
    pub(crate) fn trust(name: &str) -> Self {
        Load {
            trust: vec![name.to_owned()],
            ..Load::default()
        }
    }
    /// Every prekey.
    pub(crate) fn prekeys() -> Self {
        Load {
            prekeys: PreKeyLoad::All,
            ..Load::default()
        }
    }
    /// Everything.
    pub(crate) fn everything() -> Self {
        Load {
            everything: true,
            ..Load::default()
        }
    }
    /// What decrypting `bytes` of `message_type` from `address` needs: for
    /// a prekey message, the prekeys it names and its base key's use.
    pub(crate) fn decrypt(address: &Address, message_type: u8, bytes: &[u8]) -> Self {
        let mut load = Load::session(address);
        if message_type == PREKEY_TYPE {
            // The sessions are not counted here (a scan of the table, for
            // any message anyone sends): the limit is checked when a
            // session row is added, after the message decrypted.
            // A message that does not parse fails in the call itself.
            if let Ok(m) = PreKeySignalMessage::deserialize(bytes) {
                load.prekeys = PreKeyLoad::Ids {
                    signed: m.signed_pre_key_id(),
                    one_time: m.pre_key_id(),
                    kyber: m.kyber().map(|k| k.pre_key_id),
                };
                load.base_key_use = Some(BaseKeyUse {
                    kyber_pre_key_id: m.kyber().map_or(0, |k| k.pre_key_id),
                    signed_pre_key_id: m.signed_pre_key_id(),
                    base_key: *m.base_key().u_coordinate(),
                });
            }
        }
        load
    }
}

/// A session's row key and, when the row existed, its version and the
/// record's generation as loaded.
type LoadedSession = ([u8; 32], Option<(i64, u64)>);

/// A row: version, sealed value, plain columns.
type Row = (i64, Vec<u8>, Vec<i64>);

/// A row opened: key, version, plain value.
type OpenedRow = ([u8; 32], i64, Zeroizing<Vec<u8>>);

/// What a view held when it was built, to find what the call changed.
#[derive(Default)]
struct Loaded {
    /// SQLite's `data_version` in the transaction that loaded the view.
    data_version: i64,
    /// The meta row's fields as loaded (`None`: no meta row yet).
    meta: Option<persist::MetaFields>,
    /// Sessions asked for or held: row key and (row version, generation)
    /// when the row existed.
    sessions: BTreeMap<Address, LoadedSession>,
    /// Names asked for or held: row key and the key trusted, if any.
    trust: BTreeMap<String, ([u8; 32], Option<PublicKey>)>,
    signed: BTreeSet<u32>,
    one_time: BTreeSet<u32>,
    kyber: BTreeSet<u32>,
    uses: BTreeSet<[u8; 32]>,
    /// Every row read, with its version (`None`: absent), for two-phase
    /// commit's check.
    reads: Vec<(Table, [u8; 32], Option<i64>)>,
}

/// One row change.
enum Write {
    Upsert {
        table: Table,
        k: [u8; 32],
        columns: Vec<i64>,
        value: Zeroizing<Vec<u8>>,
    },
    Delete {
        table: Table,
        k: [u8; 32],
    },
    /// Forget the base-key uses recorded with a removed prekey.
    DeleteUsesOfSigned(u32),
    DeleteUsesOfKyber(u32),
}

/// A decrypt whose changes are not written yet (see the [module
/// docs](self#two-phase-decrypt)). Dropping it discards them.
pub struct PendingDecrypt {
    shared: Arc<Shared>,
    reads: Vec<(Table, [u8; 32], Option<i64>)>,
    writes: Vec<Write>,
    plaintext: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PendingDecrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingDecrypt { .. }")
    }
}

impl PendingDecrypt {
    /// The decrypted message.
    pub fn plaintext(&self) -> &[u8] {
        &self.plaintext
    }

    /// Writes the decrypt's changes in one transaction, if every row it
    /// read is unchanged; [`Error::StoreConflict`] (nothing written)
    /// otherwise.
    pub fn commit(self) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let mut conn = shared.lock()?;
        let durability = shared.durability;
        conn.transaction(durability == Durability::Full, |conn| {
            for (table, k, version) in &self.reads {
                if conn.row_version(*table, k)? != *version {
                    return Err(Error::StoreConflict);
                }
            }
            for (table, k, _) in &self.reads {
                conn.forget(*table, k);
            }
            conn.apply(&shared.sealer, &self.writes)?;
            // The counts the decrypt checked its limits against (if any)
            // are not rows: another commit since may have used the room.
            conn.check_new_rows_within_limits(&self.reads, &self.writes)?;
            Ok(())
        })
        .inspect_err(|_| conn.drop_records())
    }
}

fn poisoned<T>(e: PoisonError<T>) -> T {
    e.into_inner()
}

/// A row version (63 bits) from 8 random bytes.
fn random_version(bytes: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    (u64::from_le_bytes(b) >> 1) as i64
}

fn select_sql(table: Table) -> String {
    match table {
        Table::KyberPreKeys => {
            "SELECT version, value, last_resort, 0 FROM kyber_prekeys WHERE k = ?1".into()
        }
        Table::BaseKeyUses => {
            "SELECT version, value, kyber_id, signed_id FROM base_key_uses WHERE k = ?1".into()
        }
        t => format!("SELECT version, value, 0, 0 FROM {} WHERE k = ?1", t.name()),
    }
}

fn columns_of(table: Table, a: i64, b: i64) -> Vec<i64> {
    match table {
        Table::KyberPreKeys => vec![a],
        Table::BaseKeyUses => vec![a, b],
        _ => Vec::new(),
    }
}

impl Conn {
    /// Runs `f` in a write transaction taken before any read; commits when
    /// it succeeds, rolls back otherwise.
    fn transaction<T>(
        &mut self,
        full_sync: bool,
        f: impl FnOnce(&mut Conn) -> Result<T>,
    ) -> Result<T> {
        self.set_sync(full_sync)?;
        self.execute_cached("BEGIN IMMEDIATE").map_err(sql_error)?;
        match self.unwinding_rolls_back(f) {
            Ok(out) => match self.execute_cached("COMMIT") {
                Ok(()) => Ok(out),
                Err(e) => {
                    let _ = self.db.execute_batch("ROLLBACK");
                    self.drop_records();
                    Err(sql_error(e))
                }
            },
            Err(e) => {
                let _ = self.db.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Sets `synchronous` to FULL (`full_sync`) or NORMAL for the next
    /// commits.
    fn set_sync(&mut self, full_sync: bool) -> Result<()> {
        if self.full_sync != full_sync {
            let mode = if full_sync { "FULL" } else { "NORMAL" };
            self.db
                .execute_batch(&format!("PRAGMA synchronous = {mode}"))
                .map_err(sql_error)?;
            self.full_sync = full_sync;
        }
        Ok(())
    }

    /// Runs a statement without parameters, prepared once per connection.
    fn execute_cached(&self, sql: &str) -> rusqlite::Result<()> {
        self.db.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    /// Runs `f` in a read transaction (two-phase decrypt's first phase).
    fn read_transaction<T>(&mut self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        self.db.execute_batch("BEGIN").map_err(sql_error)?;
        let out = self.unwinding_rolls_back(f);
        let _ = self.db.execute_batch("ROLLBACK");
        out
    }

    /// Runs `f` inside the open transaction; if it panics, rolls the
    /// transaction back (releasing the database's lock: the transaction is
    /// SQL, not a guard that a panic would drop) and clears the cache
    /// before the panic goes on.
    fn unwinding_rolls_back<T>(&mut self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))) {
            Ok(out) => out,
            Err(panic) => {
                let _ = self.db.execute_batch("ROLLBACK");
                self.drop_records();
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Drops every cached record (not the row keys: they depend on the
    /// store key only).
    fn drop_records(&mut self) {
        self.sessions.clear();
        self.meta = None;
        self.trust.clear();
    }

    /// The row key of `address`'s session.
    fn session_lookup(&mut self, sealer: &Sealer, address: &Address) -> [u8; 32] {
        if let Some(k) = self.session_keys.get(address) {
            return *k;
        }
        let k = sealer.lookup(Table::Sessions, &rows::session_key(address));
        if self.session_keys.len() >= self.cache_limit {
            self.session_keys.clear();
        }
        if self.cache_limit > 0 {
            self.session_keys.insert(address.clone(), k);
        }
        k
    }

    /// The row key of `name`'s trust.
    fn trust_lookup(&mut self, sealer: &Sealer, name: &str) -> [u8; 32] {
        if let Some(k) = self.trust_keys.get(name) {
            return *k;
        }
        let k = sealer.lookup(Table::Trust, name.as_bytes());
        if self.trust_keys.len() >= self.cache_limit {
            self.trust_keys.clear();
        }
        if self.cache_limit > 0 {
            self.trust_keys.insert(name.to_owned(), k);
        }
        k
    }

    fn read_row(&self, table: Table, k: &[u8; 32]) -> Result<Option<Row>> {
        let mut stmt = self
            .db
            .prepare_cached(&select_sql(table))
            .map_err(sql_error)?;
        stmt.query_row(params![&k[..]], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()
        .map_err(sql_error)
        .map(|row| row.map(|(v, value, a, b)| (v, value, columns_of(table, a, b))))
    }

    /// SQLite's `data_version` in the open transaction (see `Conn::trust`).
    fn data_version(&self) -> Result<i64> {
        self.db
            .prepare_cached("PRAGMA data_version")
            .map_err(sql_error)?
            .query_row([], |r| r.get(0))
            .map_err(sql_error)
    }

    /// The version of row `k` of `table` in the open transaction, whose
    /// `data_version` is `dv`: a cached entry's (version, stamp) when no
    /// other connection committed since it was stamped, the row's
    /// otherwise.
    fn current_version(
        &self,
        table: Table,
        k: &[u8; 32],
        cached: Option<(i64, i64)>,
        dv: i64,
    ) -> Result<Option<i64>> {
        match cached {
            Some((version, stamp)) if stamp == dv => Ok(Some(version)),
            _ => self.row_version(table, k),
        }
    }

    fn row_version(&self, table: Table, k: &[u8; 32]) -> Result<Option<i64>> {
        let mut stmt = self
            .db
            .prepare_cached(&format!(
                "SELECT version FROM {} WHERE k = ?1",
                table.name()
            ))
            .map_err(sql_error)?;
        stmt.query_row(params![&k[..]], |r| r.get(0))
            .optional()
            .map_err(sql_error)
    }

    /// Opens row `k` of `table`: (version, plain value), or `None`.
    fn open_row(
        &self,
        sealer: &Sealer,
        table: Table,
        k: &[u8; 32],
        reads: &mut Vec<(Table, [u8; 32], Option<i64>)>,
    ) -> Result<Option<(i64, Zeroizing<Vec<u8>>)>> {
        let row = self.read_row(table, k)?;
        reads.push((table, *k, row.as_ref().map(|r| r.0)));
        match row {
            Some((version, value, columns)) => {
                Ok(Some((version, sealer.open(table, k, &columns, &value)?)))
            }
            None => Ok(None),
        }
    }

    /// Every row of `table`, opened.
    fn open_all(&self, sealer: &Sealer, table: Table) -> Result<Vec<Zeroizing<Vec<u8>>>> {
        Ok(self
            .open_all_versioned(sealer, table)?
            .into_iter()
            .map(|(_, _, plain)| plain)
            .collect())
    }

    /// Every row of `table`, opened, with its key and version.
    fn open_all_versioned(&self, sealer: &Sealer, table: Table) -> Result<Vec<OpenedRow>> {
        let sql = select_sql(table).replace(" WHERE k = ?1", "");
        let sql = sql.replacen("SELECT version", "SELECT k, version", 1);
        let mut stmt = self.db.prepare(&sql).map_err(sql_error)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(sql_error)?;
        let mut out = Vec::new();
        for row in rows {
            let (k, version, value, a, b) = row.map_err(sql_error)?;
            let k: [u8; 32] = k
                .as_slice()
                .try_into()
                .map_err(|_| Error::StoreCorrupt("a row key has the wrong length"))?;
            out.push((
                k,
                version,
                sealer.open(table, &k, &columns_of(table, a, b), &value)?,
            ));
        }
        Ok(out)
    }

    fn count(&self, sql: &str, args: impl rusqlite::Params) -> Result<usize> {
        let mut stmt = self.db.prepare_cached(sql).map_err(sql_error)?;
        let n: i64 = stmt.query_row(args, |r| r.get(0)).map_err(sql_error)?;
        Ok(n.max(0) as usize)
    }

    /// The number of session rows, from the count the schema's triggers
    /// keep (never a scan of the table).
    fn session_count(&self) -> Result<usize> {
        let mut stmt = self
            .db
            .prepare_cached(schema::SESSION_COUNT)
            .map_err(sql_error)?;
        let n: Option<i64> = stmt
            .query_row([], |r| r.get(0))
            .optional()
            .map_err(sql_error)?;
        n.map(|n| n.max(0) as usize)
            .ok_or(Error::StoreCorrupt("the session count row is missing"))
    }

    /// After `writes`: fails with [`Error::LimitExceeded`] if a row they
    /// add (one `reads` saw absent) takes the sessions past
    /// [`MAX_DURABLE_SESSIONS`] or a reusable prekey's base-key uses past its
    /// share. (A decrypt's view does not count the sessions; a two-phase
    /// decrypt's counts may be out of date when it commits.)
    fn check_new_rows_within_limits(
        &self,
        reads: &[(Table, [u8; 32], Option<i64>)],
        writes: &[Write],
    ) -> Result<()> {
        for w in writes {
            let Write::Upsert {
                table, k, columns, ..
            } = w
            else {
                continue;
            };
            let added = reads
                .iter()
                .any(|(t, rk, v)| t == table && rk == k && v.is_none());
            if !added {
                continue;
            }
            match table {
                Table::Sessions if self.session_count()? > MAX_DURABLE_SESSIONS => {
                    return Err(Error::LimitExceeded("too many sessions in one store"));
                }
                Table::BaseKeyUses => {
                    let kyber = columns.first().copied().unwrap_or(0);
                    let signed = columns.get(1).copied().unwrap_or(0);
                    let n = if kyber != 0 {
                        self.count(
                            "SELECT COUNT(*) FROM base_key_uses WHERE kyber_id = ?1",
                            params![kyber],
                        )?
                    } else {
                        self.count(
                            "SELECT COUNT(*) FROM base_key_uses WHERE kyber_id = 0 AND signed_id = ?1",
                            params![signed],
                        )?
                    };
                    if n > MAX_BASE_KEY_USES_PER_PREKEY {
                        return Err(Error::LimitExceeded(
                            "this prekey started the most sessions it may: rotate the \
                             last-resort Kyber prekey (or the signed prekey)",
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Drops whatever the cache holds for a row.
    fn forget(&mut self, table: Table, k: &[u8; 32]) {
        match table {
            Table::Sessions => {
                self.sessions.remove(k);
            }
            Table::Meta => self.meta = None,
            Table::Trust => {
                self.trust.remove(k);
            }
            _ => {}
        }
    }

    /// Builds the view `load` asks for, inside the caller's transaction.
    fn load(&mut self, sealer: &Sealer, load: &Load) -> Result<(ProtocolStore, Loaded)> {
        let dv = self.data_version()?;
        let mut loaded = Loaded {
            data_version: dv,
            ..Loaded::default()
        };
        let meta_k = *sealer.meta_key();
        let cached = self.meta.as_ref().map(|(v, _, stamp)| (*v, *stamp));
        let meta_version = self.current_version(Table::Meta, &meta_k, cached, dv)?;
        loaded.reads.push((Table::Meta, meta_k, meta_version));
        let mut view = match (&mut self.meta, meta_version) {
            (Some((v, meta, stamp)), Some(version)) if *v == version => {
                *stamp = dv;
                meta.clone()
            }
            (_, None) => return Err(Error::StoreCorrupt("the meta row is missing")),
            _ => {
                let mut ignore = Vec::new();
                let (version, plain) = self
                    .open_row(sealer, Table::Meta, &meta_k, &mut ignore)?
                    .ok_or(Error::StoreCorrupt("the meta row is missing"))?;
                let meta = rows::decode_meta(&plain)?;
                self.meta = Some((version, meta.clone(), dv));
                meta
            }
        };
        loaded.meta = Some(persist::meta_fields(&view));
        view.session_cap = MAX_DURABLE_SESSIONS;

        if load.everything {
            return self.load_everything(sealer, view, loaded);
        }

        let mut absent = 0usize;
        for address in &load.sessions {
            let k = self.session_lookup(sealer, address);
            let cached = self.sessions.get(&k).map(|(v, _, _, stamp)| (*v, *stamp));
            let version = self.current_version(Table::Sessions, &k, cached, dv)?;
            loaded.reads.push((Table::Sessions, k, version));
            let Some(version) = version else {
                absent += 1;
                loaded.sessions.insert(address.clone(), (k, None));
                continue;
            };
            let cell = match self.sessions.remove(&k) {
                Some((v, a, cell, _)) if v == version && a == *address => cell,
                _ => {
                    let mut ignore = Vec::new();
                    let (_, plain) = self
                        .open_row(sealer, Table::Sessions, &k, &mut ignore)?
                        .ok_or(Error::StoreCorrupt("a session row vanished"))?;
                    let (a, record) = rows::decode_session(&plain)?;
                    if a != *address {
                        return Err(Error::StoreCorrupt("a session row holds another address"));
                    }
                    SessionCell::new(record)
                }
            };
            loaded
                .sessions
                .insert(address.clone(), (k, Some((version, cell.generation()))));
            view.sessions.insert(address.clone(), cell);
        }
        if load.count_sessions && absent > 0 {
            let total = self.session_count()?;
            view.unloaded_sessions = total.saturating_sub(load.sessions.len() - absent);
        }

        for name in &load.trust {
            let k = self.trust_lookup(sealer, name);
            let cached = self.trust.get(&k).map(|(v, _, _, stamp)| (*v, *stamp));
            let version = self.current_version(Table::Trust, &k, cached, dv)?;
            loaded.reads.push((Table::Trust, k, version));
            let key = match version {
                None => None,
                Some(version) => match self.trust.get_mut(&k) {
                    Some((v, n, key, stamp)) if *v == version && n == name => {
                        *stamp = dv;
                        Some(*key)
                    }
                    _ => {
                        let mut ignore = Vec::new();
                        let (version, plain) = self
                            .open_row(sealer, Table::Trust, &k, &mut ignore)?
                            .ok_or(Error::StoreCorrupt("a trust row vanished"))?;
                        let (n, key) = rows::decode_trust(&plain)?;
                        if n != *name {
                            return Err(Error::StoreCorrupt("a trust row holds another name"));
                        }
                        // A committed row: nothing is written before the
                        // view is loaded.
                        if self.trust.len() >= self.cache_limit {
                            let victim = self.trust.keys().next().copied();
                            if let Some(v) = victim {
                                self.trust.remove(&v);
                            }
                        }
                        if self.cache_limit > 0 {
                            self.trust.insert(k, (version, n, key, dv));
                        }
                        Some(key)
                    }
                },
            };
            if let Some(key) = key {
                view.trusted.get_mut().insert(name.clone(), key);
            }
            loaded.trust.insert(name.clone(), (k, key));
        }

        match load.prekeys {
            PreKeyLoad::None => {}
            PreKeyLoad::All => self.load_all_prekeys(sealer, &mut view, &mut loaded)?,
            PreKeyLoad::Ids {
                signed,
                one_time,
                kyber,
            } => {
                let k = sealer.lookup(Table::SignedPreKeys, &rows::id_key(signed));
                if let Some((_, plain)) =
                    self.open_row(sealer, Table::SignedPreKeys, &k, &mut loaded.reads)?
                {
                    let r = rows::decode_signed_prekey(&plain)?;
                    if r.id != signed {
                        return Err(Error::StoreCorrupt("a prekey row holds another id"));
                    }
                    loaded.signed.insert(r.id);
                    view.signed_prekeys.insert(r.id, r);
                }
                if let Some(id) = one_time {
                    let k = sealer.lookup(Table::PreKeys, &rows::id_key(id));
                    if let Some((_, plain)) =
                        self.open_row(sealer, Table::PreKeys, &k, &mut loaded.reads)?
                    {
                        let r = rows::decode_prekey(&plain)?;
                        if r.id != id {
                            return Err(Error::StoreCorrupt("a prekey row holds another id"));
                        }
                        loaded.one_time.insert(r.id);
                        view.prekeys.insert(r.id, r);
                    }
                }
                if let Some(id) = kyber {
                    let k = sealer.lookup(Table::KyberPreKeys, &rows::id_key(id));
                    if let Some((_, plain)) =
                        self.open_row(sealer, Table::KyberPreKeys, &k, &mut loaded.reads)?
                    {
                        let r = rows::decode_kyber_prekey(&plain)?;
                        if r.id != id {
                            return Err(Error::StoreCorrupt("a prekey row holds another id"));
                        }
                        loaded.kyber.insert(r.id);
                        view.kyber_prekeys.insert(r.id, r);
                    }
                }
            }
        }

        if let Some(used) = &load.base_key_use {
            let k = sealer.lookup(Table::BaseKeyUses, &used.base_key);
            if let Some((_, plain)) =
                self.open_row(sealer, Table::BaseKeyUses, &k, &mut loaded.reads)?
            {
                let u = rows::decode_base_key_use(&plain)?;
                loaded.uses.insert(u.base_key);
                view.base_key_uses.insert(u);
            }
            // The counts the per-prekey share is checked against.
            if used.kyber_pre_key_id != 0 {
                let n = self.count(
                    "SELECT COUNT(*) FROM base_key_uses WHERE kyber_id = ?1",
                    params![used.kyber_pre_key_id],
                )?;
                view.base_key_uses.set_count((used.kyber_pre_key_id, 0), n);
            }
            let n = self.count(
                "SELECT COUNT(*) FROM base_key_uses WHERE kyber_id = 0 AND signed_id = ?1",
                params![used.signed_pre_key_id],
            )?;
            view.base_key_uses.set_count((0, used.signed_pre_key_id), n);
        }
        Ok((view, loaded))
    }

    fn load_all_prekeys(
        &self,
        sealer: &Sealer,
        view: &mut ProtocolStore,
        loaded: &mut Loaded,
    ) -> Result<()> {
        for plain in self.open_all(sealer, Table::SignedPreKeys)? {
            let r = rows::decode_signed_prekey(&plain)?;
            loaded.signed.insert(r.id);
            if view.signed_prekeys.insert(r.id, r).is_some() {
                return Err(Error::StoreCorrupt("two rows hold one signed prekey id"));
            }
        }
        for plain in self.open_all(sealer, Table::PreKeys)? {
            let r = rows::decode_prekey(&plain)?;
            loaded.one_time.insert(r.id);
            if view.prekeys.insert(r.id, r).is_some() {
                return Err(Error::StoreCorrupt("two rows hold one prekey id"));
            }
        }
        for plain in self.open_all(sealer, Table::KyberPreKeys)? {
            let r = rows::decode_kyber_prekey(&plain)?;
            loaded.kyber.insert(r.id);
            if view.kyber_prekeys.insert(r.id, r).is_some() {
                return Err(Error::StoreCorrupt("two rows hold one Kyber prekey id"));
            }
        }
        Ok(())
    }

    fn load_everything(
        &mut self,
        sealer: &Sealer,
        mut view: ProtocolStore,
        mut loaded: Loaded,
    ) -> Result<(ProtocolStore, Loaded)> {
        // Everything becomes an in-memory store (or saved bytes, which
        // one restores): refused before reading when it could not be, and
        // while reading whatever the count says (it is plain: an altered
        // count must not make bytes that `restore` refuses).
        let too_many = || {
            Error::LimitExceeded(
                "the durable store holds more sessions than an in-memory store or the saved \
                 format can (MAX_SESSIONS, 65,536)",
            )
        };
        if self.session_count()? > MAX_SESSIONS {
            return Err(too_many());
        }
        view.session_cap = MAX_SESSIONS;
        self.load_all_prekeys(sealer, &mut view, &mut loaded)?;
        for (_, version, plain) in self.open_all_versioned(sealer, Table::Sessions)? {
            if view.sessions.len() >= MAX_SESSIONS {
                return Err(too_many());
            }
            let (address, record) = rows::decode_session(&plain)?;
            let k = sealer.lookup(Table::Sessions, &rows::session_key(&address));
            let cell = SessionCell::new(record);
            loaded
                .sessions
                .insert(address.clone(), (k, Some((version, cell.generation()))));
            if view.sessions.insert(address, cell).is_some() {
                return Err(Error::StoreCorrupt("two rows hold one session address"));
            }
        }
        for (k, _, plain) in self.open_all_versioned(sealer, Table::Trust)? {
            let (name, key) = rows::decode_trust(&plain)?;
            // The row's key is its name's: the sealed value binds it.
            loaded.trust.insert(name.clone(), (k, Some(key)));
            view.trusted.get_mut().insert(name, key);
        }
        for plain in self.open_all(sealer, Table::BaseKeyUses)? {
            let u = rows::decode_base_key_use(&plain)?;
            loaded.uses.insert(u.base_key);
            view.base_key_uses.insert(u);
        }
        Ok((view, loaded))
    }

    /// Writes `writes` inside the caller's transaction; returns the new
    /// versions of the session rows written.
    fn apply(&mut self, sealer: &Sealer, writes: &[Write]) -> Result<HashMap<[u8; 32], i64>> {
        let mut written = HashMap::new();
        for w in writes {
            match w {
                Write::Upsert {
                    table,
                    k,
                    columns,
                    value,
                } => {
                    // One read of the system's generator for both.
                    let mut random = [0u8; seal::NONCE_LEN + 8];
                    OsRng.fill_bytes(&mut random);
                    let mut nonce = [0u8; seal::NONCE_LEN];
                    nonce.copy_from_slice(&random[..seal::NONCE_LEN]);
                    let version = random_version(&random[seal::NONCE_LEN..]);
                    let sealed = sealer.seal_with_nonce(*table, k, columns, value, &nonce)?;
                    let sql = match table {
                        Table::KyberPreKeys => "INSERT INTO kyber_prekeys (k, version, value, last_resort) VALUES (?1, ?2, ?3, ?4) \
                             ON CONFLICT(k) DO UPDATE SET version = excluded.version, value = excluded.value, last_resort = excluded.last_resort".to_owned(),
                        Table::BaseKeyUses => "INSERT INTO base_key_uses (k, version, value, kyber_id, signed_id) VALUES (?1, ?2, ?3, ?4, ?5) \
                             ON CONFLICT(k) DO UPDATE SET version = excluded.version, value = excluded.value, kyber_id = excluded.kyber_id, signed_id = excluded.signed_id".to_owned(),
                        t => format!(
                            "INSERT INTO {} (k, version, value) VALUES (?1, ?2, ?3) \
                             ON CONFLICT(k) DO UPDATE SET version = excluded.version, value = excluded.value",
                            t.name()
                        ),
                    };
                    // The cached record (if any) is no longer the row's.
                    self.forget(*table, k);
                    let mut stmt = self.db.prepare_cached(&sql).map_err(sql_error)?;
                    let c = |i: usize| columns.get(i).copied().unwrap_or(0);
                    match table {
                        Table::KyberPreKeys => stmt.execute(params![&k[..], version, sealed, c(0)]),
                        Table::BaseKeyUses => {
                            stmt.execute(params![&k[..], version, sealed, c(0), c(1)])
                        }
                        _ => stmt.execute(params![&k[..], version, sealed]),
                    }
                    .map_err(sql_error)?;
                    if *table == Table::Sessions {
                        written.insert(*k, version);
                    }
                }
                Write::Delete { table, k } => {
                    let mut stmt = self
                        .db
                        .prepare_cached(&format!("DELETE FROM {} WHERE k = ?1", table.name()))
                        .map_err(sql_error)?;
                    stmt.execute(params![&k[..]]).map_err(sql_error)?;
                    drop(stmt);
                    self.forget(*table, k);
                }
                Write::DeleteUsesOfSigned(id) => {
                    self.db
                        .execute(
                            "DELETE FROM base_key_uses WHERE signed_id = ?1",
                            params![id],
                        )
                        .map_err(sql_error)?;
                }
                Write::DeleteUsesOfKyber(id) => {
                    self.db
                        .execute("DELETE FROM base_key_uses WHERE kyber_id = ?1", params![id])
                        .map_err(sql_error)?;
                }
            }
        }
        Ok(written)
    }
}

/// The row changes that take the loaded records to the view's.
fn diff(sealer: &Sealer, view: &ProtocolStore, loaded: &Loaded) -> Vec<Write> {
    let mut writes = Vec::new();
    let upsert =
        |table: Table, k: [u8; 32], columns: Vec<i64>, value: Zeroizing<Vec<u8>>| Write::Upsert {
            table,
            k,
            columns,
            value,
        };
    if loaded.meta != Some(persist::meta_fields(view)) {
        writes.push(upsert(
            Table::Meta,
            *sealer.meta_key(),
            Vec::new(),
            rows::encode_meta(view),
        ));
    }
    for (address, cell) in &view.sessions {
        let unchanged = matches!(loaded.sessions.get(address),
            Some((_, Some((_, g)))) if *g == cell.generation());
        if !unchanged {
            let k = match loaded.sessions.get(address) {
                Some((k, _)) => *k,
                None => sealer.lookup(Table::Sessions, &rows::session_key(address)),
            };
            writes.push(upsert(
                Table::Sessions,
                k,
                Vec::new(),
                rows::encode_session(address, &cell.lock()),
            ));
        }
    }
    for (address, (k, was)) in &loaded.sessions {
        if was.is_some() && !view.sessions.contains_key(address) {
            writes.push(Write::Delete {
                table: Table::Sessions,
                k: *k,
            });
        }
    }
    let trusted = view.trusted.read();
    for (name, key) in trusted.iter() {
        let was = loaded.trust.get(name);
        if was.and_then(|(_, key)| *key) != Some(*key) {
            let k = match was {
                Some((k, _)) => *k,
                None => sealer.lookup(Table::Trust, name.as_bytes()),
            };
            writes.push(upsert(
                Table::Trust,
                k,
                Vec::new(),
                rows::encode_trust(name, key),
            ));
        }
    }
    for (name, (k, was)) in &loaded.trust {
        if was.is_some() && !trusted.contains_key(name) {
            writes.push(Write::Delete {
                table: Table::Trust,
                k: *k,
            });
        }
    }
    drop(trusted);
    for (id, r) in &view.signed_prekeys {
        if !loaded.signed.contains(id) {
            let k = sealer.lookup(Table::SignedPreKeys, &rows::id_key(*id));
            writes.push(upsert(
                Table::SignedPreKeys,
                k,
                Vec::new(),
                rows::encode_signed_prekey(r),
            ));
        }
    }
    for id in &loaded.signed {
        if !view.signed_prekeys.contains_key(id) {
            let k = sealer.lookup(Table::SignedPreKeys, &rows::id_key(*id));
            writes.push(Write::Delete {
                table: Table::SignedPreKeys,
                k,
            });
            writes.push(Write::DeleteUsesOfSigned(*id));
        }
    }
    for (id, r) in &view.prekeys {
        if !loaded.one_time.contains(id) {
            let k = sealer.lookup(Table::PreKeys, &rows::id_key(*id));
            writes.push(upsert(
                Table::PreKeys,
                k,
                Vec::new(),
                rows::encode_prekey(r),
            ));
        }
    }
    for id in &loaded.one_time {
        if !view.prekeys.contains_key(id) {
            let k = sealer.lookup(Table::PreKeys, &rows::id_key(*id));
            writes.push(Write::Delete {
                table: Table::PreKeys,
                k,
            });
        }
    }
    for (id, r) in &view.kyber_prekeys {
        if !loaded.kyber.contains(id) {
            let k = sealer.lookup(Table::KyberPreKeys, &rows::id_key(*id));
            writes.push(upsert(
                Table::KyberPreKeys,
                k,
                vec![i64::from(r.last_resort)],
                rows::encode_kyber_prekey(r),
            ));
        }
    }
    for id in &loaded.kyber {
        if !view.kyber_prekeys.contains_key(id) {
            let k = sealer.lookup(Table::KyberPreKeys, &rows::id_key(*id));
            writes.push(Write::Delete {
                table: Table::KyberPreKeys,
                k,
            });
            writes.push(Write::DeleteUsesOfKyber(*id));
        }
    }
    for u in view.base_key_uses.iter() {
        if !loaded.uses.contains(&u.base_key) {
            let k = sealer.lookup(Table::BaseKeyUses, &u.base_key);
            writes.push(upsert(
                Table::BaseKeyUses,
                k,
                vec![
                    i64::from(u.kyber_pre_key_id),
                    i64::from(u.signed_pre_key_id),
                ],
                rows::encode_base_key_use(u),
            ));
        }
    }
    writes
}

impl DurableStore {
    /// Opens the durable store in the SQLite database at `path` with the
    /// application's 32-byte `key`, creating it (with a fresh identity and
    /// registration id) when the file holds no store yet and
    /// `options.create_device_id` is set. A wrong key is
    /// [`Error::WrongStoreKey`].
    pub fn open(path: impl AsRef<Path>, key: &[u8], options: &DurableOptions) -> Result<Self> {
        Self::open_with(path.as_ref(), key, options, |device_id| {
            ProtocolStore::generate(device_id, &mut OsRng)
        })
    }

    /// Creates a durable store at `path` holding everything `store` holds
    /// (for example a store restored from `save` or `save_encrypted`
    /// bytes). Fails if the file already holds a store.
    pub fn import(
        path: impl AsRef<Path>,
        key: &[u8],
        store: &ProtocolStore,
        options: &DurableOptions,
    ) -> Result<Self> {
        let mut created = false;
        let durable = Self::open_with(path.as_ref(), key, options, |_| {
            created = true;
            Ok(store.clone())
        })?;
        if !created {
            return Err(Error::Storage(
                "the database already holds a store; import needs a new file".into(),
            ));
        }
        Ok(durable)
    }

    fn open_with(
        path: &Path,
        key: &[u8],
        options: &DurableOptions,
        create: impl FnOnce(u32) -> Result<ProtocolStore>,
    ) -> Result<Self> {
        if key.len() != STORE_KEY_LEN {
            return Err(Error::InvalidKeyLength {
                expected: STORE_KEY_LEN,
                got: key.len(),
            });
        }
        let db = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql_error)?;
        db.busy_timeout(options.busy_timeout).map_err(sql_error)?;
        // WAL: readers do not block the writer; the file stays a plain
        // SQLite database.
        let mode: String = db
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Storage(format!(
                "the database could not be put in WAL mode (journal mode {mode})"
            )));
        }
        db.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;")
            .map_err(sql_error)?;
        let mut conn = Conn {
            db,
            full_sync: true,
            meta: None,
            sessions: HashMap::new(),
            trust: HashMap::new(),
            session_keys: HashMap::new(),
            trust_keys: HashMap::new(),
            cache_limit: options.cache_sessions,
            batch: None,
            next_batch: 0,
        };
        let mut create = Some(create);
        let store_key = conn.transaction(true, |conn| {
            let db = &conn.db;
            let version = schema::version(db)?;
            if version < 0 {
                // Never a store of ours: refused as an unknown version,
                // not taken for an empty file.
                return Err(Error::Storage(format!("unknown schema version {version}")));
            }
            let has_key = version > 0
                && db
                    .query_row("SELECT wrapped FROM store_key WHERE id = 0", [], |r| {
                        r.get::<_, Vec<u8>>(0)
                    })
                    .optional()
                    .map_err(sql_error)?
                    .is_some();
            if version == 0 {
                let tables: i64 = db
                    .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
                    .map_err(sql_error)?;
                if tables != 0 {
                    return Err(Error::Storage(
                        "the database holds other tables: not a ratchetkit store".into(),
                    ));
                }
            }
            if version > 0 && !has_key {
                // Created with its key row in one transaction: a store
                // without one was altered. Never a new identity over it.
                return Err(Error::StoreCorrupt("the store-key row is missing"));
            }
            if !has_key {
                let device_id = options.create_device_id.ok_or_else(|| {
                    Error::Storage("the database holds no store, and creating one is off".into())
                })?;
                let make = create
                    .take()
                    .ok_or(Error::Storage("store created twice".into()))?;
                let store = make(device_id)?;
                if version == 0 {
                    schema::create(db)?;
                }
                let (store_key, wrapped) = seal::new_store_key(key)?;
                db.execute(
                    "INSERT INTO store_key (id, wrapped) VALUES (0, ?1)",
                    params![wrapped],
                )
                .map_err(sql_error)?;
                let sealer = Sealer::new(&store_key);
                let loaded = Loaded::default();
                let writes = diff(&sealer, &store, &loaded);
                conn.apply(&sealer, &writes)?;
                return Ok(store_key);
            }
            schema::migrate(db, version)?;
            let wrapped: Vec<u8> = db
                .query_row("SELECT wrapped FROM store_key WHERE id = 0", [], |r| {
                    r.get(0)
                })
                .map_err(sql_error)?;
            seal::unwrap(key, &wrapped)
        })?;
        let sealer = Sealer::new(&store_key);
        // Read the meta row once: the identity and ids never change.
        let (meta, _) = conn.transaction(true, |conn| conn.load(&sealer, &Load::meta()))?;
        Ok(DurableStore {
            shared: Arc::new(Shared {
                identity: meta.identity.clone(),
                registration_id: meta.registration_id,
                device_id: meta.device_id,
                sealer,
                durability: options.durability,
                cache_sessions: options.cache_sessions,
                conn: Mutex::new(conn),
                group: group::Group::default(),
            }),
        })
    }

    /// Rewraps the store key under `new_key` (one row changes); `old_key`
    /// must be the key the store was opened with.
    pub fn rekey(&self, old_key: &[u8], new_key: &[u8]) -> Result<()> {
        let mut conn = self.shared.lock()?;
        // The store key stays the same (only its wrapping changes), so the
        // cached row keys would stay right; they are dropped all the same,
        // with the records.
        conn.drop_records();
        conn.session_keys.clear();
        conn.trust_keys.clear();
        conn.transaction(true, |conn| {
            let wrapped: Vec<u8> = conn
                .db
                .query_row("SELECT wrapped FROM store_key WHERE id = 0", [], |r| {
                    r.get(0)
                })
                .map_err(sql_error)?;
            let store_key = seal::unwrap(old_key, &wrapped)?;
            let rewrapped = seal::wrap(new_key, &store_key)?;
            conn.db
                .execute(
                    "UPDATE store_key SET wrapped = ?1 WHERE id = 0",
                    params![rewrapped],
                )
                .map_err(sql_error)?;
            Ok(())
        })
    }

    /// Runs `f` on a view holding what `load` names, in one write
    /// transaction, and writes back what `f` changed. When `f` fails,
    /// nothing is written. `full_sync`: commit at full durability whatever
    /// the store's [`Durability`].
    pub(crate) fn with<T, E: From<Error>>(
        &self,
        load: &Load,
        full_sync: bool,
        f: impl FnOnce(&mut ProtocolStore) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let shared = &*self.shared;
        let full_sync = full_sync || shared.durability == Durability::Full;
        let mut out = None;
        let mut failure = None;
        let call = |conn: &mut Conn| {
            let (mut view, loaded) = conn.load(&shared.sealer, load)?;
            match f(&mut view) {
                Ok(v) => out = Some(v),
                Err(e) => {
                    failure = Some(e);
                    // Rolls back; the view (and the cached records moved
                    // into it) is dropped.
                    return Err(Error::StoreConflict);
                }
            }
            let writes = diff(&shared.sealer, &view, &loaded);
            let written = conn.apply(&shared.sealer, &writes)?;
            conn.check_new_rows_within_limits(&loaded.reads, &writes)?;
            // Each session's row key and version as written, for the
            // cache (which is cleared if the commit fails).
            let versions: Vec<Option<([u8; 32], i64)>> = view
                .sessions
                .keys()
                .map(|a| {
                    let (k, was) = loaded.sessions.get(a)?;
                    let version = written.get(k).copied().or(was.map(|(v, _)| v))?;
                    Some((*k, version))
                })
                .collect();
            conn.keep(shared, view, &versions, loaded.data_version);
            Ok(())
        };
        let result = if full_sync {
            shared.write_full(call)
        } else {
            shared.lock()?.transaction(false, call)
        };
        match (result, failure, out) {
            // The batch this call shared failed: its own failure may rest
            // on the batch's other calls, now undone (see `group`).
            (Err(e), Some(_), _) if e != Error::StoreConflict => Err(e.into()),
            (_, Some(e), _) => Err(e),
            (Ok(()), None, Some(out)) => Ok(out),
            (Err(e), None, _) => Err(e.into()),
            (Ok(()), None, None) => Err(Error::Storage("no result".into()).into()),
        }
    }

    /// Decrypts without writing anything (see the [module
    /// docs](self#two-phase-decrypt)).
    pub fn decrypt_pending<R: RngCore + CryptoRng>(
        &self,
        address: &Address,
        message_type: u8,
        bytes: &[u8],
        rng: &mut R,
    ) -> Result<PendingDecrypt> {
        if message_type != PREKEY_TYPE && message_type != WHISPER_TYPE {
            return Err(Error::InvalidArgument(
                "message type must be 2 (whisper) or 3 (prekey)",
            ));
        }
        let shared = &self.shared;
        let mut conn = shared.lock()?;
        let load = Load::decrypt(address, message_type, bytes);
        conn.read_transaction(|conn| {
            let (mut view, loaded) = conn.load(&shared.sealer, &load)?;
            let plaintext = Zeroizing::new(view.decrypt(address, message_type, bytes, rng)?);
            let writes = diff(&shared.sealer, &view, &loaded);
            // The view's records were moved out of the cache: it is
            // refilled on the next call.
            Ok(PendingDecrypt {
                shared: Arc::clone(shared),
                reads: loaded.reads,
                writes,
                plaintext,
            })
        })
    }
}

impl Conn {
    /// Keeps a committed view's sessions in the cache, with their row
    /// versions as committed.
    /// `dv`: the `data_version` of the transaction that committed them.
    fn keep(
        &mut self,
        shared: &Shared,
        view: ProtocolStore,
        versions: &[Option<([u8; 32], i64)>],
        dv: i64,
    ) {
        for ((address, cell), version) in view.sessions.into_iter().zip(versions) {
            let Some((k, version)) = version else {
                continue;
            };
            if self.sessions.len() >= shared.cache_sessions {
                let victim = self.sessions.keys().next().copied();
                if let Some(v) = victim {
                    self.sessions.remove(&v);
                }
            }
            self.sessions.insert(*k, (*version, address, cell, dv));
        }
    }
}
