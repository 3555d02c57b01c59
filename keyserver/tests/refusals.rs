//! Refusals: every bad request gets a 4xx and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::*;
use serde_json::{json, Value};

struct World {
    _db: Db,
    server: Server,
    http: reqwest::Client,
    bob: Device,
    alice: Device,
}

/// A server with bob (5 one-time keys of each kind, one message from
/// alice in his mailbox) and alice.
async fn world(flags: &[&str]) -> World {
    let db = fresh_db().await;
    let server = Server::start(&db, flags);
    let http = client();
    let mut bob = Device::new("bob", 1);
    let alice = Device::new("alice", 1);
    assert_eq!(bob.register(&http, &server.base).await.status, 201);
    assert_eq!(alice.register(&http, &server.base).await.status, 201);
    assert_eq!(bob.upload(&http, &server.base, 5).await.status, 200);
    let body = json!({ "body": STANDARD.encode(b"hello") }).to_string();
    let a = alice
        .request(
            &http,
            &server.base,
            "POST",
            "/v1/messages/bob/1",
            body.into_bytes(),
        )
        .await;
    assert_eq!(a.status, 201);
    World {
        _db: db,
        server,
        http,
        bob,
        alice,
    }
}

impl World {
    /// What the refusals must leave alone: bob's key counts, mailbox, and
    /// that his own key still signs for him.
    async fn snapshot(&self) -> ((u64, u64), Vec<Value>) {
        (
            self.bob.counts(&self.http, &self.server.base).await,
            self.bob.messages(&self.http, &self.server.base).await,
        )
    }

    async fn send(&self, method: &str, path: &str, body: Vec<u8>, auth: Option<String>) -> Answer {
        let headers: Vec<(&str, String)> = auth.into_iter().map(|h| ("authorization", h)).collect();
        send(&self.http, &self.server.base, method, path, body, &headers).await
    }
}

fn assert_4xx(a: &Answer, want: u16) {
    assert_eq!(
        a.status,
        want,
        "answer: {}",
        String::from_utf8_lossy(&a.body)
    );
    // Every refusal is JSON with an error message, except the framework's
    // own extractor refusals.
    if a.status != 413 {
        assert!(a.json()["error"].is_string());
    }
}

