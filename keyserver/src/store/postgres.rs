//! The PostgreSQL backend (tokio-postgres with a deadpool pool). Several
//! server processes can share one database: every operation is one
//! transaction, a one-time key is claimed with `DELETE ... WHERE id =
//! (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`, so concurrent claims
//! never take the same row, and nonces live in the database.

use async_trait::async_trait;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Transaction,
};
use tokio_postgres::NoTls;

use super::{
    Bundle, KeyCounts, KeySet, MailboxLimits, Message, OneTimeKey, PostOutcome, RegisterOutcome,
    SignedKey, Store, StoreError, StoreResult, UploadOutcome, MAX_DEVICES_PER_NAME,
};

const SCHEMA: &str = "
SELECT pg_advisory_xact_lock(7405412001);
CREATE TABLE IF NOT EXISTS names (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS devices (
    name TEXT NOT NULL, device_id BIGINT NOT NULL, identity_key BYTEA NOT NULL,
    registration_id BIGINT,
    signed_id BIGINT, signed_key BYTEA, signed_sig BYTEA,
    lr_id BIGINT, lr_key BYTEA, lr_sig BYTEA,
    PRIMARY KEY (name, device_id));
CREATE TABLE IF NOT EXISTS prekeys (
    id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, device_id BIGINT NOT NULL,
    key_id BIGINT NOT NULL, public_key BYTEA NOT NULL,
    UNIQUE (name, device_id, key_id));
CREATE INDEX IF NOT EXISTS prekeys_claim ON prekeys (name, device_id, id);
CREATE TABLE IF NOT EXISTS kyber_prekeys (
    id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, device_id BIGINT NOT NULL,
    key_id BIGINT NOT NULL, public_key BYTEA NOT NULL, signature BYTEA NOT NULL,
    UNIQUE (name, device_id, key_id));
CREATE INDEX IF NOT EXISTS kyber_prekeys_claim ON kyber_prekeys (name, device_id, id);
CREATE TABLE IF NOT EXISTS nonces (
    name TEXT NOT NULL, device_id BIGINT NOT NULL, nonce TEXT NOT NULL,
    expires BIGINT NOT NULL, PRIMARY KEY (name, device_id, nonce));
CREATE INDEX IF NOT EXISTS nonces_expires ON nonces (expires);
CREATE TABLE IF NOT EXISTS messages (
    id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, device_id BIGINT NOT NULL,
    sender_name TEXT NOT NULL, sender_device BIGINT NOT NULL,
    body BYTEA NOT NULL, created BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_recipient ON messages (name, device_id, id);
";

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn u32_of(v: i64) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| StoreError::Backend("stored id out of range".into()))
}

/// The PostgreSQL store.
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects to `url` with up to `pool_size` connections and creates
    /// the tables if needed.
    pub async fn connect(url: &str, pool_size: usize) -> StoreResult<Self> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::BadUrl(format!("{e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .build()
            .map_err(db)?;
        let mut client = pool.get().await.map_err(db)?;
        let tx = client.transaction().await.map_err(db)?;
        tx.batch_execute(SCHEMA).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        drop(client);
        Ok(PgStore { pool })
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(db)
    }
}

