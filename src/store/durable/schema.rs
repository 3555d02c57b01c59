//! The durable store's SQLite schema and its migrations.
//!
//! The schema version is SQLite's `user_version`. [`SCHEMA_VERSION`] is the
//! version this library writes; [`MIGRATIONS`] takes a database of every
//! earlier version to it, inside the transaction that opens it. A database
//! of a newer version is refused ([`Error::Storage`]).
//!
//! Every record table has the same shape: `k` (the keyed-hash lookup key),
//! `version` (a random 63-bit number, new with every write, so a change
//! made by any connection is seen) and `value` (the sealed record), plus
//! plain columns some tables need for counting (bound into the sealed
//! value's associated data).
//!
//! Versions:
//! - 1: the record tables and the wrapped store key.
//! - 2: `row_counts`, the number of session rows, kept by triggers on
//!   `sessions`, so that the session cap is checked with one row read
//!   instead of a count of every session (a store may hold
//!   [`MAX_DURABLE_SESSIONS`](crate::store::MAX_DURABLE_SESSIONS)).
//!   The count is a plain number, not sealed: altering it can only make
//!   the cap refuse a new session early or admit it late.

use rusqlite::Connection;

use crate::error::{Error, Result};

/// The schema version this library writes.
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// The statements that create schema version 1 from an empty database.
const SCHEMA_1: &str = "
CREATE TABLE store_key (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    wrapped BLOB NOT NULL
);
CREATE TABLE meta (k BLOB PRIMARY KEY, version INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE sessions (k BLOB PRIMARY KEY, version INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE trust (k BLOB PRIMARY KEY, version INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE signed_prekeys (k BLOB PRIMARY KEY, version INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE prekeys (k BLOB PRIMARY KEY, version INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE kyber_prekeys (
    k BLOB PRIMARY KEY, version INTEGER NOT NULL, value BLOB NOT NULL,
    last_resort INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE base_key_uses (
    k BLOB PRIMARY KEY, version INTEGER NOT NULL, value BLOB NOT NULL,
    kyber_id INTEGER NOT NULL, signed_id INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX base_key_uses_kyber ON base_key_uses (kyber_id);
CREATE INDEX base_key_uses_signed ON base_key_uses (signed_id);
";

/// Version 1 to 2: the session count, taken once from the table, then
/// kept by triggers. (An upsert that updates an existing row fires no
/// insert trigger.)
const MIGRATION_2: &str = "
CREATE TABLE row_counts (tbl TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO row_counts (tbl, n) SELECT 'sessions', COUNT(*) FROM sessions;
CREATE TRIGGER sessions_added AFTER INSERT ON sessions
    BEGIN UPDATE row_counts SET n = n + 1 WHERE tbl = 'sessions'; END;
CREATE TRIGGER sessions_removed AFTER DELETE ON sessions
    BEGIN UPDATE row_counts SET n = n - 1 WHERE tbl = 'sessions'; END;
";

/// Migrations: `MIGRATIONS[i]` takes version `i + 1` to `i + 2`.
const MIGRATIONS: &[&str] = &[MIGRATION_2];

/// The number of session rows (schema 2 on).
pub(crate) const SESSION_COUNT: &str = "SELECT n FROM row_counts WHERE tbl = 'sessions'";

const _: () = assert!(MIGRATIONS.len() as i64 == SCHEMA_VERSION - 1);

pub(crate) fn sql_error(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::StoreBusy,
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
            Error::StoreCorrupt("SQLite reports the database file as corrupt")
        }
        _ => Error::Storage(e.to_string()),
    }
}

/// The database's schema version (0: empty).
pub(crate) fn version(db: &Connection) -> Result<i64> {
    db.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql_error)
}

/// Creates the current schema in an empty database. Runs inside the
/// caller's transaction.
pub(crate) fn create(db: &Connection) -> Result<()> {
    db.execute_batch(SCHEMA_1).map_err(sql_error)?;
    for m in MIGRATIONS {
        db.execute_batch(m).map_err(sql_error)?;
    }
    set_version(db, SCHEMA_VERSION)
}

/// Takes a database of an earlier version to the current one. Runs inside
/// the caller's transaction.
pub(crate) fn migrate(db: &Connection, from: i64) -> Result<()> {
    if from > SCHEMA_VERSION {
        return Err(Error::Storage(format!(
            "the database has schema version {from}, newer than this library's {SCHEMA_VERSION}"
        )));
    }
    if from < 1 {
        return Err(Error::Storage(format!("unknown schema version {from}")));
    }
    for m in &MIGRATIONS[(from - 1) as usize..] {
        db.execute_batch(m).map_err(sql_error)?;
    }
    if from != SCHEMA_VERSION {
        set_version(db, SCHEMA_VERSION)?;
    }
    Ok(())
}

fn set_version(db: &Connection, v: i64) -> Result<()> {
    db.execute_batch(&format!("PRAGMA user_version = {v}"))
        .map_err(sql_error)
}
