//! Benchmarks of every protocol path and of the primitives each one needs
//! (the "floor"). `make bench` runs them and writes BENCHMARKS.md with each
//! operation's time, its floor and the ratio (benches/report.py).
//!
//! Ids: `op/<operation>` for protocol paths (and forged messages),
//! `floor/<primitive>` for primitives. The report's table says which
//! primitives make each floor.
//!
//! Session versions are explicit: `x3dh_*` rows and the per-message rows
//! without a suffix run version-3 sessions (bundles without a Kyber prekey,
//! both stores allowing version 3); `pqxdh_*` rows and the `*_v4` rows run
//! version-4 (PQXDH) sessions. The other rows use the default bundles
//! (version 4), as an application does.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode,
};
use curve25519_dalek::montgomery::MontgomeryPoint;
use hmac::{Hmac, Mac};
use libcrux_ml_kem::kyber1024;
use rand::rngs::OsRng;
use rand::RngCore;
use ratchetkit::kem::KemKeyPair;
use ratchetkit::ratchet::MAX_FORWARD_JUMPS;
use ratchetkit::spqr::SpqrPolicy;
use ratchetkit::store::{BundleRequest, KyberPreKeyKind, SessionPolicy};
use ratchetkit::{
    Address, CiphertextMessage, Fingerprint, IdentityKeyPair, KeyPair, PreKeyBundle,
    PreKeySignalMessage, ProtocolStore, MAX_ARCHIVED_STATES,
};
use sha2::{Digest, Sha256, Sha512};

#[path = "../tests/forge/mod.rs"]
mod forge;

const SIZES: [(usize, &str); 3] = [(100, "100B"), (1024, "1KiB"), (65536, "64KiB")];

/// The session version a benchmark runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    /// X3DH sessions (message version 3).
    V3,
    /// PQXDH sessions (message version 4).
    V4,
}

impl Version {
    fn number(self) -> u8 {
        match self {
            Version::V3 => 3,
            Version::V4 => 4,
        }
    }
}

/// A new store. For version 3 it starts and accepts version-3 sessions,
/// which the default policy refuses. Version 4 is without SPQR (the rows
/// with SPQR make their stores with [`spqr_store`]).
fn new_store(version: Version) -> ProtocolStore {
    let mut store = ProtocolStore::generate(1, &mut OsRng).unwrap();
    store.set_spqr_policy(SpqrPolicy::Off);
    if version == Version::V3 {
        store.set_policy(SessionPolicy {
            allow_v3_initiation: true,
            accept_v3_prekey_messages: true,
        });
    }
    store
}

/// A bundle of `store`'s. Version 3: no Kyber prekey. Version 4: as
/// `create_bundle` makes them, a one-time Kyber prekey beside a one-time EC
/// prekey, the last-resort Kyber prekey otherwise.
fn bundle(store: &mut ProtocolStore, version: Version, one_time_prekey: bool) -> PreKeyBundle {
    let kyber = match (version, one_time_prekey) {
        (Version::V3, _) => KyberPreKeyKind::None,
        (Version::V4, true) => KyberPreKeyKind::OneTime,
        (Version::V4, false) => KyberPreKeyKind::LastResort,
    };
    let request = BundleRequest {
        one_time_prekey,
        kyber,
        timestamp: 0,
    };
    store.create_bundle_with(request, &mut OsRng).unwrap()
}

/// The version of `store`'s current session with `address`.
fn session_version(store: &ProtocolStore, address: &Address) -> u8 {
    store.session(address).unwrap().current().unwrap().version()
}

/// Alice and Bob with a session of `version` in which both have spoken
/// (so messages are whisper messages, without a DH turn pending).
fn alice_bob(version: Version) -> (ProtocolStore, ProtocolStore, Address, Address) {
    let mut alice = new_store(version);
    let mut bob = new_store(version);
    let (a, b) = (Address::new("alice", 1), Address::new("bob", 1));
    let bundle = bundle(&mut bob, version, true);
    alice.process_bundle(&b, &bundle, &mut OsRng).unwrap();
    let m = alice.encrypt(&b, b"hi").unwrap();
    bob.decrypt(&a, m.message_type(), m.serialize(), &mut OsRng)
        .unwrap();
    let r = bob.encrypt(&a, b"hi").unwrap();
    alice
        .decrypt(&b, r.message_type(), r.serialize(), &mut OsRng)
        .unwrap();
    assert_eq!(session_version(&alice, &b), version.number());
    assert_eq!(session_version(&bob, &a), version.number());
    (alice, bob, a, b)
}

