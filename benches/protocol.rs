//! Benchmarks of every protocol path and of the primitives each one needs
//! (the "floor"). `make bench` runs them and writes BENCHMARKS.md with each
//! operation's time, its floor and the ratio (benches/report.py).
//!
//! Ids: `op/<operation>` for protocol paths (and forged messages),
//! `floor/<primitive>` for primitives. The report's table says which
//! primitives make each floor.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use criterion::{
    black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode,
};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use ratchetkit::ratchet::MAX_FORWARD_JUMPS;
use ratchetkit::{
    Address, CiphertextMessage, Fingerprint, IdentityKeyPair, KeyPair, PreKeySignalMessage,
    ProtocolStore, MAX_ARCHIVED_STATES,
};
use sha2::{Digest, Sha256, Sha512};

#[path = "../tests/forge/mod.rs"]
mod forge;

const SIZES: [(usize, &str); 3] = [(100, "100B"), (1024, "1KiB"), (65536, "64KiB")];

fn alice_bob() -> (ProtocolStore, ProtocolStore, Address, Address) {
    let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let mut bob = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let (a, b) = (Address::new("alice", 1), Address::new("bob", 1));
    let bundle = bob.create_bundle(true, 0, &mut OsRng).unwrap();
    alice.process_bundle(&b, &bundle, &mut OsRng).unwrap();
    let m = alice.encrypt(&b, b"hi").unwrap();
    bob.decrypt(&a, m.message_type(), m.serialize(), &mut OsRng)
        .unwrap();
    let r = bob.encrypt(&a, b"hi").unwrap();
    alice
        .decrypt(&b, r.message_type(), r.serialize(), &mut OsRng)
        .unwrap();
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
    g.finish();
}

fn x3dh(c: &mut Criterion) {
    let mut g = c.benchmark_group("op");
    for (opk, name) in [(true, "with_opk"), (false, "without_opk")] {
        let alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
        let mut bob = ProtocolStore::generate(1, &mut OsRng).unwrap();
        let bundle = bob.create_bundle(opk, 0, &mut OsRng).unwrap();
        let bob_addr = Address::new("bob", 1);
        g.bench_function(format!("x3dh_initiator_{name}"), |b| {
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
        let alice_addr = Address::new("alice", 1);
        g.bench_function(format!("x3dh_responder_{name}"), |b| {
            b.iter_custom(|n| {
                timed(
                    n,
                    || {
                        let mut a = alice.clone();
                        a.process_bundle(&bob_addr, &bundle, &mut OsRng).unwrap();
                        (bob.clone(), a.encrypt(&bob_addr, &[0x55; 100]).unwrap())
                    },
                    |(mut bob, m)| (deliver(&mut bob, &alice_addr, &m), bob),
                )
            })
        });
    }
    g.finish();
}

fn messages(c: &mut Criterion) {
    let mut g = c.benchmark_group("op");
    for (size, label) in SIZES {
        let pt = vec![0x42u8; size];
        let (alice, _, _, b) = alice_bob();
        g.bench_function(BenchmarkId::new("encrypt", label), |bench| {
            bench.iter(|| alice.encrypt(&b, &pt).unwrap())
        });
        // A fresh pair: the encrypt bench left Bob far behind Alice's chain.
        let (alice, mut bob, a, b) = alice_bob();
        // Messages are made in batches outside the timed part and decrypted
        // in order; the plaintext is freed inside the timed part (as the
        // AES-CBC floor frees its output), the input message after it.
        g.bench_function(BenchmarkId::new("decrypt", label), |bench| {
            bench.iter_batched(
                || alice.encrypt(&b, &pt).unwrap(),
                |m| {
                    drop(deliver(&mut bob, &a, &m));
                    m
                },
                BatchSize::SmallInput,
            )
        });
        // A DH turn on every message: the two sides strictly alternate, so
        // every decrypt meets a new ratchet key.
        let (mut alice, mut bob, a, b) = alice_bob();
        let mut last = bob.encrypt(&a, &pt).unwrap();
        g.bench_function(BenchmarkId::new("decrypt_dh_turn", label), |bench| {
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
    // The binding-overhead baseline: Alice encrypts 100 B, Bob decrypts it
    // (no DH turn), exactly what benches/c_roundtrip.c and
    // benches/python_roundtrip.py do through the C ABI and Python.
    let (alice_rt, mut bob_rt, a_rt, b_rt) = alice_bob();
    let pt100 = [0x42u8; 100];
    g.bench_function("roundtrip_100B", |bench| {
        bench.iter(|| {
            let m = alice_rt.encrypt(&b_rt, &pt100).unwrap();
            deliver(&mut bob_rt, &a_rt, &m)
        })
    });
    // Decrypting a message 1,000 ahead in a known chain: 1,000 skipped keys
    // derived and kept.
    let (alice, mut bob, a, b) = alice_bob();
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
    let (alice, bob, ..) = alice_bob();
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
    let id = IdentityKeyPair::generate(&mut OsRng);
    let msg = kp.public_key.serialize();
    let sig = id.private_key().sign(&msg, &mut OsRng);
    g.bench_function("xeddsa_verify", |b| {
        b.iter(|| id.public_key().verify_signature(&msg, &sig))
    });
    g.bench_function("xeddsa_sign", |b| {
        b.iter(|| id.private_key().sign(&msg, &mut OsRng))
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
    keys,
    x3dh,
    messages,
    forged,
    persistence,
    threads
);
criterion_main!(benches);
