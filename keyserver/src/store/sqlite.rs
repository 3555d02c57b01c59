//! The SQLite backend: one database file in WAL mode with
//! `synchronous=FULL`, so a write is on disk before the server answers.
//!
//! One writer thread owns the connection and runs every operation. It
//! takes all operations waiting in its queue, runs each inside its own
//! savepoint of one `BEGIN IMMEDIATE` transaction and commits them together
//! (group commit: one fsync for the batch); each caller hears its result
//! only after the commit. `BEGIN IMMEDIATE` takes SQLite's write lock, so
//! several server processes may share one file (with a busy timeout).

use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};

use super::{
    Bundle, KeyCounts, KeySet, MailboxLimits, Message, OneTimeKey, PostOutcome, RegisterOutcome,
    SignedKey, Store, StoreError, StoreResult, UploadOutcome, MAX_DEVICES_PER_NAME,
};

type Reply = Box<dyn FnOnce(StoreResult<()>) + Send>;
type Job = Box<dyn FnOnce(Option<&Connection>, &StoreError) -> Reply + Send>;

/// The most operations committed together.
const MAX_BATCH: usize = 256;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS names (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS devices (
    name TEXT NOT NULL, device_id INTEGER NOT NULL, identity_key BLOB NOT NULL,
    registration_id INTEGER,
    signed_id INTEGER, signed_key BLOB, signed_sig BLOB,
    lr_id INTEGER, lr_key BLOB, lr_sig BLOB,
    PRIMARY KEY (name, device_id));
CREATE TABLE IF NOT EXISTS prekeys (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, device_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL, public_key BLOB NOT NULL,
    UNIQUE (name, device_id, key_id));
CREATE INDEX IF NOT EXISTS prekeys_claim ON prekeys (name, device_id, id);
CREATE TABLE IF NOT EXISTS kyber_prekeys (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, device_id INTEGER NOT NULL,
    key_id INTEGER NOT NULL, public_key BLOB NOT NULL, signature BLOB NOT NULL,
    UNIQUE (name, device_id, key_id));
CREATE INDEX IF NOT EXISTS kyber_prekeys_claim ON kyber_prekeys (name, device_id, id);
CREATE TABLE IF NOT EXISTS nonces (
    name TEXT NOT NULL, device_id INTEGER NOT NULL, nonce TEXT NOT NULL,
    expires INTEGER NOT NULL, PRIMARY KEY (name, device_id, nonce));
CREATE INDEX IF NOT EXISTS nonces_expires ON nonces (expires);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, device_id INTEGER NOT NULL,
    sender_name TEXT NOT NULL, sender_device INTEGER NOT NULL,
    body BLOB NOT NULL, created INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS messages_recipient ON messages (name, device_id, id);
";

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Read-only connections for the identity-key lookup of every request.
const READERS: usize = 4;

/// The SQLite store.
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    /// Connections for point reads outside the writer's queue (WAL lets
    /// them read everything committed, concurrently with the writer).
    readers: Vec<std::sync::Mutex<Connection>>,
    next_reader: std::sync::atomic::AtomicUsize,
}

fn connect(path: &str) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(db)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(db)?;
    // WAL: readers never block the writer; FULL: every commit is synced.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    conn.execute_batch(SCHEMA).map_err(db)?;
    Ok(conn)
}

fn begin(conn: &Connection) -> StoreResult<()> {
    let mut last = None;
    // The busy timeout waits for another process's lock; a few rounds of
    // it before giving up.
    for _ in 0..6 {
        match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| StoreError::Backend("cannot begin".into()), db))
}

