//! The server serves the committed OpenAPI document byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

#[tokio::test]
async fn openapi_json_is_the_committed_file() {
    let committed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    let db = fresh_db().await;
    let server = Server::start(&db, &[]);
    let a = send(&client(), &server.base, "GET", "/openapi.json", vec![], &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, committed);
    let doc = a.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Every route the server has is documented.
    for path in [
        "/health",
        "/openapi.json",
        "/v1/devices/{name}/{device_id}",
        "/v1/keys/{name}",
        "/v1/keys/{name}/{device_id}",
        "/v1/keys/{name}/{device_id}/count",
        "/v1/messages/{name}/{device_id}",
        "/v1/messages/{name}/{device_id}/{id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} undocumented");
    }
}
