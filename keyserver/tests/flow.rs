//! The full flow with the library: two devices register, upload keys,
//! fetch each other's bundle, parse it with `parse_bundles`, establish a
//! session and talk through the mailbox.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::*;
use rand::rngs::OsRng;
use ratchetkit::directory::{parse_bundles, PreKeyPolicy};
use ratchetkit::Address;
use serde_json::json;

async fn send_to(http: &reqwest::Client, base: &str, from: &mut Device, to: &str, text: &str) {
    let address = Address::new(to, 1);
    let ct = from.store.encrypt(&address, text.as_bytes()).unwrap();
    let mut bytes = vec![ct.message_type()];
    bytes.extend_from_slice(ct.serialize());
    let body = json!({ "body": STANDARD.encode(bytes) })
        .to_string()
        .into_bytes();
    let a = from
        .request(http, base, "POST", &format!("/v1/messages/{to}/1"), body)
        .await;
    assert_eq!(a.status, 201);
}

async fn receive(http: &reqwest::Client, base: &str, me: &mut Device) -> Vec<String> {
    let mut out = Vec::new();
    for m in me.messages(http, base).await {
        let from = Address::new(
            m["sender_name"].as_str().unwrap(),
            m["sender_device"].as_u64().unwrap() as u32,
        );
        let bytes = STANDARD.decode(m["body"].as_str().unwrap()).unwrap();
        let plain = me
            .store
            .decrypt(&from, bytes[0], &bytes[1..], &mut OsRng)
            .unwrap();
        out.push(String::from_utf8(plain).unwrap());
        let path = format!("/v1/messages/{}/1/{}", me.name, m["id"]);
        assert_eq!(
            me.request(http, base, "DELETE", &path, vec![]).await.status,
            204
        );
    }
    assert!(me.messages(http, base).await.is_empty());
    out
}

#[tokio::test]
async fn two_stores_meet_through_the_server() {
    let db = fresh_db().await;
    let server = Server::start(&db, &[]);
    let (http, base) = (client(), server.base.clone());
    let mut alice = Device::new("alice", 1);
    let mut bob = Device::new("bob", 1);
    for d in [&mut alice, &mut bob] {
        assert_eq!(d.register(&http, &base).await.status, 201);
        assert_eq!(d.upload(&http, &base, 10).await.status, 200);
        assert_eq!(d.counts(&http, &base).await, (10, 10));
    }
    // Alice fetches all of bob's devices.
    let a = alice
        .request(&http, &base, "GET", "/v1/keys/bob", vec![])
        .await;
    assert_eq!(a.status, 200);
    let bundles = parse_bundles(&a.body).unwrap();
    assert_eq!(bundles.len(), 1);
    assert_eq!((bundles[0].name.as_str(), bundles[0].device_id), ("bob", 1));
    assert!(!bundles[0].kyber_last_resort);
    alice
        .store
        .process_bundle(&Address::new("bob", 1), &bundles[0].bundle, &mut OsRng)
        .unwrap();
    assert_eq!(
        alice.store.session_version(&Address::new("bob", 1)),
        Some(4)
    );
    // Bob's count dropped by one; his status asks for no refill yet.
    let (ec, kyber) = bob.counts(&http, &base).await;
    assert_eq!((ec, kyber), (9, 9));
    let status = bob
        .store
        .prekey_status(now() * 1000, Some(ec as u32), &PreKeyPolicy::default());
    assert!(status.refill, "9 left is below the default threshold of 20");

    send_to(&http, &base, &mut alice, "bob", "hello bob").await;
    send_to(&http, &base, &mut alice, "bob", "second").await;
    assert_eq!(
        receive(&http, &base, &mut bob).await,
        ["hello bob", "second"]
    );
    send_to(&http, &base, &mut bob, "alice", "hi alice").await;
    assert_eq!(receive(&http, &base, &mut alice).await, ["hi alice"]);

    // Bob fetches one device of alice's and starts his own session too.
    let a = bob.fetch(&http, &base, "alice", 1).await;
    let b = parse_bundles(&a.body).unwrap();
    assert_eq!(b[0].name, "alice");
    // Refill: bob uploads more; the count adds up.
    assert_eq!(bob.upload(&http, &base, 20).await.status, 200);
    assert_eq!(bob.counts(&http, &base).await, (29, 29));
}