fn writer(conn: Connection, jobs: mpsc::Receiver<Job>) {
    let no_connection = StoreError::Backend("transaction could not begin".into());
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match begin(&conn) {
            Ok(()) => {
                let replies: Vec<Reply> = batch
                    .into_iter()
                    .map(|job| job(Some(&conn), &no_connection))
                    .collect();
                let commit = conn.execute_batch("COMMIT").map_err(db);
                if commit.is_err() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                for reply in replies {
                    reply(commit.clone());
                }
            }
            Err(e) => {
                for job in batch {
                    job(None, &e)(Err(e.clone()));
                }
            }
        }
    }
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> StoreResult<T> {
    conn.prepare_cached("SAVEPOINT op")
        .and_then(|mut s| s.execute([]))
        .map_err(db)?;
    match f(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE op")
                .and_then(|mut s| s.execute([]))
                .map_err(db)?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO op; RELEASE op");
            Err(db(e))
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &str) -> StoreResult<Self> {
        let conn = connect(path)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open(path).map_err(db)?;
            r.busy_timeout(Duration::from_secs(10)).map_err(db)?;
            r.pragma_update(None, "query_only", true).map_err(db)?;
            readers.push(std::sync::Mutex::new(r));
        }
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        Ok(SqliteStore {
            jobs: tx,
            readers,
            next_reader: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Runs a short read on one of the reader connections (inline: a point
    /// lookup by primary key).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
        let i = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % self.readers.len();
        let conn = match self.readers[i].lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&conn).map_err(db)
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn, err| -> Reply {
            let result = match conn {
                Some(conn) => in_savepoint(conn, f),
                None => Err(err.clone()),
            };
            Box::new(move |commit: StoreResult<()>| {
                let _ = tx.send(commit.and(result));
            })
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Backend("the writer thread stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("the writer thread stopped".into()))?
    }
}

fn claim_one(
    conn: &Connection,
    name: &str,
    device_id: u32,
    one_time: bool,
) -> rusqlite::Result<Option<Bundle>> {
    let row = conn
        .prepare_cached(
            "SELECT identity_key, registration_id, signed_id, signed_key, signed_sig,
                    lr_id, lr_key, lr_sig
             FROM devices WHERE name = ?1 AND device_id = ?2 AND signed_key IS NOT NULL",
        )?
        .query_row(params![name, device_id], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, u32>(1)?,
                SignedKey {
                    id: r.get(2)?,
                    public_key: r.get(3)?,
                    signature: r.get(4)?,
                },
                SignedKey {
                    id: r.get(5)?,
                    public_key: r.get(6)?,
                    signature: r.get(7)?,
                },
            ))
        })
        .optional()?;
    let Some((identity_key, registration_id, signed_prekey, last_resort)) = row else {
        return Ok(None);
    };
    let kyber = if !one_time {
        None
    } else {
        conn.prepare_cached(
            "DELETE FROM kyber_prekeys WHERE id = (SELECT id FROM kyber_prekeys
                 WHERE name = ?1 AND device_id = ?2 ORDER BY id LIMIT 1)
             RETURNING key_id, public_key, signature",
        )?
        .query_row(params![name, device_id], |r| {
            Ok(SignedKey {
                id: r.get(0)?,
                public_key: r.get(1)?,
                signature: r.get(2)?,
            })
        })
        .optional()?
    };
    // Without a one-time Kyber key (or not claiming): the last-resort one,
    // and no one-time EC key either (none is claimed).
    let Some(kyber_prekey) = kyber else {
        return Ok(Some(Bundle {
            name: name.to_owned(),
            device_id,
            registration_id,
            identity_key,
            signed_prekey,
            prekey: None,
            kyber_prekey: last_resort,
            kyber_last_resort: true,
        }));
    };
    let prekey = conn
        .prepare_cached(
            "DELETE FROM prekeys WHERE id = (SELECT id FROM prekeys
                 WHERE name = ?1 AND device_id = ?2 ORDER BY id LIMIT 1)
             RETURNING key_id, public_key",
        )?
        .query_row(params![name, device_id], |r| {
            Ok(OneTimeKey {
                id: r.get(0)?,
                public_key: r.get(1)?,
            })
        })
        .optional()?;
    let kyber_last_resort = false;
    Ok(Some(Bundle {
        name: name.to_owned(),
        device_id,
        registration_id,
        identity_key,
        signed_prekey,
        prekey,
        kyber_prekey,
        kyber_last_resort,
    }))
}