async fn claim_one(
    tx: &Transaction<'_>,
    name: &str,
    device_id: u32,
    one_time: bool,
) -> StoreResult<Option<Bundle>> {
    let dev = i64::from(device_id);
    let st = tx
        .prepare_cached(
            "SELECT identity_key, registration_id, signed_id, signed_key, signed_sig,
                    lr_id, lr_key, lr_sig
             FROM devices WHERE name = $1 AND device_id = $2 AND signed_key IS NOT NULL",
        )
        .await
        .map_err(db)?;
    let Some(row) = tx.query_opt(&st, &[&name, &dev]).await.map_err(db)? else {
        return Ok(None);
    };
    let identity_key: Vec<u8> = row.get(0);
    let registration_id = u32_of(row.get(1))?;
    let signed_prekey = SignedKey {
        id: u32_of(row.get(2))?,
        public_key: row.get(3),
        signature: row.get(4),
    };
    let last_resort = SignedKey {
        id: u32_of(row.get(5))?,
        public_key: row.get(6),
        signature: row.get(7),
    };
    let kyber = if !one_time {
        None
    } else {
        let st = tx
            .prepare_cached(
                "DELETE FROM kyber_prekeys WHERE id = (SELECT id FROM kyber_prekeys
                 WHERE name = $1 AND device_id = $2 ORDER BY id LIMIT 1
                 FOR UPDATE SKIP LOCKED)
             RETURNING key_id, public_key, signature",
            )
            .await
            .map_err(db)?;
        tx.query_opt(&st, &[&name, &dev]).await.map_err(db)?
    };
    let mut bundle = Bundle {
        name: name.to_owned(),
        device_id,
        registration_id,
        identity_key,
        signed_prekey,
        prekey: None,
        kyber_prekey: last_resort,
        kyber_last_resort: true,
    };
    // Without a one-time Kyber key (or not claiming): the last-resort one,
    // and no one-time EC key either (none is claimed).
    let Some(k) = kyber else {
        return Ok(Some(bundle));
    };
    bundle.kyber_prekey = SignedKey {
        id: u32_of(k.get(0))?,
        public_key: k.get(1),
        signature: k.get(2),
    };
    bundle.kyber_last_resort = false;
    let st = tx
        .prepare_cached(
            "DELETE FROM prekeys WHERE id = (SELECT id FROM prekeys
                 WHERE name = $1 AND device_id = $2 ORDER BY id LIMIT 1
                 FOR UPDATE SKIP LOCKED)
             RETURNING key_id, public_key",
        )
        .await
        .map_err(db)?;
    if let Some(p) = tx.query_opt(&st, &[&name, &dev]).await.map_err(db)? {
        bundle.prekey = Some(OneTimeKey {
            id: u32_of(p.get(0))?,
            public_key: p.get(1),
        });
    }
    Ok(Some(bundle))
}

async fn counts<C: GenericClient>(c: &C, name: &str, device_id: u32) -> StoreResult<KeyCounts> {
    let dev = i64::from(device_id);
    let st = c
        .prepare_cached(
            "SELECT (SELECT count(*) FROM prekeys WHERE name = $1 AND device_id = $2),
                    (SELECT count(*) FROM kyber_prekeys WHERE name = $1 AND device_id = $2)",
        )
        .await
        .map_err(db)?;
    let row = c.query_one(&st, &[&name, &dev]).await.map_err(db)?;
    let (p, k): (i64, i64) = (row.get(0), row.get(1));
    Ok(KeyCounts {
        prekeys: p.max(0) as u64,
        kyber_prekeys: k.max(0) as u64,
    })
}

#[async_trait]
impl Store for PgStore {
    async fn identity_key(&self, name: &str, device_id: u32) -> StoreResult<Option<Vec<u8>>> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT identity_key FROM devices WHERE name = $1 AND device_id = $2")
            .await
            .map_err(db)?;
        let row = c
            .query_opt(&st, &[&name, &i64::from(device_id)])
            .await
            .map_err(db)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn name_exists(&self, name: &str) -> StoreResult<bool> {
        let c = self.client().await?;
        let st = c
            .prepare_cached("SELECT 1 FROM names WHERE name = $1")
            .await
            .map_err(db)?;
        Ok(c.query_opt(&st, &[&name]).await.map_err(db)?.is_some())
    }