fn deliver(to: &mut ProtocolStore, from: &Address, m: &CiphertextMessage) -> Vec<u8> {
    to.decrypt(from, m.message_type(), m.serialize(), &mut OsRng)
        .unwrap()
}

/// Times `routine` only: `setup` runs untimed before each call and the
/// routine's output (e.g. the store it worked on) is dropped after the clock
/// stops. For routines of tens of microseconds and more; per-message
/// routines use `iter_batched`, which also keeps the clock reads out.
fn timed<S, T>(
    iters: u64,
    mut setup: impl FnMut() -> S,
    mut routine: impl FnMut(S) -> T,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let input = setup();
        let start = Instant::now();
        let output = black_box(routine(input));
        total += start.elapsed();
        drop(output);
    }
    total
}

fn keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("op");
    g.bench_function("identity_generate", |b| {
        b.iter(|| IdentityKeyPair::generate(&mut OsRng))
    });
    let store = ProtocolStore::generate(1, &mut OsRng).unwrap();
    g.bench_function("prekey_generate", |b| {
        b.iter_custom(|n| {
            timed(
                n,
                || store.clone(),
                |mut s| {
                    s.generate_prekeys(1, &mut OsRng).unwrap();
                    s
                },
            )
        })
    });
    g.bench_function("signed_prekey_generate", |b| {
        b.iter_custom(|n| {
            timed(
                n,
                || store.clone(),
                |mut s| {
                    s.generate_signed_prekey(0, &mut OsRng).unwrap();
                    s
                },
            )
        })
    });
    g.bench_function("kyber_prekey_generate", |b| {
        b.iter_custom(|n| {
            timed(
                n,
                || store.clone(),
                |mut s| {
                    s.generate_kyber_prekeys(1, 0, &mut OsRng).unwrap();
                    s
                },
            )
        })
    });
    g.finish();
}

/// X3DH (version 3) and PQXDH (version 4) side by side: the initiator
/// (processing a bundle), the responder (decrypting the first prekey
/// message, 100 B, on a fresh copy of Bob's store) and the full setup (from
/// processing the bundle to Bob's decrypting Alice's first message, on fresh
/// copies of both stores). Every run starts from the same stores and the
/// same bundle; copies, bundles and the initiator's work for a responder
/// run are made outside the clock, and the stores a run used are dropped
/// after it.
fn agreement(c: &mut Criterion) {
    let mut g = c.benchmark_group("op");
    let (alice_addr, bob_addr) = (Address::new("alice", 1), Address::new("bob", 1));
    for (version, protocol) in [(Version::V3, "x3dh"), (Version::V4, "pqxdh")] {
        for (opk, name) in [(true, "with_opk"), (false, "without_opk")] {
            let alice = new_store(version);
            let mut bob = new_store(version);
            let bundle = bundle(&mut bob, version, opk);
            let first_message = || {
                let mut a = alice.clone();
                a.process_bundle(&bob_addr, &bundle, &mut OsRng).unwrap();
                a.encrypt(&bob_addr, &[0x55; 100]).unwrap()
            };
            // The session and the message are of the version named.
            let m = first_message();
            assert_eq!(m.serialize()[0] >> 4, version.number());
            assert_eq!(
                PreKeySignalMessage::deserialize(m.serialize())
                    .unwrap()
                    .pre_key_id()
                    .is_some(),
                opk
            );
            let mut b = bob.clone();
            deliver(&mut b, &alice_addr, &m);
            assert_eq!(session_version(&b, &alice_addr), version.number());
            g.bench_function(format!("{protocol}_initiator_{name}"), |b| {
                b.iter_custom(|n| {
                    timed(
                        n,
                        || alice.clone(),
                        |mut a| {
                            a.process_bundle(&bob_addr, &bundle, &mut OsRng).unwrap();
                            a
                        },
                    )
                })
            });
            g.bench_function(format!("{protocol}_responder_{name}"), |b| {
                b.iter_custom(|n| {
                    timed(
                        n,
                        || (bob.clone(), first_message()),
                        |(mut bob, m)| (deliver(&mut bob, &alice_addr, &m), bob),
                    )
                })
            });
        }
        // Full setup, with a one-time prekey.
        let alice = new_store(version);
        let mut bob = new_store(version);
        let bundle = bundle(&mut bob, version, true);
        g.bench_function(format!("{protocol}_full_setup"), |b| {
            b.iter_custom(|n| {
                timed(
                    n,
                    || (alice.clone(), bob.clone()),
                    |(mut alice, mut bob)| {
                        alice
                            .process_bundle(&bob_addr, &bundle, &mut OsRng)
                            .unwrap();
                        let m = alice.encrypt(&bob_addr, &[0x55; 100]).unwrap();
                        let pt = deliver(&mut bob, &alice_addr, &m);
                        (pt, m, alice, bob)
                    },
                )
            })
        });
    }
    g.finish();
}

