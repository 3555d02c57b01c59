//! Test harness: starts `ratchetkit-keyserver` processes on a fresh
//! database and talks to them as registered devices.
//!
//! The backend is SQLite (a temporary file) unless `KEYSERVER_TEST_PG` is
//! set to a PostgreSQL URL without a database (`postgres://user@host:port`):
//! then every test gets its own new database there. scripts/test.sh runs
//! the suite both ways.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::OsRng;
use rand::RngCore;
use ratchetkit::directory::{sign_request, AuthRequest};
use ratchetkit::{IdentityKeyPair, ProtocolStore};

/// A fresh database URL (and the directory holding it, for SQLite).
pub struct Db {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub async fn fresh_db() -> Db {
    match std::env::var("KEYSERVER_TEST_PG") {
        Ok(base) if !base.is_empty() => {
            let base = base.trim_end_matches('/');
            let name = format!("rk_test_{:016x}", OsRng.next_u64());
            let (client, conn) =
                tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls)
                    .await
                    .expect("connect to the test PostgreSQL (KEYSERVER_TEST_PG)");
            tokio::spawn(conn);
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create a test database");
            Db {
                url: format!("{base}/{name}"),
                _dir: None,
            }
        }
        _ => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite:{}", dir.path().join("keys.db").display());
            Db {
                url,
                _dir: Some(dir),
            }
        }
    }
}

pub fn backend() -> &'static str {
    match std::env::var("KEYSERVER_TEST_PG") {
        Ok(b) if !b.is_empty() => "postgres",
        _ => "sqlite",
    }
}

/// A running server process.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Starts a server on `db` with extra flags; waits until it listens.
    pub fn start(db: &Db, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ratchetkit-keyserver"))
            .args(["--listen", "127.0.0.1:0", "--database", &db.url])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ratchetkit-keyserver");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let addr = line
            .trim()
            .strip_prefix("ratchetkit-keyserver listening on ")
            .unwrap_or_else(|| panic!("server did not start: {line:?}"))
            .to_owned();
        Server {
            child,
            base: format!("http://{addr}"),
        }
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success());
        self.child.wait().expect("wait for the server")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Flags that lift the rate limits (for tests that are not about them).
pub const NO_LIMITS: &[&str] = &[
    "--requester-rate",
    "0",
    "--target-rate",
    "0",
    "--registration-rate",
    "0",
];

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A device: a name, a device id and a protocol store.
pub struct Device {
    pub name: String,
    pub store: ProtocolStore,
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()
        .unwrap()
}

/// Sends a request with the given headers.
pub async fn send(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http.request(method, format!("{base}{path}")).body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.expect("HTTP request");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("HTTP body").to_vec();
    Answer { status, body }
}

/// The Authorization header of a request by `identity` as `name`/`device`.
pub fn auth(
    identity: &IdentityKeyPair,
    name: &str,
    device_id: u32,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: u64,
) -> String {
    sign_request(
        identity,
        &AuthRequest {
            name,
            device_id,
            method,
            path,
            body,
            timestamp,
        },
        &mut OsRng,
    )
    .unwrap()
}

impl Device {
    pub fn new(name: &str, device_id: u32) -> Device {
        Device {
            name: name.to_owned(),
            store: ProtocolStore::generate(device_id, &mut OsRng).unwrap(),
        }
    }

    pub fn device_id(&self) -> u32 {
        self.store.device_id()
    }

    pub fn header(&self, method: &str, path: &str, body: &[u8]) -> String {
        auth(
            self.store.identity(),
            &self.name,
            self.device_id(),
            method,
            path,
            body,
            now(),
        )
    }

    /// A request signed by this device.
    pub async fn request(
        &self,
        http: &reqwest::Client,
        base: &str,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Answer {
        let h = self.header(method, path, &body);
        send(http, base, method, path, body, &[("authorization", h)]).await
    }

    pub fn identity_b64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.store.identity_key().serialize())
    }

    /// The body of a registration with this device's identity key.
    pub fn registration_body(&self) -> Vec<u8> {
        serde_json::json!({ "identity_key": self.identity_b64() })
            .to_string()
            .into_bytes()
    }

    /// Registers this device as the first of a new name (self-signed).
    pub async fn register(&self, http: &reqwest::Client, base: &str) -> Answer {
        let path = format!("/v1/devices/{}/{}", self.name, self.device_id());
        let body = self.registration_body();
        self.request(http, base, "PUT", &path, body).await
    }

    /// Uploads `count` new one-time keys of each kind (with the signed
    /// keys).
    pub async fn upload(&mut self, http: &reqwest::Client, base: &str, count: u32) -> Answer {
        let upload = self
            .store
            .prepare_upload(count, now() * 1000, &mut OsRng)
            .unwrap();
        let path = format!("/v1/keys/{}/{}", self.name, self.device_id());
        self.request(http, base, "PUT", &path, upload.to_json().into_bytes())
            .await
    }

    /// The server's counts of this device's one-time keys.
    pub async fn counts(&self, http: &reqwest::Client, base: &str) -> (u64, u64) {
        let path = format!("/v1/keys/{}/{}/count", self.name, self.device_id());
        let a = self.request(http, base, "GET", &path, vec![]).await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let j = a.json();
        (
            j["prekeys"].as_u64().unwrap(),
            j["kyber_prekeys"].as_u64().unwrap(),
        )
    }

    /// Fetches a bundle of `name`/`device_id` as this device.
    pub async fn fetch(
        &self,
        http: &reqwest::Client,
        base: &str,
        name: &str,
        device_id: u32,
    ) -> Answer {
        let path = format!("/v1/keys/{name}/{device_id}");
        self.request(http, base, "GET", &path, vec![]).await
    }

    /// This device's mailbox.
    pub async fn messages(&self, http: &reqwest::Client, base: &str) -> Vec<serde_json::Value> {
        let path = format!("/v1/messages/{}/{}", self.name, self.device_id());
        let a = self.request(http, base, "GET", &path, vec![]).await;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        a.json()["messages"].as_array().unwrap().clone()
    }
}