    async fn use_nonce(
        &self,
        name: &str,
        device_id: u32,
        nonce: &str,
        expires: i64,
    ) -> StoreResult<bool> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO nonces (name, device_id, nonce, expires) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(db)?;
        let n = c
            .execute(&st, &[&name, &i64::from(device_id), &nonce, &expires])
            .await
            .map_err(db)?;
        Ok(n == 1)
    }

    async fn prune_nonces(&self, now: i64) -> StoreResult<u64> {
        let c = self.client().await?;
        c.execute("DELETE FROM nonces WHERE expires < $1", &[&now])
            .await
            .map_err(db)
    }

    async fn register_name(
        &self,
        name: &str,
        device_id: u32,
        identity_key: &[u8],
    ) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let n = tx
            .execute(
                "INSERT INTO names (name) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&name],
            )
            .await
            .map_err(db)?;
        if n == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO devices (name, device_id, identity_key) VALUES ($1, $2, $3)",
            &[&name, &i64::from(device_id), &identity_key],
        )
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn put_device(
        &self,
        name: &str,
        device_id: u32,
        identity_key: &[u8],
    ) -> StoreResult<Option<RegisterOutcome>> {
        let dev = i64::from(device_id);
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        // Lock the name: device changes of one name are serialized.
        if tx
            .query_opt("SELECT 1 FROM names WHERE name = $1 FOR UPDATE", &[&name])
            .await
            .map_err(db)?
            .is_none()
        {
            return Ok(None);
        }
        let old = tx
            .query_opt(
                "SELECT identity_key FROM devices WHERE name = $1 AND device_id = $2",
                &[&name, &dev],
            )
            .await
            .map_err(db)?
            .map(|r| r.get::<_, Vec<u8>>(0));
        let outcome = match old {
            None => {
                // The name's row lock (above) serializes this count with
                // other additions.
                let held: i64 = tx
                    .query_one("SELECT count(*) FROM devices WHERE name = $1", &[&name])
                    .await
                    .map_err(db)?
                    .get(0);
                if held.max(0) as u64 >= MAX_DEVICES_PER_NAME {
                    return Ok(Some(RegisterOutcome::TooManyDevices));
                }
                tx.execute(
                    "INSERT INTO devices (name, device_id, identity_key) VALUES ($1, $2, $3)",
                    &[&name, &dev, &identity_key],
                )
                .await
                .map_err(db)?;
                RegisterOutcome::Created
            }
            Some(old) if old == identity_key => RegisterOutcome::Updated,
            Some(_) => {
                tx.execute(
                    "UPDATE devices SET identity_key = $3, registration_id = NULL,
                         signed_id = NULL, signed_key = NULL, signed_sig = NULL,
                         lr_id = NULL, lr_key = NULL, lr_sig = NULL
                     WHERE name = $1 AND device_id = $2",
                    &[&name, &dev, &identity_key],
                )
                .await
                .map_err(db)?;
                tx.execute(
                    "DELETE FROM prekeys WHERE name = $1 AND device_id = $2",
                    &[&name, &dev],
                )
                .await
                .map_err(db)?;
                tx.execute(
                    "DELETE FROM kyber_prekeys WHERE name = $1 AND device_id = $2",
                    &[&name, &dev],
                )
                .await
                .map_err(db)?;
                RegisterOutcome::Updated
            }
        };
        tx.commit().await.map_err(db)?;
        Ok(Some(outcome))
    }

    async fn upload(
        &self,
        name: &str,
        device_id: u32,
        keys: &KeySet,
        max_one_time: u64,
    ) -> StoreResult<UploadOutcome> {
        let dev = i64::from(device_id);
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        // The device row lock serializes uploads of one device.
        let old = tx
            .query_opt(
                "SELECT identity_key FROM devices WHERE name = $1 AND device_id = $2 FOR UPDATE",
                &[&name, &dev],
            )
            .await
            .map_err(db)?
            .map(|r| r.get::<_, Vec<u8>>(0));
        match old {
            None => return Ok(UploadOutcome::NoDevice),
            Some(k) if k != keys.identity_key => return Ok(UploadOutcome::IdentityMismatch),
            Some(_) => {}
        }
        let held = counts(&tx, name, device_id).await?;
        if held.prekeys + keys.prekeys.len() as u64 > max_one_time
            || held.kyber_prekeys + keys.kyber_prekeys.len() as u64 > max_one_time
        {
            return Ok(UploadOutcome::TooMany);
        }
        let (s, l) = (&keys.signed_prekey, &keys.last_resort);
        tx.execute(
            "UPDATE devices SET registration_id = $3,
                 signed_id = $4, signed_key = $5, signed_sig = $6,
                 lr_id = $7, lr_key = $8, lr_sig = $9
             WHERE name = $1 AND device_id = $2",
            &[
                &name,
                &dev,
                &i64::from(keys.registration_id),
                &i64::from(s.id),
                &s.public_key,
                &s.signature,
                &i64::from(l.id),
                &l.public_key,
                &l.signature,
            ],
        )
        .await
        .map_err(db)?;
        let ids: Vec<i64> = keys.prekeys.iter().map(|k| i64::from(k.id)).collect();
        let pubs: Vec<&[u8]> = keys.prekeys.iter().map(|k| &k.public_key[..]).collect();
        tx.execute(
            "INSERT INTO prekeys (name, device_id, key_id, public_key)
             SELECT $1, $2, k, p FROM UNNEST($3::BIGINT[], $4::BYTEA[]) AS t(k, p)
             ON CONFLICT DO NOTHING",
            &[&name, &dev, &ids, &pubs],
        )
        .await
        .map_err(db)?;
        let ids: Vec<i64> = keys.kyber_prekeys.iter().map(|k| i64::from(k.id)).collect();
        let pubs: Vec<&[u8]> = keys
            .kyber_prekeys
            .iter()
            .map(|k| &k.public_key[..])
            .collect();
        let sigs: Vec<&[u8]> = keys
            .kyber_prekeys
            .iter()
            .map(|k| &k.signature[..])
            .collect();
        tx.execute(
            "INSERT INTO kyber_prekeys (name, device_id, key_id, public_key, signature)
             SELECT $1, $2, k, p, s FROM UNNEST($3::BIGINT[], $4::BYTEA[], $5::BYTEA[]) AS t(k, p, s)
             ON CONFLICT DO NOTHING",
            &[&name, &dev, &ids, &pubs, &sigs],
        )
        .await
        .map_err(db)?;
        let now = counts(&tx, name, device_id).await?;
        tx.commit().await.map_err(db)?;
        Ok(UploadOutcome::Stored(now))
    }

    async fn count(&self, name: &str, device_id: u32) -> StoreResult<Option<KeyCounts>> {
        let c = self.client().await?;
        if c.query_opt(
            "SELECT 1 FROM devices WHERE name = $1 AND device_id = $2",
            &[&name, &i64::from(device_id)],
        )
        .await
        .map_err(db)?
        .is_none()
        {
            return Ok(None);
        }
        counts(&c, name, device_id).await.map(Some)
    }

    async fn claim(
        &self,
        name: &str,
        device_id: u32,
        one_time: bool,
    ) -> StoreResult<Option<Bundle>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let b = claim_one(&tx, name, device_id, one_time).await?;
        tx.commit().await.map_err(db)?;
        Ok(b)
    }

    async fn claim_all(&self, name: &str, one_time: bool) -> StoreResult<Vec<Bundle>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        let rows = tx
            .query(
                "SELECT device_id FROM devices WHERE name = $1 ORDER BY device_id",
                &[&name],
            )
            .await
            .map_err(db)?;
        let mut out = Vec::new();
        for r in rows {
            if let Some(b) = claim_one(&tx, name, u32_of(r.get(0))?, one_time).await? {
                out.push(b);
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(out)
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
        let dev = i64::from(device_id);
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        // The recipient's row lock serializes posts to one mailbox, so the
        // bounds hold.
        if tx
            .query_opt(
                "SELECT 1 FROM devices WHERE name = $1 AND device_id = $2 FOR UPDATE",
                &[&name, &dev],
            )
            .await
            .map_err(db)?
            .is_none()
        {
            return Ok(PostOutcome::NoDevice);
        }
        let row = tx
            .query_one(
                "SELECT count(*), coalesce(sum(length(body)), 0)::BIGINT FROM messages
                 WHERE name = $1 AND device_id = $2",
                &[&name, &dev],
            )
            .await
            .map_err(db)?;
        let (n, bytes): (i64, i64) = (row.get(0), row.get(1));
        if n as u64 + 1 > limits.max_messages || bytes as u64 + body.len() as u64 > limits.max_bytes
        {
            return Ok(PostOutcome::Full);
        }
        let row = tx
            .query_one(
                "INSERT INTO messages (name, device_id, sender_name, sender_device, body, created)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &name,
                    &dev,
                    &sender_name,
                    &i64::from(sender_device),
                    &body,
                    &now,
                ],
            )
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(PostOutcome::Stored(row.get(0)))
    }

    async fn messages(&self, name: &str, device_id: u32, limit: u32) -> StoreResult<Vec<Message>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, sender_name, sender_device, body, created FROM messages
                 WHERE name = $1 AND device_id = $2 ORDER BY id LIMIT $3",
                &[&name, &i64::from(device_id), &i64::from(limit)],
            )
            .await
            .map_err(db)?;
        rows.into_iter()
            .map(|r| {
                Ok(Message {
                    id: r.get(0),
                    sender_name: r.get(1),
                    sender_device: u32_of(r.get(2))?,
                    body: r.get(3),
                    timestamp: r.get(4),
                })
            })
            .collect()
    }

    async fn delete_message(&self, name: &str, device_id: u32, id: i64) -> StoreResult<bool> {
        let c = self.client().await?;
        let n = c
            .execute(
                "DELETE FROM messages WHERE id = $1 AND name = $2 AND device_id = $3",
                &[&id, &name, &i64::from(device_id)],
            )
            .await
            .map_err(db)?;
        Ok(n == 1)
    }
}