#[tokio::test]
async fn unauthenticated_requests_are_refused() {
    let w = world(NO_LIMITS).await;
    let before = w.snapshot().await;
    let upload = w.bob.store.clone_for_test_upload();
    for (method, path, body) in [
        ("GET", "/v1/keys/bob/1", vec![]),
        ("GET", "/v1/keys/bob", vec![]),
        ("GET", "/v1/keys/bob/1/count", vec![]),
        ("PUT", "/v1/keys/bob/1", upload.clone()),
        ("GET", "/v1/messages/bob/1", vec![]),
        ("DELETE", "/v1/messages/bob/1/1", vec![]),
        ("POST", "/v1/messages/bob/1", br#"{"body":"aGk="}"#.to_vec()),
    ] {
        let a = w.send(method, path, body, None).await;
        assert_4xx(&a, 401);
    }
    let a = w
        .send("GET", "/v1/keys/bob/1", vec![], Some("Bearer nope".into()))
        .await;
    assert_4xx(&a, 401);
    assert_eq!(w.snapshot().await, before);
}

/// A test-only helper: an upload of bob's current keys (no new one-time
/// keys), as bytes.
trait UploadBytes {
    fn clone_for_test_upload(&self) -> Vec<u8>;
}

impl UploadBytes for ratchetkit::ProtocolStore {
    fn clone_for_test_upload(&self) -> Vec<u8> {
        let mut copy = self.clone();
        copy.prepare_upload(0, now() * 1000, &mut rand::rngs::OsRng)
            .unwrap()
            .to_json()
            .into_bytes()
    }
}

#[tokio::test]
async fn wrongly_signed_requests_are_refused() {
    let w = world(NO_LIMITS).await;
    let before = w.snapshot().await;
    let mallory = Device::new("mallory", 1);
    // Mallory's key, claiming to be bob.
    let h = auth(
        mallory.store.identity(),
        "bob",
        1,
        "GET",
        "/v1/keys/bob/1/count",
        b"",
        now(),
    );
    assert_4xx(
        &w.send("GET", "/v1/keys/bob/1/count", vec![], Some(h)).await,
        401,
    );
    // Bob's signature, over another path, method or body.
    let h = w.bob.header("GET", "/v1/keys/bob/1/count", b"");
    assert_4xx(
        &w.send("GET", "/v1/messages/bob/1", vec![], Some(h)).await,
        401,
    );
    let h = w.bob.header("GET", "/v1/messages/bob/1/1", b"");
    assert_4xx(
        &w.send("DELETE", "/v1/messages/bob/1/1", vec![], Some(h))
            .await,
        401,
    );
    let h = w.bob.header("DELETE", "/v1/messages/bob/1/1", b"");
    assert_4xx(
        &w.send("DELETE", "/v1/messages/bob/1/2", vec![], Some(h))
            .await,
        401,
    );
    let upload = w.bob.store.clone_for_test_upload();
    let h = w.bob.header("PUT", "/v1/keys/bob/1", b"{}");
    assert_4xx(&w.send("PUT", "/v1/keys/bob/1", upload, Some(h)).await, 401);
    // A signature with a bit flipped.
    let h = w.alice.header("GET", "/v1/keys/bob/1", b"");
    let (head, sig) = h.split_once(",sig=").unwrap();
    let mut sig = STANDARD.decode(sig).unwrap();
    sig[10] ^= 1;
    let h = format!("{head},sig={}", STANDARD.encode(sig));
    assert_4xx(&w.send("GET", "/v1/keys/bob/1", vec![], Some(h)).await, 401);
    // Alice's signature passed off as another device of hers.
    let h = w.alice.header("GET", "/v1/keys/bob/1", b"");
    let h = h.replace("name=alice,device=1", "name=alice,device=2");
    assert_4xx(&w.send("GET", "/v1/keys/bob/1", vec![], Some(h)).await, 401);
    assert_eq!(w.snapshot().await, before);
}

#[tokio::test]
async fn replayed_nonces_are_refused() {
    let w = world(NO_LIMITS).await;
    let before = w.snapshot().await;
    let h = w.alice.header("GET", "/v1/keys/bob/1", b"");
    let first = w
        .send("GET", "/v1/keys/bob/1", vec![], Some(h.clone()))
        .await;
    assert_eq!(first.status, 200);
    let again = w.send("GET", "/v1/keys/bob/1", vec![], Some(h)).await;
    assert_4xx(&again, 401);
    // Exactly one claim happened.
    let (counts, messages) = w.snapshot().await;
    assert_eq!(counts, (before.0 .0 - 1, before.0 .1 - 1));
    assert_eq!(messages, before.1);
    // A replayed mailbox deletion changes nothing either.
    let id = before.1[0]["id"].as_i64().unwrap();
    let path = format!("/v1/messages/bob/1/{id}");
    let h = w.bob.header("DELETE", &path, b"");
    assert_eq!(
        w.send("DELETE", &path, vec![], Some(h.clone()))
            .await
            .status,
        204
    );
    let body = json!({ "body": STANDARD.encode(b"again") })
        .to_string()
        .into_bytes();
    let post = w.alice.header("POST", "/v1/messages/bob/1", &body);
    assert_eq!(
        w.send(
            "POST",
            "/v1/messages/bob/1",
            body.clone(),
            Some(post.clone())
        )
        .await
        .status,
        201
    );
    assert_4xx(
        &w.send("POST", "/v1/messages/bob/1", body, Some(post)).await,
        401,
    );
    assert_4xx(&w.send("DELETE", &path, vec![], Some(h)).await, 401);
    assert_eq!(w.bob.messages(&w.http, &w.server.base).await.len(), 1);
}

#[tokio::test]
async fn stale_timestamps_are_refused() {
    let w = world(NO_LIMITS).await;
    let before = w.snapshot().await;
    for ts in [now() - 3600, now() + 3600, 0] {
        let h = auth(
            w.alice.store.identity(),
            "alice",
            1,
            "GET",
            "/v1/keys/bob/1",
            b"",
            ts,
        );
        assert_4xx(&w.send("GET", "/v1/keys/bob/1", vec![], Some(h)).await, 401);
        let upload = w.bob.store.clone_for_test_upload();
        let h = auth(
            w.bob.store.identity(),
            "bob",
            1,
            "PUT",
            "/v1/keys/bob/1",
            &upload,
            ts,
        );
        assert_4xx(&w.send("PUT", "/v1/keys/bob/1", upload, Some(h)).await, 401);
    }
    assert_eq!(w.snapshot().await, before);
}

/// Sends a request over a plain TCP connection and reads the answer even
/// when the server answers (413) and closes before taking the whole body:
/// the body write may then fail, which an HTTP client reports as an error
/// instead of the answer.
async fn send_raw(base: &str, method: &str, path: &str, body: Vec<u8>, auth: String) -> Answer {
    use std::io::{Read, Write};
    let addr = base.strip_prefix("http://").unwrap().to_owned();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        conn.write_all(head.as_bytes()).unwrap();
        // The server may close before reading all of it.
        let _ = conn.write_all(&body);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|t| t.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map_or(Vec::new(), |(_, b)| b.as_bytes().to_vec());
        Answer { status, body }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let w = world(&[
        "--requester-rate",
        "0",
        "--target-rate",
        "0",
        "--max-body-bytes",
        "65536",
    ])
    .await;
    let before = w.snapshot().await;
    // A real upload of 200 keys is far larger than 64 KiB.
    let mut copy = w.bob.store.clone();
    let upload = copy
        .prepare_upload(200, now() * 1000, &mut rand::rngs::OsRng)
        .unwrap()
        .to_json()
        .into_bytes();
    assert!(upload.len() > 65536);
    let h = w.bob.header("PUT", "/v1/keys/bob/1", &upload);
    assert_4xx(
        &send_raw(&w.server.base, "PUT", "/v1/keys/bob/1", upload, h).await,
        413,
    );
    // A message larger than the per-message bound (64 KiB by default).
    let body = json!({ "body": STANDARD.encode(vec![7u8; 40_000]) })
        .to_string()
        .into_bytes();
    let h = w.alice.header("POST", "/v1/messages/bob/1", &body);
    assert_eq!(
        w.send("POST", "/v1/messages/bob/1", body, Some(h))
            .await
            .status,
        201
    );
    let mut w2 = w;
    let big = json!({ "body": STANDARD.encode(vec![7u8; 70_000]) })
        .to_string()
        .into_bytes();
    let h = w2.alice.header("POST", "/v1/messages/bob/1", &big);
    assert_4xx(
        &send_raw(&w2.server.base, "POST", "/v1/messages/bob/1", big, h).await,
        413,
    );
    assert_eq!(w2.bob.counts(&w2.http, &w2.server.base).await, before.0);
    assert_eq!(w2.bob.messages(&w2.http, &w2.server.base).await.len(), 2);
    w2.server.kill();
}

#[tokio::test]
async fn malformed_json_is_refused() {
    let w = world(NO_LIMITS).await;
    let before = w.snapshot().await;
    for body in [
        &b"{not json"[..],
        b"",
        b"[]",
        b"{\"version\":1}",
        b"{\"version\":\"1\",\"identity_key\":1}",
    ] {
        let h = w.bob.header("PUT", "/v1/keys/bob/1", body);
        assert_4xx(
            &w.send("PUT", "/v1/keys/bob/1", body.to_vec(), Some(h))
                .await,
            400,
        );
        let h = w.bob.header("PUT", "/v1/devices/bob/1", body);
        assert_4xx(
            &w.send("PUT", "/v1/devices/bob/1", body.to_vec(), Some(h))
                .await,
            400,
        );
        let h = w.alice.header("POST", "/v1/messages/bob/1", body);
        assert_4xx(
            &w.send("POST", "/v1/messages/bob/1", body.to_vec(), Some(h))
                .await,
            400,
        );
    }
    // Well-formed JSON with an unknown field, a bad key or bad base64.
    let mut upload: Value = serde_json::from_slice(&w.bob.store.clone_for_test_upload()).unwrap();
    upload["extra"] = json!(1);
    let body = upload.to_string().into_bytes();
    let h = w.bob.header("PUT", "/v1/keys/bob/1", &body);
    assert_4xx(&w.send("PUT", "/v1/keys/bob/1", body, Some(h)).await, 400);
    let mut upload: Value = serde_json::from_slice(&w.bob.store.clone_for_test_upload()).unwrap();
    upload["signed_prekey"]["public_key"] = json!("!!!");
    let body = upload.to_string().into_bytes();
    let h = w.bob.header("PUT", "/v1/keys/bob/1", &body);
    assert_4xx(&w.send("PUT", "/v1/keys/bob/1", body, Some(h)).await, 400);
    assert_eq!(w.snapshot().await, before);
}

fn flip_b64(v: &mut Value) {
    let mut bytes = STANDARD.decode(v.as_str().unwrap()).unwrap();
    bytes[5] ^= 0x40;
    *v = json!(STANDARD.encode(bytes));
}

#[tokio::test]
async fn uploads_with_bad_signatures_are_refused() {
    let w = world(NO_LIMITS).await;
    let before = w.snapshot().await;
    let fresh = || -> Value {
        let mut copy = w.bob.store.clone();
        // A rotation, so the upload would replace the signed keys.
        let policy = ratchetkit::directory::PreKeyPolicy {
            rotate_after_ms: 0,
            ..Default::default()
        };
        copy.rotate_prekeys(now() * 1000, &policy, &mut rand::rngs::OsRng)
            .unwrap();
        let json = copy
            .prepare_upload(3, now() * 1000, &mut rand::rngs::OsRng)
            .unwrap()
            .to_json();
        serde_json::from_str(&json).unwrap()
    };
    let bundle_before = w
        .alice
        .fetch(&w.http, &w.server.base, "bob", 1)
        .await
        .json();
    for field in ["signed_prekey", "last_resort_kyber_prekey", "kyber_prekeys"] {
        let mut upload = fresh();
        let target = if field == "kyber_prekeys" {
            &mut upload[field][2]["signature"]
        } else {
            &mut upload[field]["signature"]
        };
        flip_b64(target);
        let body = upload.to_string().into_bytes();
        let h = w.bob.header("PUT", "/v1/keys/bob/1", &body);
        let a = w.send("PUT", "/v1/keys/bob/1", body, Some(h)).await;
        assert_4xx(&a, 400);
        assert!(a.json()["error"].as_str().unwrap().contains("signature"));
    }
    // Keys signed by another identity key, under bob's identity.
    let mut upload = fresh();
    let mallory = Device::new("mallory", 1);
    let mut m = mallory.store.clone();
    let theirs: Value = serde_json::from_str(
        &m.prepare_upload(1, now() * 1000, &mut rand::rngs::OsRng)
            .unwrap()
            .to_json(),
    )
    .unwrap();
    upload["kyber_prekeys"][0] = theirs["kyber_prekeys"][0].clone();
    let body = upload.to_string().into_bytes();
    let h = w.bob.header("PUT", "/v1/keys/bob/1", &body);
    assert_4xx(&w.send("PUT", "/v1/keys/bob/1", body, Some(h)).await, 400);
    // Nothing changed: the same counts (less the fetch above) and the same
    // signed keys in the next bundle.
    let (counts, messages) = w.snapshot().await;
    assert_eq!(counts, (before.0 .0 - 1, before.0 .1 - 1));
    assert_eq!(messages, before.1);
    let bundle_after = w
        .alice
        .fetch(&w.http, &w.server.base, "bob", 1)
        .await
        .json();
    assert_eq!(
        bundle_after["signed_prekey"],
        bundle_before["signed_prekey"]
    );
    assert_eq!(bundle_after["identity_key"], bundle_before["identity_key"]);
}

#[tokio::test]
async fn identity_key_replacement_by_others_is_refused() {
    let w = world(NO_LIMITS).await;
    let before = w.snapshot().await;
    let mallory = Device::new("mallory", 1);
    assert_eq!(mallory.register(&w.http, &w.server.base).await.status, 201);
    let body = mallory.registration_body();
    // Signed as mallory: not a device of bob's name.
    let h = mallory.header("PUT", "/v1/devices/bob/1", &body);
    assert_4xx(
        &w.send("PUT", "/v1/devices/bob/1", body.clone(), Some(h))
            .await,
        403,
    );
    // Self-signed with mallory's key, claiming to be bob/1.
    let h = auth(
        mallory.store.identity(),
        "bob",
        1,
        "PUT",
        "/v1/devices/bob/1",
        &body,
        now(),
    );
    assert_4xx(
        &w.send("PUT", "/v1/devices/bob/1", body.clone(), Some(h))
            .await,
        401,
    );
    // An upload as bob carrying mallory's identity key.
    let mut m = mallory.store.clone();
    let theirs = m
        .prepare_upload(1, now() * 1000, &mut rand::rngs::OsRng)
        .unwrap()
        .to_json();
    let h = w.bob.header("PUT", "/v1/keys/bob/1", theirs.as_bytes());
    assert_4xx(
        &w.send("PUT", "/v1/keys/bob/1", theirs.into_bytes(), Some(h))
            .await,
        403,
    );
    // Bob's own key still signs for him and is the one served.
    assert_eq!(w.snapshot().await, before);
    let bundle = w
        .alice
        .fetch(&w.http, &w.server.base, "bob", 1)
        .await
        .json();
    assert_eq!(bundle["identity_key"], json!(w.bob.identity_b64()));
    // The owner can replace it (positive control).
    let new = Device::new("bob", 1);
    let body = new.registration_body();
    let h = w.bob.header("PUT", "/v1/devices/bob/1", &body);
    assert_eq!(
        w.send("PUT", "/v1/devices/bob/1", body, Some(h))
            .await
            .status,
        200
    );
    assert_eq!(new.counts(&w.http, &w.server.base).await, (0, 0));
}

#[tokio::test]
async fn devices_on_another_name_are_refused() {
    let w = world(NO_LIMITS).await;
    let before = w.snapshot().await;
    let mallory = Device::new("mallory", 1);
    assert_eq!(mallory.register(&w.http, &w.server.base).await.status, 201);
    let body = mallory.registration_body();
    // Self-signed as bob/2: the name exists, so only its devices may add.
    let h = auth(
        mallory.store.identity(),
        "bob",
        2,
        "PUT",
        "/v1/devices/bob/2",
        &body,
        now(),
    );
    assert_4xx(
        &w.send("PUT", "/v1/devices/bob/2", body.clone(), Some(h))
            .await,
        403,
    );
    // Signed by mallory/1.
    let h = mallory.header("PUT", "/v1/devices/bob/2", &body);
    assert_4xx(
        &w.send("PUT", "/v1/devices/bob/2", body.clone(), Some(h))
            .await,
        403,
    );
    // No bob/2 exists: mallory's key does not sign for it.
    let h = auth(
        mallory.store.identity(),
        "bob",
        2,
        "GET",
        "/v1/keys/bob/2/count",
        b"",
        now(),
    );
    assert_4xx(
        &w.send("GET", "/v1/keys/bob/2/count", vec![], Some(h)).await,
        401,
    );
    assert_eq!(w.snapshot().await, before);
    // Bob's own device adds bob/2 (positive control).
    let second = Device::new("bob", 2);
    let body = second.registration_body();
    let h = w.bob.header("PUT", "/v1/devices/bob/2", &body);
    assert_eq!(
        w.send("PUT", "/v1/devices/bob/2", body, Some(h))
            .await
            .status,
        201
    );
    assert_eq!(second.counts(&w.http, &w.server.base).await, (0, 0));
}

#[tokio::test]
async fn registration_gated_by_token() {
    let mut flags = NO_LIMITS.to_vec();
    flags.extend(["--registration-token", "s3cret"]);
    let db = fresh_db().await;
    let server = Server::start(&db, &flags);
    let http = client();
    let carol = Device::new("carol", 1);
    let path = "/v1/devices/carol/1";
    let body = carol.registration_body();
    for token in [None, Some("wrong")] {
        let mut headers = vec![("authorization", carol.header("PUT", path, &body))];
        if let Some(t) = token {
            headers.push(("x-registration-token", t.to_owned()));
        }
        let a = send(&http, &server.base, "PUT", path, body.clone(), &headers).await;
        assert_4xx(&a, 403);
    }
    // Not registered: her key signs for nothing.
    let h = carol.header("GET", "/v1/keys/carol/1/count", b"");
    let a = send(
        &http,
        &server.base,
        "GET",
        "/v1/keys/carol/1/count",
        vec![],
        &[("authorization", h)],
    )
    .await;
    assert_4xx(&a, 401);
    let headers = vec![
        ("authorization", carol.header("PUT", path, &body)),
        ("x-registration-token", "s3cret".to_owned()),
    ];
    assert_eq!(
        send(&http, &server.base, "PUT", path, body, &headers)
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn rate_limits_answer_429() {
    let w = world(&[
        "--requester-rate",
        "0.001",
        "--requester-burst",
        "3",
        "--target-rate",
        "0.001",
        "--target-burst",
        "4",
    ])
    .await;
    // The world's setup posted one message (one token of alice's and of
    // bob/1's mailbox). Per requester: alice has 2 fetches left.
    for _ in 0..2 {
        assert_eq!(
            w.alice
                .fetch(&w.http, &w.server.base, "bob", 1)
                .await
                .status,
            200
        );
    }
    assert_4xx(&w.alice.fetch(&w.http, &w.server.base, "bob", 1).await, 429);
    // Per target: others spend bob's remaining claim budget (4 - 2 = 2),
    // then fresh requesters still get his bundle, without one-time keys.
    for i in 0..4 {
        let other = Device::new(&format!("other{i}"), 1);
        assert_eq!(other.register(&w.http, &w.server.base).await.status, 201);
        let a = other.fetch(&w.http, &w.server.base, "bob", 1).await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let j = a.json();
        assert_eq!(j["kyber_last_resort"], json!(i >= 2), "fetch {i}");
        assert_eq!(j["prekey"].is_null(), i >= 2, "fetch {i}");
    }
    // 5 keys, 4 claims: nothing beyond the budget was claimed.
    assert_eq!(w.bob.counts(&w.http, &w.server.base).await, (1, 1));
}

#[tokio::test]
async fn registrations_beyond_the_limit_answer_429() {
    // The world registers bob and alice: 1 new name left of the burst.
    let w = world(&[
        "--requester-rate",
        "0",
        "--target-rate",
        "0",
        "--registration-rate",
        "0.001",
        "--registration-burst",
        "3",
    ])
    .await;
    let before = w.snapshot().await;
    let carol = Device::new("carol", 1);
    assert_eq!(carol.register(&w.http, &w.server.base).await.status, 201);
    let dave = Device::new("dave", 1);
    assert_4xx(&dave.register(&w.http, &w.server.base).await, 429);
    // Nothing was registered: dave is an unknown requester.
    assert_4xx(&dave.fetch(&w.http, &w.server.base, "bob", 1).await, 401);
    // Devices added by a registered device are not new names: not limited.
    let path = "/v1/devices/bob/2";
    let body = Device::new("bob", 2).registration_body();
    let h = w.bob.header("PUT", path, &body);
    assert_eq!(w.send("PUT", path, body, Some(h)).await.status, 201);
    assert_eq!(w.snapshot().await, before);
}

#[tokio::test]
async fn mailboxes_are_private_and_bounded() {
    let w = world(&[
        "--requester-rate",
        "0",
        "--target-rate",
        "0",
        "--mailbox-max-messages",
        "2",
    ])
    .await;
    let before = w.snapshot().await;
    // Alice can neither read nor delete bob's messages.
    let a = w
        .alice
        .request(&w.http, &w.server.base, "GET", "/v1/messages/bob/1", vec![])
        .await;
    assert_4xx(&a, 403);
    let id = before.1[0]["id"].as_i64().unwrap();
    let path = format!("/v1/messages/bob/1/{id}");
    let a = w
        .alice
        .request(&w.http, &w.server.base, "DELETE", &path, vec![])
        .await;
    assert_4xx(&a, 403);
    // Bound: 2 messages.
    let post = |n: u8| {
        json!({ "body": STANDARD.encode([n]) })
            .to_string()
            .into_bytes()
    };
    let a = w
        .alice
        .request(
            &w.http,
            &w.server.base,
            "POST",
            "/v1/messages/bob/1",
            post(2),
        )
        .await;
    assert_eq!(a.status, 201);
    let a = w
        .alice
        .request(
            &w.http,
            &w.server.base,
            "POST",
            "/v1/messages/bob/1",
            post(3),
        )
        .await;
    assert_4xx(&a, 409);
    // No such recipient.
    let a = w
        .alice
        .request(
            &w.http,
            &w.server.base,
            "POST",
            "/v1/messages/bob/9",
            post(4),
        )
        .await;
    assert_4xx(&a, 404);
    let got = w.bob.messages(&w.http, &w.server.base).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], before.1[0]);
    assert_eq!(got[1]["sender_name"], json!("alice"));
    assert_eq!(got[1]["body"], json!(STANDARD.encode([2u8])));
}
