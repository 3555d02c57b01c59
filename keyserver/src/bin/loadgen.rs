//! `ratchetkit-loadgen`: a load client for the key server. It registers a
//! target and uploads its keys, registers one requesting device per
//! connection, signs every request beforehand, then fetches bundles over
//! `--connections` concurrent keep-alive connections and prints one JSON
//! line: requests, seconds, fetches/s, p50 and p99 latency (ms), errors.
//!
//! With `--floor DATABASE` it instead measures the claim transaction alone
//! (the storage layer, no HTTP, no signatures) on a fresh database with the
//! same concurrency.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use clap::Parser;
use rand::rngs::OsRng;
use ratchetkit::directory::{sign_request, AuthRequest};
use ratchetkit::ProtocolStore;
use ratchetkit_keyserver::store::{self, KeySet, OneTimeKey, SignedKey};

/// Load client for ratchetkit-keyserver.
#[derive(Parser, Debug)]
struct Args {
    /// The server's base URL (http://127.0.0.1:PORT).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Bundle fetches in the timed run (and one-time keys uploaded, in
    /// batches of 200).
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// A label for the output.
    #[arg(long, default_value = "")]
    label: String,
    /// Measure the claim transaction alone on this (fresh) database.
    #[arg(long)]
    floor: Option<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn header(
    store: &ProtocolStore,
    name: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<String, String> {
    sign_request(
        store.identity(),
        &AuthRequest {
            name,
            device_id: store.device_id(),
            method,
            path,
            body,
            timestamp: now(),
        },
        &mut OsRng,
    )
    .map_err(|e| e.to_string())
}

async fn call(
    http: &reqwest::Client,
    url: &str,
    method: reqwest::Method,
    path: &str,
    auth: String,
    body: Vec<u8>,
) -> Result<u16, String> {
    let r = http
        .request(method, format!("{url}{path}"))
        .header("authorization", auth)
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let _ = r.bytes().await;
    Ok(status)
}

async fn register(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    store: &ProtocolStore,
) -> Result<(), String> {
    let path = format!("/v1/devices/{name}/{}", store.device_id());
    let body = serde_json::json!({
        "identity_key": STANDARD.encode(store.identity_key().serialize())
    })
    .to_string()
    .into_bytes();
    let auth = header(store, name, "PUT", &path, &body)?;
    match call(http, url, reqwest::Method::PUT, &path, auth, body).await? {
        201 => Ok(()),
        s => Err(format!("registering {name}: HTTP {s}")),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn report(label: &str, kind: &str, mut lat: Vec<Duration>, elapsed: Duration, errors: usize) {
    lat.sort();
    let n = lat.len();
    println!(
        "{}",
        serde_json::json!({
            "label": label,
            "kind": kind,
            "requests": n,
            "errors": errors,
            "seconds": elapsed.as_secs_f64(),
            "per_second": n as f64 / elapsed.as_secs_f64(),
            "p50_ms": percentile(&lat, 0.50),
            "p99_ms": percentile(&lat, 0.99),
        })
    );
}

async fn http_run(args: &Args) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .build()
        .map_err(|e| e.to_string())?;
    let url = args.url.as_str();
    let target = format!("target{:08x}", rand::random::<u32>());
    let mut store = ProtocolStore::generate(1, &mut OsRng).map_err(|e| e.to_string())?;
    register(&http, url, &target, &store).await?;
    let path = format!("/v1/keys/{target}/1");
    let batches = args.requests.div_ceil(200);
    for _ in 0..batches {
        let upload = store
            .prepare_upload(200, now() * 1000, &mut OsRng)
            .map_err(|e| e.to_string())?
            .to_json()
            .into_bytes();
        let auth = header(&store, &target, "PUT", &path, &upload)?;
        match call(&http, url, reqwest::Method::PUT, &path, auth, upload).await? {
            200 => {}
            s => return Err(format!("upload: HTTP {s}")),
        }
    }
    // One requester per connection, each with its requests signed ahead.
    let per = args.requests / args.connections;
    let mut plans = Vec::new();
    for c in 0..args.connections {
        let name = format!("req{c}{target}");
        let me = ProtocolStore::generate(1, &mut OsRng).map_err(|e| e.to_string())?;
        register(&http, url, &name, &me).await?;
        let headers = (0..per)
            .map(|_| header(&me, &name, "GET", &path, b""))
            .collect::<Result<Vec<_>, _>>()?;
        plans.push(headers);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for headers in plans {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| e.to_string())?;
        let (url, path) = (url.to_owned(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(headers.len());
            let mut errors = 0usize;
            for h in headers {
                let t = Instant::now();
                match call(&client, &url, reqwest::Method::GET, &path, h, vec![]).await {
                    Ok(200) => lat.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.map_err(|e| e.to_string())?;
        lat.extend(l);
        errors += e;
    }
    report(&args.label, "http", lat, start.elapsed(), errors);
    Ok(())
}

async fn floor_run(args: &Args, db: &str) -> Result<(), String> {
    let st = store::open(db, args.connections)
        .await
        .map_err(|e| e.to_string())?;
    let name = "floor";
    let key = vec![5u8; 33];
    if !st
        .register_name(name, 1, &key)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err("the floor database is not fresh".into());
    }
    let signed = |id: u32, len: usize| SignedKey {
        id,
        public_key: vec![8u8; len],
        signature: vec![0u8; 64],
    };
    let mut next = 1u32;
    for _ in 0..args.requests.div_ceil(200) {
        let keys = KeySet {
            identity_key: key.clone(),
            registration_id: 1,
            signed_prekey: signed(1, 33),
            last_resort: signed(1_000_000, 1569),
            prekeys: (next..next + 200)
                .map(|id| OneTimeKey {
                    id,
                    public_key: vec![5u8; 33],
                })
                .collect(),
            kyber_prekeys: (next..next + 200).map(|id| signed(id, 1569)).collect(),
        };
        next += 200;
        st.upload(name, 1, &keys, u64::MAX)
            .await
            .map_err(|e| e.to_string())?;
    }
    let per = args.requests / args.connections;
    let st: Arc<dyn store::Store> = st;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let st = st.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            let mut errors = 0usize;
            for _ in 0..per {
                let t = Instant::now();
                match st.claim(name, 1, true).await {
                    Ok(Some(_)) => lat.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.map_err(|e| e.to_string())?;
        lat.extend(l);
        errors += e;
    }
    report(&args.label, "floor", lat, start.elapsed(), errors);
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ratchetkit-loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &args.floor {
            Some(db) => floor_run(&args, db).await,
            None => http_run(&args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ratchetkit-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
