//! A server killed with SIGKILL and restarted loses nothing it
//! acknowledged: uploads, claims and mailbox messages answered with a 2xx
//! before the kill are all there after the restart.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_loses_nothing_acknowledged() {
    let db = fresh_db().await;
    let mut server = Server::start(&db, NO_LIMITS);
    let http = client();
    let mut bob = Device::new("bob", 1);
    let alice = std::sync::Arc::new(Device::new("alice", 1));
    assert_eq!(bob.register(&http, &server.base).await.status, 201);
    assert_eq!(alice.register(&http, &server.base).await.status, 201);
    assert_eq!(bob.upload(&http, &server.base, 200).await.status, 200);

    // Messages and claims in flight while the server is killed.
    let base = server.base.clone();
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let (http, base, alice) = (http.clone(), base.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut claimed = 0u32;
            for i in 0..10_000u32 {
                let r = if i % 4 == 0 {
                    let h = alice.header("GET", "/v1/keys/bob/1", b"");
                    let req = http
                        .get(format!("{base}/v1/keys/bob/1"))
                        .header("authorization", h)
                        .send()
                        .await;
                    match req {
                        Ok(resp) if resp.status() == 200 => {
                            claimed += 1;
                            continue;
                        }
                        _ => break,
                    }
                } else {
                    let text = format!("m-{t}-{i}");
                    let body = json!({ "body": STANDARD.encode(&text) }).to_string();
                    let h = alice.header("POST", "/v1/messages/bob/1", body.as_bytes());
                    http.post(format!("{base}/v1/messages/bob/1"))
                        .header("authorization", h)
                        .body(body)
                        .send()
                        .await
                        .map(|resp| (resp.status(), text))
                };
                match r {
                    Ok((status, text)) if status == 201 => acked.push(text),
                    _ => break,
                }
            }
            (acked, claimed)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    server.kill();
    let mut acked = HashSet::new();
    let mut claimed = 0;
    for t in tasks {
        let (a, c) = t.await.unwrap();
        acked.extend(a);
        claimed += c;
    }
    assert!(
        acked.len() > 10,
        "too few messages before the kill: {}",
        acked.len()
    );
    assert!(claimed > 0);

    let server = Server::start(
        &db,
        &[
            "--requester-rate",
            "0",
            "--target-rate",
            "0",
            "--mailbox-max-messages",
            "100000",
        ],
    );
    // Every acknowledged message is there (read and acknowledge in pages).
    let mut found = HashSet::new();
    loop {
        let page = bob.messages(&http, &server.base).await;
        if page.is_empty() {
            break;
        }
        for m in page {
            let text =
                String::from_utf8(STANDARD.decode(m["body"].as_str().unwrap()).unwrap()).unwrap();
            found.insert(text);
            let path = format!("/v1/messages/bob/1/{}", m["id"]);
            assert_eq!(
                bob.request(&http, &server.base, "DELETE", &path, vec![])
                    .await
                    .status,
                204
            );
        }
    }
    let lost: Vec<_> = acked.difference(&found).collect();
    assert!(lost.is_empty(), "acknowledged messages lost: {lost:?}");
    // Every acknowledged claim stays claimed (at most the unacknowledged
    // in-flight ones may also be gone).
    let (ec, kyber) = bob.counts(&http, &server.base).await;
    assert!(ec <= 200 - u64::from(claimed) && kyber <= 200 - u64::from(claimed));
    // Uploads survive too: a fresh claim still works.
    assert_eq!(alice.fetch(&http, &server.base, "bob", 1).await.status, 200);
    eprintln!(
        "crash on {}: {} messages and {claimed} claims acknowledged before SIGKILL, none lost",
        backend(),
        acked.len()
    );
}

#[tokio::test]
async fn sigterm_stops_cleanly() {
    let db = fresh_db().await;
    let mut server = Server::start(&db, NO_LIMITS);
    let http = client();
    let a = send(&http, &server.base, "GET", "/health", vec![], &[]).await;
    assert_eq!((a.status, a.json()["status"].clone()), (200, json!("ok")));
    assert!(server.terminate().success());
}