/// The per-message paths, version 3 (ids without a suffix) and version 4
/// (`_v4`, 100 B and 1 KiB) measured one after the other.
fn messages(c: &mut Criterion) {
    let mut g = c.benchmark_group("op");
    for (size, label) in SIZES {
        let pt = vec![0x42u8; size];
        let versions: &[(Version, &str)] = if size <= 1024 {
            &[(Version::V3, ""), (Version::V4, "_v4")]
        } else {
            &[(Version::V3, "")]
        };
        for &(version, suffix) in versions {
            let (alice, _, _, b) = alice_bob(version);
            g.bench_function(
                BenchmarkId::new(format!("encrypt{suffix}"), label),
                |bench| bench.iter(|| alice.encrypt(&b, &pt).unwrap()),
            );
        }
        for &(version, suffix) in versions {
            // A fresh pair: the encrypt bench left Bob far behind Alice's chain.
            let (alice, mut bob, a, b) = alice_bob(version);
            // Messages are made in batches outside the timed part and
            // decrypted in order; the plaintext is freed inside the timed
            // part (as the AES-CBC floor frees its output), the input message
            // after it.
            g.bench_function(
                BenchmarkId::new(format!("decrypt{suffix}"), label),
                |bench| {
                    bench.iter_batched(
                        || alice.encrypt(&b, &pt).unwrap(),
                        |m| {
                            drop(deliver(&mut bob, &a, &m));
                            m
                        },
                        BatchSize::SmallInput,
                    )
                },
            );
        }
        // A DH turn on every message: the two sides strictly alternate, so
        // every decrypt meets a new ratchet key. Version 4 at 100 B only.
        for &(version, suffix) in versions {
            if version == Version::V4 && size != 100 {
                continue;
            }
            let (mut alice, mut bob, a, b) = alice_bob(version);
            let mut last = bob.encrypt(&a, &pt).unwrap();
            let id = BenchmarkId::new(format!("decrypt_dh_turn{suffix}"), label);
            g.bench_function(id, |bench| {
                bench.iter_custom(|n| {
                    let mut total = Duration::ZERO;
                    for _ in 0..n {
                        deliver(&mut alice, &b, &last);
                        let m = alice.encrypt(&b, &pt).unwrap();
                        let start = Instant::now();
                        black_box(deliver(&mut bob, &a, &m));
                        total += start.elapsed();
                        last = bob.encrypt(&a, &pt).unwrap();
                    }
                    total
                })
            });
        }
    }
    // The binding-overhead baseline: Alice encrypts 100 B, Bob decrypts it
    // (no DH turn), exactly what benches/c_roundtrip.c and
    // benches/python_roundtrip.py do through the C ABI and Python, whose
    // default bundles and policy make version-4 sessions with SPQR.
    let (alice_rt, mut bob_rt, a_rt, b_rt) = spqr_alice_bob(SpqrPolicy::Required);
    let pt100 = [0x42u8; 100];
    g.bench_function("roundtrip_100B", |bench| {
        bench.iter(|| {
            let m = alice_rt.encrypt(&b_rt, &pt100).unwrap();
            deliver(&mut bob_rt, &a_rt, &m)
        })
    });
    // Decrypting a message 1,000 ahead in a known chain: 1,000 skipped keys
    // derived and kept.
    let (alice, mut bob, a, b) = alice_bob(Version::V3);
    let first = alice.encrypt(&b, &[1u8; 100]).unwrap();
    deliver(&mut bob, &a, &first);
    let ahead = (0..1001)
        .map(|_| alice.encrypt(&b, &[1u8; 100]).unwrap())
        .last()
        .unwrap();
    g.bench_function("decrypt_skip_1000", |bench| {
        bench.iter_custom(|n| {
            timed(
                n,
                || bob.clone(),
                |mut bob| (deliver(&mut bob, &a, &ahead), bob),
            )
        })
    });
    g.finish();
}

