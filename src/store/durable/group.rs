//! Group commit: writes at full durability from several threads on one
//! connection share one commit (one `fsync`).
//!
//! A thread that runs a full-durability write takes the connection, joins
//! the write transaction left open by the threads before it (or begins
//! one), and runs its call inside a savepoint: a call that fails rolls
//! back to its savepoint, so it writes nothing and the others' changes
//! stay. Then, if another thread is waiting for the connection, it leaves
//! the transaction open for that thread and waits for the batch's commit
//! without holding the connection; otherwise (or when the batch holds
//! [`MAX_BATCH`] calls) it commits the batch and wakes the threads waiting
//! on it. No call returns before its batch is committed or rolled back
//! (a failed call's error may rest on the other calls' changes); when the
//! commit fails, every call of the batch fails with its error.
//!
//! Every other use of the connection (a call at [`Durability::Normal`],
//! two-phase decrypt, rekey) goes through [`Shared::lock`], which commits
//! an open batch first. With one thread, or one thread per process, a
//! batch is always a single call: nothing changes but the savepoint.
//!
//! [`Durability::Normal`]: super::Durability::Normal

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::schema::sql_error;
use super::{poisoned, Conn, Shared};
use crate::error::{Error, Result};

/// The most calls one commit covers.
pub(super) const MAX_BATCH: usize = 64;

/// The threads of one connection and the batches they share.
#[derive(Default, Debug)]
pub(super) struct Group {
    /// Threads waiting for the connection to run a full-durability write.
    waiting: AtomicUsize,
    state: Mutex<Finished>,
    finished: Condvar,
}

/// The batches finished, as the threads waiting on them learn it.
#[derive(Default, Debug)]
struct Finished {
    /// The id of the last batch finished (committed or rolled back).
    /// Batches finish in the order of their ids: one is open at a time.
    last: u64,
    /// Batches whose commit failed: the error and how many waiting calls
    /// have yet to read it.
    failed: BTreeMap<u64, (Error, usize)>,
}

/// The write transaction several calls share, while it is open.
pub(super) struct Batch {
    id: u64,
    /// Calls that wait for this batch's commit.
    waiting: usize,
    /// Calls that ran in it (the ones that failed included).
    calls: usize,
}

