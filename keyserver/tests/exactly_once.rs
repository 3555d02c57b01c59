//! Exactly once: 8 clients fetch bundles of one target at the same time
//! until its one-time keys run out; across 10,000 claims no one-time key
//! is handed out twice, then the last-resort Kyber key is served (with no
//! one-time EC key). Once with one server process and once with two
//! processes on one database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;

const KEYS: u32 = 10_000;
const CLIENTS: usize = 8;

async fn run(processes: usize) {
    let db = fresh_db().await;
    let cap = KEYS.to_string();
    let mut flags = NO_LIMITS.to_vec();
    flags.extend(["--max-prekeys-per-device", &cap]);
    let servers: Vec<Server> = (0..processes).map(|_| Server::start(&db, &flags)).collect();
    let bases: Vec<String> = servers.iter().map(|s| s.base.clone()).collect();
    let http = client();

    let mut bob = Device::new("bob", 1);
    assert_eq!(bob.register(&http, &bases[0]).await.status, 201);
    for _ in 0..KEYS / 200 {
        let a = bob.upload(&http, &bases[0], 200).await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    }
    assert_eq!(
        bob.counts(&http, &bases[0]).await,
        (u64::from(KEYS), u64::from(KEYS))
    );

    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let base = bases[i % bases.len()].clone();
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let me = Device::new(&format!("fetcher{i}"), 1);
            assert_eq!(me.register(&http, &base).await.status, 201);
            let me = Arc::new(me);
            // (EC prekey id, Kyber prekey id) of every one-time claim, then
            // the bundle that came after the keys ran out.
            let mut claims = Vec::new();
            loop {
                let a = me.fetch(&http, &base, "bob", 1).await;
                assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
                let j = a.json();
                if j["kyber_last_resort"].as_bool().unwrap() {
                    return (claims, j);
                }
                let ec = j["prekey"]["id"].as_u64().expect("a one-time EC prekey");
                let kyber = j["kyber_prekey"]["id"].as_u64().unwrap();
                claims.push((ec, kyber));
            }
        }));
    }
    let mut ec_ids = HashSet::new();
    let mut kyber_ids = HashSet::new();
    let mut total = 0usize;
    let last_resort_id = bob
        .store
        .prepare_upload(0, now() * 1000, &mut rand::rngs::OsRng)
        .unwrap()
        .last_resort_kyber_prekey
        .id;
    for t in tasks {
        let (claims, last) = t.await.unwrap();
        total += claims.len();
        for (ec, kyber) in claims {
            assert!(ec_ids.insert(ec), "EC prekey {ec} handed out twice");
            assert!(
                kyber_ids.insert(kyber),
                "Kyber prekey {kyber} handed out twice"
            );
        }
        // After the keys ran out: the last-resort key and no EC one-time key.
        assert!(last["prekey"].is_null());
        assert_eq!(
            last["kyber_prekey"]["id"].as_u64().unwrap(),
            u64::from(last_resort_id)
        );
        let parsed =
            ratchetkit::directory::parse_bundles(&serde_json::to_vec(&last).unwrap()).unwrap();
        assert!(parsed[0].kyber_last_resort);
    }
    assert_eq!(total, KEYS as usize, "every one-time key claimed once");
    assert_eq!(ec_ids.len(), KEYS as usize);
    assert_eq!(kyber_ids.len(), KEYS as usize);
    assert_eq!(bob.counts(&http, &bases[0]).await, (0, 0));
    eprintln!(
        "exactly once on {} with {processes} process(es): {total} claims",
        backend()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_once_one_process() {
    run(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_once_two_processes_one_database() {
    run(2).await;
}