/// Forged messages against the most expensive honest one (issue 14, item
/// 2), in the same run. Bob holds Alice's current state and 40 archived
/// ones (Alice started 41 sessions). Honest worst case: Alice turns the
/// ratchet and Bob gets only the 25,000th message of her new chain (a key
/// agreement and a walk of 24,999 steps). Forged (any field is free, the
/// MAC cannot be right): a whisper message of 84 bytes on a new ratchet key
/// with counter 24,999, the most work a short forged whisper message can
/// cause (the current state, then one archived state within the budget;
/// tests/forged_message_cost.rs tries other counters and 1 MiB bodies); a
/// prekey message with a new base key naming Bob's signed prekey, its inner
/// message likewise. Each run decrypts on a fresh copy of Bob's store, the
/// copy made outside the clock.
fn forged(c: &mut Criterion) {
    let mut g = c.benchmark_group("op");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let mut bob = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let (a, b) = (Address::new("alice", 1), Address::new("bob", 1));
    let mut first = None;
    for _ in 0..=MAX_ARCHIVED_STATES {
        let bundle = bob.create_bundle(false, 0, &mut OsRng).unwrap();
        alice.process_bundle(&b, &bundle, &mut OsRng).unwrap();
        let m = alice.encrypt(&b, b"hello").unwrap();
        deliver(&mut bob, &a, &m);
        first.get_or_insert_with(|| PreKeySignalMessage::deserialize(m.serialize()).unwrap());
    }
    let first = first.unwrap();
    assert_eq!(
        bob.session(&a).unwrap().previous_count(),
        MAX_ARCHIVED_STATES
    );
    let r = bob.encrypt(&a, b"hi").unwrap();
    deliver(&mut alice, &b, &r);
    let honest = (0..MAX_FORWARD_JUMPS)
        .map(|_| alice.encrypt(&b, &[0x48; 32]).unwrap())
        .last()
        .unwrap();
    let fresh = || KeyPair::generate(&mut OsRng).public_key;
    let inner = || forge::signal_message(&fresh(), MAX_FORWARD_JUMPS - 1, 0, &[0x5a; 32], [7; 8]);
    let whisper = inner();
    let prekey = forge::prekey_message(
        first.kyber(),
        first.registration_id(),
        None,
        first.signed_pre_key_id(),
        &fresh(),
        first.identity_key(),
        &inner(),
    );
    let cases: [(&str, u8, &[u8]); 3] = [
        ("decrypt_worst_honest", 2, honest.serialize()),
        ("decrypt_worst_forged_whisper", 2, &whisper),
        ("decrypt_worst_forged_prekey", 3, &prekey),
    ];
    for (name, message_type, bytes) in cases {
        let honest = name == "decrypt_worst_honest";
        g.bench_function(name, |bench| {
            bench.iter_custom(|n| {
                timed(
                    n,
                    || bob.clone(),
                    |mut bob| {
                        let result = bob.decrypt(&a, message_type, bytes, &mut OsRng);
                        assert_eq!(result.is_ok(), honest);
                        (result, bob)
                    },
                )
            })
        });
    }
    g.finish();
}