impl Shared {
    /// The connection, with any batch still open committed first.
    pub(super) fn lock(&self) -> Result<MutexGuard<'_, Conn>> {
        let mut conn = self.lock_raw();
        // A failed commit is the batch's calls' error; this caller starts
        // afresh either way.
        let _ = self.finish_batch(&mut conn);
        Ok(conn)
    }

    /// The connection as it is. A panic while it was held rolled back its
    /// transaction (see `unwinding_rolls_back`) and may have left the
    /// cache stale, so the cache is cleared; a transaction still open (a
    /// panic outside one) is rolled back, failing its batch.
    fn lock_raw(&self) -> MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|e| {
            let mut c = poisoned(e);
            if !c.db.is_autocommit() {
                let _ = c.db.execute_batch("ROLLBACK");
            }
            if let Some(batch) = c.batch.take() {
                self.publish(&batch, Some(panicked()));
            }
            c.drop_records();
            c
        })
    }

    /// Runs `f` in a write transaction at full durability, shared with
    /// other threads' calls (see the module docs). `f`'s changes are
    /// committed when this returns `Ok`; when it fails, nothing of its is
    /// written.
    pub(super) fn write_full<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        self.group.waiting.fetch_add(1, Ordering::SeqCst);
        let mut conn = self.lock_raw();
        self.group.waiting.fetch_sub(1, Ordering::SeqCst);
        if conn.batch.is_none() {
            conn.set_sync(true)?;
            conn.execute_cached("BEGIN IMMEDIATE").map_err(sql_error)?;
            conn.next_batch += 1;
            conn.batch = Some(Batch {
                id: conn.next_batch,
                waiting: 0,
                calls: 0,
            });
        }
        if let Some(b) = conn.batch.as_mut() {
            b.calls += 1;
        }
        let result = self.in_savepoint(&mut conn, f);
        let Some(batch) = conn.batch.as_mut() else {
            // The savepoint could not be undone: the whole batch was
            // rolled back (and its calls told).
            return result;
        };
        // A call that failed waits for the batch too, and fails with the
        // batch's error when it fails: its own error may come from changes
        // of the batch's other calls that are then undone (a replay refused
        // against a decrypt that is rolled back), and is final only once
        // they are committed.
        let others_waiting = self.group.waiting.load(Ordering::SeqCst) > 0;
        if !others_waiting || batch.calls >= MAX_BATCH {
            let committed = self.finish_batch(&mut conn);
            return committed.and(result);
        }
        // Left open for the next thread, which commits it or passes it on.
        batch.waiting += 1;
        let id = batch.id;
        drop(conn);
        let mut state = self.group.state.lock().unwrap_or_else(poisoned);
        while state.last < id {
            state = self.group.finished.wait(state).unwrap_or_else(poisoned);
        }
        match state.failed.get_mut(&id) {
            None => result,
            Some((e, left)) => {
                let e = e.clone();
                *left -= 1;
                if *left == 0 {
                    state.failed.remove(&id);
                }
                Err(e)
            }
        }
    }

    /// Runs `f` inside a savepoint of the open batch: released when `f`
    /// succeeds, rolled back to when it fails. If the savepoint itself
    /// fails, or `f` panics, the whole batch is rolled back and its calls
    /// fail.
    fn in_savepoint<T>(
        &self,
        conn: &mut Conn,
        f: impl FnOnce(&mut Conn) -> Result<T>,
    ) -> Result<T> {
        if let Err(e) = conn.db.execute_batch("SAVEPOINT rk_call") {
            let e = sql_error(e);
            self.abandon_batch(conn, e.clone());
            return Err(e);
        }
        let out = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn))) {
            Ok(out) => out,
            Err(panic) => {
                self.abandon_batch(conn, panicked());
                std::panic::resume_unwind(panic)
            }
        };
        let undo = match &out {
            Ok(_) => conn.db.execute_batch("RELEASE rk_call"),
            Err(_) => conn
                .db
                .execute_batch("ROLLBACK TO rk_call; RELEASE rk_call"),
        };
        if let Err(e) = undo {
            let e = sql_error(e);
            self.abandon_batch(conn, e.clone());
            return Err(e);
        }
        out
    }

    /// Commits the open batch, if any, and tells its waiting calls.
    fn finish_batch(&self, conn: &mut Conn) -> Result<()> {
        let Some(batch) = conn.batch.take() else {
            return Ok(());
        };
        match conn.execute_cached("COMMIT") {
            Ok(()) => {
                self.publish(&batch, None);
                Ok(())
            }
            Err(e) => {
                let e = sql_error(e);
                conn.batch = Some(batch);
                self.abandon_batch(conn, e.clone());
                Err(e)
            }
        }
    }

    /// Rolls the open batch back (its calls fail with `e`) and clears the
    /// cache, which may hold what the batch wrote.
    fn abandon_batch(&self, conn: &mut Conn, e: Error) {
        let _ = conn.db.execute_batch("ROLLBACK");
        conn.drop_records();
        if let Some(batch) = conn.batch.take() {
            self.publish(&batch, Some(e));
        }
    }

    /// Marks `batch` finished, failed with `error` if any, and wakes the
    /// threads waiting on it.
    fn publish(&self, batch: &Batch, error: Option<Error>) {
        let mut state = self.group.state.lock().unwrap_or_else(poisoned);
        state.last = batch.id;
        if let Some(e) = error {
            if batch.waiting > 0 {
                state.failed.insert(batch.id, (e, batch.waiting));
            }
        }
        self.group.finished.notify_all();
    }
}

fn panicked() -> Error {
    Error::Storage("a call sharing this commit panicked: nothing of the batch was written".into())
}
