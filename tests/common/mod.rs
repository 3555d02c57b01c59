//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use rand::rngs::OsRng;
use rand::RngCore;
use ratchetkit::spqr::SpqrPolicy;
use ratchetkit::store::{BundleRequest, KyberPreKeyKind, SessionPolicy};
use ratchetkit::{Address, CiphertextMessage, PreKeyBundle, ProtocolStore};

/// A local user for tests: a store and the address others use for it.
pub struct Party {
    pub store: ProtocolStore,
    pub addr: Address,
}

impl Party {
    pub fn new(name: &str) -> Self {
        Party {
            store: ProtocolStore::generate(1, &mut OsRng).unwrap(),
            addr: Address::new(name, 1),
        }
    }

    /// A party whose new sessions do not speak SPQR: for tests of the
    /// Double Ratchet's own limits and checks, which forge messages without
    /// SPQR's fields (SPQR's limits are tested in the SPQR tests).
    pub fn without_spqr(name: &str) -> Self {
        let mut p = Party::new(name);
        p.store.set_spqr_policy(SpqrPolicy::Off);
        p
    }

    pub fn send(&mut self, to: &Party, plaintext: &[u8]) -> CiphertextMessage {
        self.store.encrypt(&to.addr, plaintext).unwrap()
    }

    pub fn recv(&mut self, from: &Party, m: &CiphertextMessage) -> ratchetkit::Result<Vec<u8>> {
        self.store
            .decrypt(&from.addr, m.message_type(), m.serialize(), &mut OsRng)
    }
}

/// Alice processes Bob's bundle (with a one-time prekey): a session is
/// started, nothing is sent yet. Returns the bundle too.
pub fn initiated_pair() -> (Party, Party, PreKeyBundle) {
    initiated_pair_of(Party::new("alice"), Party::new("bob"))
}

/// [`initiated_pair`] without SPQR (see [`Party::without_spqr`]).
pub fn dr_initiated_pair() -> (Party, Party, PreKeyBundle) {
    initiated_pair_of(Party::without_spqr("alice"), Party::without_spqr("bob"))
}

fn initiated_pair_of(mut alice: Party, mut bob: Party) -> (Party, Party, PreKeyBundle) {
    let bundle = bob.store.create_bundle(true, 0, &mut OsRng).unwrap();
    alice
        .store
        .process_bundle(&bob.addr, &bundle, &mut OsRng)
        .unwrap();
    (alice, bob, bundle)
}

/// Alice processes a bundle Bob makes with a one-time EC prekey or not and
/// the Kyber prekey `kyber` (`KyberPreKeyKind::None`: a version-3 session).
/// With `allow_v3`, both stores' policies allow version 3 both ways.
pub fn pair_with(one_time_prekey: bool, kyber: KyberPreKeyKind, allow_v3: bool) -> (Party, Party) {
    let mut alice = Party::new("alice");
    let mut bob = Party::new("bob");
    if allow_v3 {
        let policy = SessionPolicy {
            allow_v3_initiation: true,
            accept_v3_prekey_messages: true,
        };
        alice.store.set_policy(policy);
        bob.store.set_policy(policy);
    }
    let request = BundleRequest {
        one_time_prekey,
        kyber,
        timestamp: 0,
    };
    let bundle = bob.store.create_bundle_with(request, &mut OsRng).unwrap();
    alice
        .store
        .process_bundle(&bob.addr, &bundle, &mut OsRng)
        .unwrap();
    (alice, bob)
}

/// Alice processes Bob's bundle and they exchange one message each way.
pub fn established_pair() -> (Party, Party) {
    established(initiated_pair())
}

/// [`established_pair`] without SPQR (see [`Party::without_spqr`]).
pub fn dr_established_pair() -> (Party, Party) {
    established(dr_initiated_pair())
}

fn established((mut alice, mut bob, _): (Party, Party, PreKeyBundle)) -> (Party, Party) {
    let m = alice.send(&bob, b"hello");
    assert_eq!(bob.recv(&alice, &m).unwrap(), b"hello");
    let r = bob.send(&alice, b"hi");
    assert_eq!(alice.recv(&bob, &r).unwrap(), b"hi");
    (alice, bob)
}

/// Asserts that `f` fails and leaves the saved bytes of `store` unchanged.
pub fn assert_fails_unchanged<T: std::fmt::Debug>(
    store: &mut ProtocolStore,
    f: impl FnOnce(&mut ProtocolStore) -> ratchetkit::Result<T>,
) -> ratchetkit::Error {
    let before = store.save();
    let err = f(store).expect_err("operation should fail");
    assert_eq!(
        store.save(),
        before,
        "failed operation ({err}) changed the store"
    );
    err
}

/// A fresh database path in the system's temp folder
/// (`<prefix>-<random>.sqlite`), removed with its WAL and shared-memory
/// files on drop.
pub struct TempDb(pub PathBuf);

impl TempDb {
    pub fn new(prefix: &str) -> Self {
        let mut n = [0u8; 8];
        OsRng.fill_bytes(&mut n);
        TempDb(std::env::temp_dir().join(format!("{prefix}-{}.sqlite", hex::encode(n))))
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}