fn counts(conn: &Connection, name: &str, device_id: u32) -> rusqlite::Result<KeyCounts> {
    let prekeys: i64 = conn
        .prepare_cached("SELECT count(*) FROM prekeys WHERE name = ?1 AND device_id = ?2")?
        .query_row(params![name, device_id], |r| r.get(0))?;
    let kyber_prekeys: i64 = conn
        .prepare_cached("SELECT count(*) FROM kyber_prekeys WHERE name = ?1 AND device_id = ?2")?
        .query_row(params![name, device_id], |r| r.get(0))?;
    Ok(KeyCounts {
        prekeys: prekeys.max(0) as u64,
        kyber_prekeys: kyber_prekeys.max(0) as u64,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn identity_key(&self, name: &str, device_id: u32) -> StoreResult<Option<Vec<u8>>> {
        self.read(|c| {
            c.prepare_cached("SELECT identity_key FROM devices WHERE name = ?1 AND device_id = ?2")?
                .query_row(params![name, device_id], |r| r.get(0))
                .optional()
        })
    }

    async fn name_exists(&self, name: &str) -> StoreResult<bool> {
        let name = name.to_owned();
        self.call(move |c| {
            c.prepare_cached("SELECT 1 FROM names WHERE name = ?1")?
                .exists(params![name])
        })
        .await
    }

    async fn use_nonce(
        &self,
        name: &str,
        device_id: u32,
        nonce: &str,
        expires: i64,
    ) -> StoreResult<bool> {
        let (name, nonce) = (name.to_owned(), nonce.to_owned());
        self.call(move |c| {
            let n = c
                .prepare_cached(
                    "INSERT INTO nonces (name, device_id, nonce, expires) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![name, device_id, nonce, expires])?;
            Ok(n == 1)
        })
        .await
    }

    async fn prune_nonces(&self, now: i64) -> StoreResult<u64> {
        self.call(move |c| {
            let n = c
                .prepare_cached("DELETE FROM nonces WHERE expires < ?1")?
                .execute(params![now])?;
            Ok(n as u64)
        })
        .await
    }

    async fn register_name(
        &self,
        name: &str,
        device_id: u32,
        identity_key: &[u8],
    ) -> StoreResult<bool> {
        let (name, key) = (name.to_owned(), identity_key.to_vec());
        self.call(move |c| {
            let n = c
                .prepare_cached("INSERT INTO names (name) VALUES (?1) ON CONFLICT DO NOTHING")?
                .execute(params![name])?;
            if n == 0 {
                return Ok(false);
            }
            c.prepare_cached(
                "INSERT INTO devices (name, device_id, identity_key) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![name, device_id, key])?;
            Ok(true)
        })
        .await
    }

    async fn put_device(
        &self,
        name: &str,
        device_id: u32,
        identity_key: &[u8],
    ) -> StoreResult<Option<RegisterOutcome>> {
        let (name, key) = (name.to_owned(), identity_key.to_vec());
        self.call(move |c| {
            if !c
                .prepare_cached("SELECT 1 FROM names WHERE name = ?1")?
                .exists(params![name])?
            {
                return Ok(None);
            }
            let old: Option<Vec<u8>> = c
                .prepare_cached(
                    "SELECT identity_key FROM devices WHERE name = ?1 AND device_id = ?2",
                )?
                .query_row(params![name, device_id], |r| r.get(0))
                .optional()?;
            match old {
                None => {
                    let held: i64 = c
                        .prepare_cached("SELECT count(*) FROM devices WHERE name = ?1")?
                        .query_row(params![name], |r| r.get(0))?;
                    if held.max(0) as u64 >= MAX_DEVICES_PER_NAME {
                        return Ok(Some(RegisterOutcome::TooManyDevices));
                    }
                    c.prepare_cached(
                        "INSERT INTO devices (name, device_id, identity_key) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![name, device_id, key])?;
                    Ok(Some(RegisterOutcome::Created))
                }
                Some(old) if old == key => Ok(Some(RegisterOutcome::Updated)),
                Some(_) => {
                    // A new identity key: the old one's signed keys are void.
                    c.prepare_cached(
                        "UPDATE devices SET identity_key = ?3, registration_id = NULL,
                             signed_id = NULL, signed_key = NULL, signed_sig = NULL,
                             lr_id = NULL, lr_key = NULL, lr_sig = NULL
                         WHERE name = ?1 AND device_id = ?2",
                    )?
                    .execute(params![name, device_id, key])?;
                    c.prepare_cached("DELETE FROM prekeys WHERE name = ?1 AND device_id = ?2")?
                        .execute(params![name, device_id])?;
                    c.prepare_cached(
                        "DELETE FROM kyber_prekeys WHERE name = ?1 AND device_id = ?2",
                    )?
                    .execute(params![name, device_id])?;
                    Ok(Some(RegisterOutcome::Updated))
                }
            }
        })
        .await
    }

    async fn upload(
        &self,
        name: &str,
        device_id: u32,
        keys: &KeySet,
        max_one_time: u64,
    ) -> StoreResult<UploadOutcome> {
        let (name, keys) = (name.to_owned(), keys.clone());
        self.call(move |c| {
            let old: Option<Vec<u8>> = c
                .prepare_cached(
                    "SELECT identity_key FROM devices WHERE name = ?1 AND device_id = ?2",
                )?
                .query_row(params![name, device_id], |r| r.get(0))
                .optional()?;
            match old {
                None => return Ok(UploadOutcome::NoDevice),
                Some(k) if k != keys.identity_key => return Ok(UploadOutcome::IdentityMismatch),
                Some(_) => {}
            }
            let held = counts(c, &name, device_id)?;
            if held.prekeys + keys.prekeys.len() as u64 > max_one_time
                || held.kyber_prekeys + keys.kyber_prekeys.len() as u64 > max_one_time
            {
                return Ok(UploadOutcome::TooMany);
            }
            let (s, l) = (&keys.signed_prekey, &keys.last_resort);
            c.prepare_cached(
                "UPDATE devices SET registration_id = ?3,
                     signed_id = ?4, signed_key = ?5, signed_sig = ?6,
                     lr_id = ?7, lr_key = ?8, lr_sig = ?9
                 WHERE name = ?1 AND device_id = ?2",
            )?
            .execute(params![
                name,
                device_id,
                keys.registration_id,
                s.id,
                s.public_key,
                s.signature,
                l.id,
                l.public_key,
                l.signature
            ])?;
            {
                let mut ins = c.prepare_cached(
                    "INSERT INTO prekeys (name, device_id, key_id, public_key)
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )?;
                for k in &keys.prekeys {
                    ins.execute(params![name, device_id, k.id, k.public_key])?;
                }
            }
            {
                let mut ins = c.prepare_cached(
                    "INSERT INTO kyber_prekeys (name, device_id, key_id, public_key, signature)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                )?;
                for k in &keys.kyber_prekeys {
                    ins.execute(params![name, device_id, k.id, k.public_key, k.signature])?;
                }
            }
            Ok(UploadOutcome::Stored(counts(c, &name, device_id)?))
        })
        .await
    }

    async fn count(&self, name: &str, device_id: u32) -> StoreResult<Option<KeyCounts>> {
        let name = name.to_owned();
        self.call(move |c| {
            if !c
                .prepare_cached("SELECT 1 FROM devices WHERE name = ?1 AND device_id = ?2")?
                .exists(params![name, device_id])?
            {
                return Ok(None);
            }
            counts(c, &name, device_id).map(Some)
        })
        .await
    }

    async fn claim(
        &self,
        name: &str,
        device_id: u32,
        one_time: bool,
    ) -> StoreResult<Option<Bundle>> {
        let name = name.to_owned();
        self.call(move |c| claim_one(c, &name, device_id, one_time))
            .await
    }

    async fn claim_all(&self, name: &str, one_time: bool) -> StoreResult<Vec<Bundle>> {
        let name = name.to_owned();
        self.call(move |c| {
            let ids: Vec<u32> = c
                .prepare_cached("SELECT device_id FROM devices WHERE name = ?1 ORDER BY device_id")?
                .query_map(params![name], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::new();
            for id in ids {
                if let Some(b) = claim_one(c, &name, id, one_time)? {
                    out.push(b);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn post_message(
        &self,
        name: &str,
        device_id: u32,
        sender_name: &str,
        sender_device: u32,
        body: &[u8],
        now: i64,
        limits: MailboxLimits,
    ) -> StoreResult<PostOutcome> {
        let (name, sender_name, body) = (name.to_owned(), sender_name.to_owned(), body.to_vec());
        self.call(move |c| {
            if !c
                .prepare_cached("SELECT 1 FROM devices WHERE name = ?1 AND device_id = ?2")?
                .exists(params![name, device_id])?
            {
                return Ok(PostOutcome::NoDevice);
            }
            let (n, bytes): (i64, i64) = c
                .prepare_cached(
                    "SELECT count(*), coalesce(sum(length(body)), 0) FROM messages
                     WHERE name = ?1 AND device_id = ?2",
                )?
                .query_row(params![name, device_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            if n.max(0) as u64 + 1 > limits.max_messages
                || bytes.max(0) as u64 + body.len() as u64 > limits.max_bytes
            {
                return Ok(PostOutcome::Full);
            }
            c.prepare_cached(
                "INSERT INTO messages (name, device_id, sender_name, sender_device, body, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                name,
                device_id,
                sender_name,
                sender_device,
                body,
                now
            ])?;
            Ok(PostOutcome::Stored(c.last_insert_rowid()))
        })
        .await
    }

    async fn messages(&self, name: &str, device_id: u32, limit: u32) -> StoreResult<Vec<Message>> {
        let name = name.to_owned();
        self.call(move |c| {
            c.prepare_cached(
                "SELECT id, sender_name, sender_device, body, created FROM messages
                 WHERE name = ?1 AND device_id = ?2 ORDER BY id LIMIT ?3",
            )?
            .query_map(params![name, device_id, limit], |r| {
                Ok(Message {
                    id: r.get(0)?,
                    sender_name: r.get(1)?,
                    sender_device: r.get(2)?,
                    body: r.get(3)?,
                    timestamp: r.get(4)?,
                })
            })?
            .collect()
        })
        .await
    }

    async fn delete_message(&self, name: &str, device_id: u32, id: i64) -> StoreResult<bool> {
        let name = name.to_owned();
        self.call(move |c| {
            let n = c
                .prepare_cached(
                    "DELETE FROM messages WHERE id = ?1 AND name = ?2 AND device_id = ?3",
                )?
                .execute(params![id, name, device_id])?;
            Ok(n == 1)
        })
        .await
    }
}