fn persistence(c: &mut Criterion) {
    let mut g = c.benchmark_group("op");
    let mut store = ProtocolStore::generate(1, &mut OsRng).unwrap();
    for i in 0..100 {
        let mut peer = ProtocolStore::generate(1, &mut OsRng).unwrap();
        let bundle = peer.create_bundle(true, 0, &mut OsRng).unwrap();
        store
            .process_bundle(&Address::new(format!("peer{i}"), 1), &bundle, &mut OsRng)
            .unwrap();
    }
    let saved = store.save();
    g.bench_function("save_100_sessions", |b| b.iter(|| store.save()));
    g.bench_function("restore_100_sessions", |b| {
        b.iter(|| ProtocolStore::restore(&saved).unwrap())
    });
    let (alice, bob, ..) = alice_bob(Version::V4);
    g.bench_function("safety_number", |b| {
        b.iter(|| {
            Fingerprint::new(
                2,
                5200,
                b"alice",
                alice.identity_key(),
                b"bob",
                bob.identity_key(),
            )
            .unwrap()
        })
    });
    g.finish();
}

/// One store (Alice) shared by reference between threads. Each "lane" has
/// two peers: one that only sends to Alice and one that only receives from
/// her, so no message causes a DH turn and the per-message path (and its
/// locking) dominates. A round = the peer encrypts 100 B, Alice decrypts,
/// Alice encrypts 100 B to the other peer, that peer decrypts. The same
/// number of rounds runs on one thread alternating two lanes, and on two
/// threads with one lane each.
fn threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("op");
    let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let alice_addr = Address::new("alice", 1);
    let mut connect = |name: String| {
        let mut peer = ProtocolStore::generate(1, &mut OsRng).unwrap();
        let addr = Address::new(name, 1);
        let bundle = peer.create_bundle(true, 0, &mut OsRng).unwrap();
        alice.process_bundle(&addr, &bundle, &mut OsRng).unwrap();
        let m = alice.encrypt(&addr, b"hi").unwrap();
        deliver(&mut peer, &alice_addr, &m);
        let r = peer.encrypt(&alice_addr, b"hi").unwrap();
        deliver(&mut alice, &addr, &r);
        (peer, addr)
    };
    let lanes: Vec<_> = (0..2)
        .map(|i| (connect(format!("in{i}")), connect(format!("out{i}"))))
        .collect();
    type Lane = ((ProtocolStore, Address), (ProtocolStore, Address));
    let round = |alice: &ProtocolStore, lane: &Lane| {
        let ((sender, from), (receiver, to)) = lane;
        let m = sender.encrypt(&alice_addr, &[7u8; 100]).unwrap();
        let pt = alice
            .decrypt_message(from, m.serialize(), &mut OsRng)
            .unwrap();
        let r = alice.encrypt(to, &pt).unwrap();
        receiver
            .decrypt_message(&alice_addr, r.serialize(), &mut OsRng)
            .unwrap()
    };
    let alice = &alice;
    let lanes = &lanes;
    g.bench_function("two_sessions_1_thread", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            for i in 0..n {
                black_box(round(alice, &lanes[(i % 2) as usize]));
            }
            start.elapsed()
        })
    });
    g.bench_function("two_sessions_2_threads", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for (t, lane) in lanes.iter().enumerate() {
                    let count = n / 2 + if t == 0 { n % 2 } else { 0 };
                    scope.spawn(move || {
                        for _ in 0..count {
                            black_box(round(alice, lane));
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.finish();
}

type HmacSha256 = Hmac<Sha256>;

/// Alice and Bob with a version-4 session under `policy` (both sides), in
/// which both have spoken.
fn spqr_alice_bob(policy: SpqrPolicy) -> (ProtocolStore, ProtocolStore, Address, Address) {
    let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let mut bob = ProtocolStore::generate(1, &mut OsRng).unwrap();
    alice.set_spqr_policy(policy);
    bob.set_spqr_policy(policy);
    let (a, b) = (Address::new("alice", 1), Address::new("bob", 1));
    let bundle = bundle(&mut bob, Version::V4, true);
    alice.process_bundle(&b, &bundle, &mut OsRng).unwrap();
    let m = alice.encrypt(&b, b"hi").unwrap();
    deliver(&mut bob, &a, &m);
    let r = bob.encrypt(&a, b"hi").unwrap();
    deliver(&mut alice, &b, &r);
    let spqr = policy != SpqrPolicy::Off;
    assert_eq!(alice.session_has_spqr(&b), Some(spqr));
    (alice, bob, a, b)
}

/// The braid state of `store`'s session with `address` (None without SPQR).
fn braid_state(store: &ProtocolStore, address: &Address) -> Option<&'static str> {
    store
        .session(address)
        .unwrap()
        .current()
        .unwrap()
        .spqr()
        .snapshot()
        .state
}

/// SPQR (issue 13), 100 B messages:
/// - `encrypt_spqr` / `decrypt_spqr`: a message that carries no ML-KEM
///   operation (one direction in steady state: the sender repeats its
///   chunks, the braid waits for the other side), beside `encrypt_v4` /
///   `decrypt_v4` (version 4 without SPQR);
/// - `conversation_v4` / `conversation_spqr`: per message (encrypt and
///   decrypt) of a conversation in bursts of 4 each way, so that SPQR's
///   epochs run: its ML-KEM-768 operations are amortised over the messages;
/// - `spqr_epoch_message`: encrypt and decrypt of only the messages on
///   which the braid changes state (every ML-KEM operation is on one).
fn spqr(c: &mut Criterion) {
    let mut g = c.benchmark_group("op");
    let pt = [0x42u8; 100];
    {
        let (alice, _, _, b) = spqr_alice_bob(SpqrPolicy::Required);
        for _ in 0..50 {
            alice.encrypt(&b, &pt).unwrap(); // past the first chunks' work
        }
        g.bench_function(BenchmarkId::new("encrypt_spqr", "100B"), |bench| {
            bench.iter(|| alice.encrypt(&b, &pt).unwrap())
        });
    }
    {
        let (alice, mut bob, a, b) = spqr_alice_bob(SpqrPolicy::Required);
        for _ in 0..50 {
            let m = alice.encrypt(&b, &pt).unwrap();
            deliver(&mut bob, &a, &m);
        }
        g.bench_function(BenchmarkId::new("decrypt_spqr", "100B"), |bench| {
            bench.iter_batched(
                || alice.encrypt(&b, &pt).unwrap(),
                |m| {
                    drop(deliver(&mut bob, &a, &m));
                    m
                },
                BatchSize::SmallInput,
            )
        });
    }
    for (policy, name) in [
        (SpqrPolicy::Off, "conversation_v4"),
        (SpqrPolicy::Required, "conversation_spqr"),
    ] {
        let (mut alice, mut bob, a, b) = spqr_alice_bob(policy);
        let mut turn = 0u64;
        g.bench_function(BenchmarkId::new(name, "100B"), |bench| {
            bench.iter_custom(|n| {
                let start = Instant::now();
                for _ in 0..n {
                    let (from, to, to_addr, from_addr) = if (turn / 4).is_multiple_of(2) {
                        (&mut alice, &mut bob, &b, &a)
                    } else {
                        (&mut bob, &mut alice, &a, &b)
                    };
                    let m = from.encrypt(to_addr, &pt).unwrap();
                    black_box(deliver(to, from_addr, &m));
                    turn += 1;
                }
                start.elapsed()
            })
        });
    }
    {
        let (mut alice, mut bob, a, b) = spqr_alice_bob(SpqrPolicy::Required);
        let mut turn = 0u64;
        g.bench_function(BenchmarkId::new("spqr_epoch_message", "100B"), |bench| {
            bench.iter_custom(|n| {
                let mut total = Duration::ZERO;
                let mut found = 0;
                while found < n {
                    let (from, to, to_addr, from_addr) = if (turn / 4).is_multiple_of(2) {
                        (&mut alice, &mut bob, &b, &a)
                    } else {
                        (&mut bob, &mut alice, &a, &b)
                    };
                    turn += 1;
                    let (s0, r0) = (braid_state(from, to_addr), braid_state(to, from_addr));
                    let start = Instant::now();
                    let m = from.encrypt(to_addr, &pt).unwrap();
                    black_box(deliver(to, from_addr, &m));
                    let t = start.elapsed();
                    if braid_state(from, to_addr) != s0 || braid_state(to, from_addr) != r0 {
                        total += t;
                        found += 1;
                    }
                }
                total
            })
        });
    }
    g.finish();
}

fn floor(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor");
    let kp = KeyPair::generate(&mut OsRng);
    let other = KeyPair::generate(&mut OsRng).public_key;
    g.bench_function("x25519", |b| {
        b.iter(|| kp.private_key.agree(black_box(&other)).unwrap())
    });
    // The portable Montgomery ladder (x25519-dalek), the X25519 the official
    // library uses: it calibrates this machine against the reference figures.
    let (k, u) = (kp.private_key.serialize(), *other.u_coordinate());
    g.bench_function("x25519_portable_ladder", |b| {
        b.iter(|| x25519_dalek::x25519(*k, black_box(u)))
    });
    g.bench_function("keygen", |b| b.iter(|| KeyPair::generate(&mut OsRng)));
    // Whether a Curve25519 public key is in the prime-order subgroup (to
    // Edwards form, then a scalar multiplication by the group order), with
    // curve25519-dalek: the check a responder may run on a base key.
    g.bench_function("prime_order_subgroup_check", |b| {
        b.iter(|| {
            MontgomeryPoint(black_box(u))
                .to_edwards(0)
                .is_some_and(|p| p.is_torsion_free() && !p.is_small_order())
        })
    });
    let id = IdentityKeyPair::generate(&mut OsRng);
    let msg = kp.public_key.serialize();
    let sig = id.private_key().sign(&msg, &mut OsRng);
    g.bench_function("xeddsa_verify", |b| {
        b.iter(|| id.public_key().verify_signature(&msg, &sig))
    });
    g.bench_function("xeddsa_sign", |b| {
        b.iter(|| id.private_key().sign(&msg, &mut OsRng))
    });
    // XEdDSA over a serialized Kyber prekey (0x08 + 1568 bytes), which
    // SHA-512 hashes whole: what signing and verifying a Kyber prekey cost.
    let kyber_msg = KemKeyPair::generate(&mut OsRng).public_key.serialize();
    let kyber_sig = id.private_key().sign(&kyber_msg, &mut OsRng);
    g.bench_function("xeddsa_verify_kyber_prekey", |b| {
        b.iter(|| {
            id.public_key()
                .verify_signature(black_box(&kyber_msg), &kyber_sig)
        })
    });
    g.bench_function("xeddsa_sign_kyber_prekey", |b| {
        b.iter(|| id.private_key().sign(black_box(&kyber_msg), &mut OsRng))
    });
    // Kyber1024 (round 3) itself, through libcrux-ml-kem (the implementation
    // the library wraps), with its randomness from OsRng as the library
    // draws it: 64 bytes for a key pair, 32 for an encapsulation.
    g.bench_function("kyber1024_keygen", |b| {
        b.iter(|| {
            let mut seed = [0u8; 64];
            OsRng.fill_bytes(&mut seed);
            kyber1024::generate_key_pair(seed)
        })
    });
    let kem = kyber1024::generate_key_pair([3u8; 64]);
    g.bench_function("kyber1024_encapsulate", |b| {
        b.iter(|| {
            let mut randomness = [0u8; 32];
            OsRng.fill_bytes(&mut randomness);
            kyber1024::encapsulate(black_box(kem.public_key()), randomness)
        })
    });
    let (kem_ct, _) = kyber1024::encapsulate(kem.public_key(), [5u8; 32]);
    g.bench_function("kyber1024_decapsulate", |b| {
        b.iter(|| kyber1024::decapsulate(kem.private_key(), black_box(&kem_ct)))
    });

    // ML-KEM-768, SPQR's KEM (one key pair, one encapsulation and one
    // decapsulation per epoch).
    g.bench_function("mlkem768_keygen", |b| {
        b.iter(|| {
            let mut seed = [0u8; 64];
            OsRng.fill_bytes(&mut seed);
            libcrux_ml_kem::mlkem768::generate_key_pair(seed)
        })
    });
    let kem768 = libcrux_ml_kem::mlkem768::generate_key_pair([4u8; 64]);
    g.bench_function("mlkem768_encapsulate", |b| {
        b.iter(|| {
            let mut randomness = [0u8; 32];
            OsRng.fill_bytes(&mut randomness);
            libcrux_ml_kem::mlkem768::encapsulate(black_box(kem768.public_key()), randomness)
        })
    });
    let (ct768, _) = libcrux_ml_kem::mlkem768::encapsulate(kem768.public_key(), [6u8; 32]);
    g.bench_function("mlkem768_decapsulate", |b| {
        b.iter(|| libcrux_ml_kem::mlkem768::decapsulate(kem768.private_key(), black_box(&ct768)))
    });

    let key = [7u8; 32];
    // Chain step: one HMAC key schedule, two MACs (0x01 and 0x02).
    g.bench_function("chain_step", |b| {
        b.iter(|| {
            let mac = <HmacSha256 as Mac>::new_from_slice(black_box(&key)).unwrap();
            let mut m1 = mac.clone();
            m1.update(&[1]);
            let mut m2 = mac;
            m2.update(&[2]);
            (m1.finalize().into_bytes(), m2.finalize().into_bytes())
        })
    });
    for (len, name) in [(64usize, "hkdf_64"), (80, "hkdf_80")] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut okm = [0u8; 80];
                hkdf::Hkdf::<Sha256>::new(Some(&[0u8; 32]), black_box(&key))
                    .expand(b"WhisperMessageKeys", &mut okm[..len])
                    .unwrap();
                okm
            })
        });
    }
    for (size, label) in SIZES {
        let pt = vec![0x42u8; size];
        let iv = [9u8; 16];
        // Each direction with its own key schedule only, as the library does.
        let ct = cbc::Encryptor::<aes::Aes256Enc>::new(&key.into(), &iv.into())
            .encrypt_padded_vec_mut::<Pkcs7>(&pt);
        g.bench_function(BenchmarkId::new("aes_cbc_encrypt", label), |b| {
            b.iter(|| {
                cbc::Encryptor::<aes::Aes256Enc>::new(&key.into(), &iv.into())
                    .encrypt_padded_vec_mut::<Pkcs7>(black_box(&pt))
            })
        });
        g.bench_function(BenchmarkId::new("aes_cbc_decrypt", label), |b| {
            b.iter(|| {
                cbc::Decryptor::<aes::Aes256Dec>::new(&key.into(), &iv.into())
                    .decrypt_padded_vec_mut::<Pkcs7>(black_box(&ct))
                    .unwrap()
            })
        });
        // The MAC input: both identities, the version byte and the protobuf.
        let mac_input = vec![0x11u8; 66 + 1 + 45 + ct.len()];
        g.bench_function(BenchmarkId::new("hmac_mac", label), |b| {
            b.iter(|| {
                let mut m = <HmacSha256 as Mac>::new_from_slice(&key).unwrap();
                m.update(black_box(&mac_input));
                m.finalize().into_bytes()
            })
        });
    }
    // The machine's own parallel scaling: the same pure computation (no
    // shared state at all) on one thread and split over two threads. The
    // two-thread store benchmark is judged against this.
    let cpu_work = |n: u64| {
        let mut h = [3u8; 32];
        for _ in 0..n {
            h = Sha256::digest(h).into();
        }
        h
    };
    g.bench_function("cpu_work_1_thread", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            black_box(cpu_work(n * 20));
            start.elapsed()
        })
    });
    g.bench_function("cpu_work_2_threads", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for t in 0..2u64 {
                    let count = (n * 20) / 2 + if t == 0 { (n * 20) % 2 } else { 0 };
                    scope.spawn(move || black_box(cpu_work(count)));
                }
            });
            start.elapsed()
        })
    });
    g.bench_function("sha512_fingerprint_round", |b| {
        let h = [3u8; 64];
        let k = [5u8; 33];
        b.iter(|| {
            Sha512::new()
                .chain_update(black_box(h))
                .chain_update(k)
                .finalize()
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    floor,
    spqr,
    keys,
    agreement,
    messages,
    forged,
    persistence,
    threads
);
criterion_main!(benches);
