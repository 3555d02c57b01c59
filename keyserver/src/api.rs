//! The HTTP API (keyserver/README.md, keyserver/openapi.json).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ratchetkit::directory::MAX_UPLOAD_BATCH;
use ratchetkit::kem::KemPublicKey;
use ratchetkit::PublicKey;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{self, AuthError, AuthHeader};
use crate::config::Config;
use crate::ratelimit::RateLimiter;
use crate::store::{
    Bundle, KeySet, MailboxLimits, OneTimeKey, PostOutcome, RegisterOutcome, SignedKey, Store,
    StoreError, UploadOutcome,
};

/// The most messages one mailbox read returns.
pub const MAX_MESSAGES_PER_READ: u32 = 100;

/// The server's shared state.
pub struct AppState {
    /// The storage.
    pub store: Arc<dyn Store>,
    /// The configuration.
    pub config: Config,
    requesters: RateLimiter,
    targets: RateLimiter,
    registrations: RateLimiter,
}

impl AppState {
    /// State over `store` with `config`.
    pub fn new(store: Arc<dyn Store>, config: Config) -> Self {
        AppState {
            requesters: RateLimiter::new(config.requester_rate, config.requester_burst),
            targets: RateLimiter::new(config.target_rate, config.target_burst),
            registrations: RateLimiter::new(config.registration_rate, config.registration_burst),
            store,
            config,
        }
    }
}

/// An error answer: a status and `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "storage unavailable")
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())
    }
}

type ApiResult = Result<Response, ApiError>;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn unb64(text: &str, what: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(text)
        .map_err(|_| ApiError::bad(format!("{what} is not base64")))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if auth::valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad(
            "a name is 1 to 64 ASCII letters, digits or . _ - @ +",
        ))
    }
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("malformed JSON: {e}")))
}

fn header_of(headers: &HeaderMap) -> Result<AuthHeader, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Malformed)?;
    Ok(auth::parse(value)?)
}

/// Verifies a parsed header against the request under `key` (or, without
/// one, the requesting device's registered identity key), then records
/// its nonce.
async fn authenticate(
    st: &AppState,
    h: &AuthHeader,
    method: &Method,
    uri: &Uri,
    body: &[u8],
    key: Option<PublicKey>,
) -> Result<(), ApiError> {
    let window = st.config.auth_window_secs;
    if !auth::fresh(h, now_secs(), window) {
        return Err(AuthError::Stale.into());
    }
    let key = match key {
        Some(k) => k,
        None => {
            let stored = st
                .store
                .identity_key(&h.name, h.device_id)
                .await?
                .ok_or(AuthError::UnknownDevice)?;
            PublicKey::deserialize(&stored).map_err(|_| AuthError::UnknownDevice)?
        }
    };
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    if !auth::verify(h, method.as_str(), path, body, &key) {
        return Err(AuthError::BadSignature.into());
    }
    let expires =
        i64::try_from(h.timestamp.saturating_add(window).saturating_add(1)).unwrap_or(i64::MAX);
    if !st
        .store
        .use_nonce(&h.name, h.device_id, &h.nonce, expires)
        .await?
    {
        return Err(AuthError::Replayed.into());
    }
    Ok(())
}

/// Authenticates the request as its registered requester.
async fn requester(
    st: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<AuthHeader, ApiError> {
    let h = header_of(headers)?;
    authenticate(st, &h, method, uri, body, None).await?;
    Ok(h)
}

/// Authenticates the request as the device `name`/`device_id` itself.
async fn owner(
    st: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    name: &str,
    device_id: u32,
) -> Result<AuthHeader, ApiError> {
    let h = requester(st, method, uri, headers, body).await?;
    if h.name != name || h.device_id != device_id {
        return Err(ApiError::forbidden("only the device itself may do this"));
    }
    Ok(h)
}

fn too_many() -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded")
}

/// The per-requester limit (429 beyond it).
fn requester_limit(st: &AppState, requester: &AuthHeader) -> Result<(), ApiError> {
    let who = format!("{}/{}", requester.name, requester.device_id);
    if st.requesters.allow(&who) {
        Ok(())
    } else {
        Err(too_many())
    }
}

/// The per-requester and the per-target limit (429 beyond either).
fn rate_limit(st: &AppState, requester: &AuthHeader, target: &str) -> Result<(), ApiError> {
    requester_limit(st, requester)?;
    if st.targets.allow(target) {
        Ok(())
    } else {
        Err(too_many())
    }
}

/// For a bundle fetch within the requester's limit: whether the target's
/// budget allows claiming one-time keys. It governs claims, not access, so
/// that nobody can lock others out of a target: beyond it the bundle is
/// served without one-time keys (the last-resort Kyber prekey).
fn fetch_limit(st: &AppState, requester: &AuthHeader, target: &str) -> Result<bool, ApiError> {
    requester_limit(st, requester)?;
    Ok(st.targets.allow(target))
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    identity_key: String,
}

async fn register(
    State(st): State<Arc<AppState>>,
    Path((name, device_id)): Path<(String, u32)>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_name(&name)?;
    let h = header_of(&headers)?;
    let req: RegisterBody = parse_json(&body)?;
    let key_bytes = unb64(&req.identity_key, "identity_key")?;
    let key = PublicKey::deserialize(&key_bytes)
        .map_err(|_| ApiError::bad("identity_key is not a public key"))?;
    let key_bytes = key.serialize().to_vec();
    let same_device = h.name == name && h.device_id == device_id;
    if same_device && st.store.identity_key(&name, device_id).await?.is_none() {
        // Not registered: only a new name registers itself (self-signed).
        // The token and the name are checked before the signature so that
        // a request refused for them writes nothing (not even its nonce).
        if let Some(token) = &st.config.registration_token {
            let given = headers
                .get("x-registration-token")
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if !ct_eq(given, token.as_bytes()) {
                return Err(ApiError::forbidden(
                    "registration needs the operator's token",
                ));
            }
        }
        // New names per client address, so that throwaway names cannot
        // multiply the per-requester limit. Behind a proxy every client
        // shares the proxy's address (README).
        let ip = peer.map_or_else(|| "unknown".to_owned(), |p| p.0 .0.ip().to_string());
        if !st.registrations.allow(&ip) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "registration rate limit exceeded",
            ));
        }
        if st.store.name_exists(&name).await? {
            return Err(ApiError::forbidden(
                "the name exists: a new device must be added by one of its devices",
            ));
        }
        authenticate(&st, &h, &method, &uri, &body, Some(key)).await?;
        if !st.store.register_name(&name, device_id, &key_bytes).await? {
            return Err(ApiError::new(StatusCode::CONFLICT, "the name is taken"));
        }
        tracing::info!(%name, device_id, "registered a new name");
        return Ok((
            StatusCode::CREATED,
            Json(json!({ "name": name, "device_id": device_id })),
        )
            .into_response());
    }
    // A registered device of the same name adds a device or sets a
    // device's identity key (its own included).
    authenticate(&st, &h, &method, &uri, &body, None).await?;
    if h.name != name {
        return Err(ApiError::forbidden(
            "only a device of the name may register its devices",
        ));
    }
    match st.store.put_device(&name, device_id, &key_bytes).await? {
        None => Err(ApiError::not_found("no such name")),
        Some(outcome) => {
            let status = match outcome {
                RegisterOutcome::Created => StatusCode::CREATED,
                RegisterOutcome::Updated => StatusCode::OK,
                RegisterOutcome::TooManyDevices => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!(
                            "a name holds at most {} devices",
                            crate::store::MAX_DEVICES_PER_NAME
                        ),
                    ))
                }
            };
            tracing::info!(%name, device_id, by = h.device_id, ?outcome, "device registered");
            Ok((
                status,
                Json(json!({ "name": name, "device_id": device_id })),
            )
                .into_response())
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct SignedKeyJson {
    id: u32,
    public_key: String,
    signature: String,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct KeyJson {
    id: u32,
    public_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadBody {
    version: u32,
    identity_key: String,
    registration_id: u32,
    signed_prekey: SignedKeyJson,
    last_resort_kyber_prekey: SignedKeyJson,
    prekeys: Vec<KeyJson>,
    kyber_prekeys: Vec<SignedKeyJson>,
}

fn signature_of(k: &SignedKeyJson, what: &str) -> Result<Vec<u8>, ApiError> {
    let sig = unb64(&k.signature, what)?;
    if sig.len() != 64 {
        return Err(ApiError::bad(format!("{what} is not 64 bytes")));
    }
    Ok(sig)
}

fn ec_key(text: &str, what: &str) -> Result<Vec<u8>, ApiError> {
    let k = PublicKey::deserialize(&unb64(text, what)?)
        .map_err(|_| ApiError::bad(format!("{what} is not a public key")))?;
    Ok(k.serialize().to_vec())
}

fn kyber_key(k: &SignedKeyJson, identity: &PublicKey, what: &str) -> Result<SignedKey, ApiError> {
    let public = KemPublicKey::deserialize(&unb64(&k.public_key, what)?)
        .map_err(|_| ApiError::bad(format!("{what} is not a Kyber public key")))?
        .serialize();
    let signature = signature_of(k, what)?;
    if !identity.verify_signature(&public, &signature) {
        return Err(ApiError::bad(format!(
            "{what} {}: bad signature by the identity key",
            k.id
        )));
    }
    Ok(SignedKey {
        id: k.id,
        public_key: public,
        signature,
    })
}

fn validate_upload(body: &UploadBody) -> Result<KeySet, ApiError> {
    if body.version != ratchetkit::directory::UPLOAD_FORMAT_VERSION {
        return Err(ApiError::bad("unknown upload format version"));
    }
    let limit = MAX_UPLOAD_BATCH as usize;
    if body.prekeys.len() > limit || body.kyber_prekeys.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("at most {limit} one-time prekeys of each kind per upload"),
        ));
    }
    let identity_bytes = ec_key(&body.identity_key, "identity_key")?;
    let identity = PublicKey::deserialize(&identity_bytes)
        .map_err(|_| ApiError::bad("identity_key is not a public key"))?;
    let sp = &body.signed_prekey;
    let sp_key = ec_key(&sp.public_key, "signed_prekey")?;
    let sp_sig = signature_of(sp, "signed_prekey signature")?;
    if !identity.verify_signature(&sp_key, &sp_sig) {
        return Err(ApiError::bad(
            "signed_prekey: bad signature by the identity key",
        ));
    }
    let last_resort = kyber_key(
        &body.last_resort_kyber_prekey,
        &identity,
        "last_resort_kyber_prekey",
    )?;
    let mut seen = HashSet::new();
    let mut prekeys = Vec::with_capacity(body.prekeys.len());
    for k in &body.prekeys {
        if !seen.insert(k.id) {
            return Err(ApiError::bad(format!("prekey id {} twice", k.id)));
        }
        prekeys.push(OneTimeKey {
            id: k.id,
            public_key: ec_key(&k.public_key, "prekey")?,
        });
    }
    let mut seen = HashSet::new();
    let mut kyber_prekeys = Vec::with_capacity(body.kyber_prekeys.len());
    for k in &body.kyber_prekeys {
        if !seen.insert(k.id) || k.id == last_resort.id {
            return Err(ApiError::bad(format!("Kyber prekey id {} twice", k.id)));
        }
        kyber_prekeys.push(kyber_key(k, &identity, "kyber_prekey")?);
    }
    Ok(KeySet {
        identity_key: identity_bytes,
        registration_id: body.registration_id,
        signed_prekey: SignedKey {
            id: sp.id,
            public_key: sp_key,
            signature: sp_sig,
        },
        last_resort,
        prekeys,
        kyber_prekeys,
    })
}

async fn upload(
    State(st): State<Arc<AppState>>,
    Path((name, device_id)): Path<(String, u32)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_name(&name)?;
    owner(&st, &method, &uri, &headers, &body, &name, device_id).await?;
    let req: UploadBody = parse_json(&body)?;
    let keys = validate_upload(&req)?;
    match st
        .store
        .upload(&name, device_id, &keys, st.config.max_prekeys_per_device)
        .await?
    {
        UploadOutcome::Stored(counts) => Ok(Json(counts).into_response()),
        UploadOutcome::NoDevice => Err(ApiError::not_found("no such device")),
        UploadOutcome::IdentityMismatch => Err(ApiError::forbidden(
            "the upload's identity key is not the device's (re-register to replace it)",
        )),
        UploadOutcome::TooMany => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "a device holds at most {} one-time prekeys of each kind",
                st.config.max_prekeys_per_device
            ),
        )),
    }
}

async fn count(
    State(st): State<Arc<AppState>>,
    Path((name, device_id)): Path<(String, u32)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_name(&name)?;
    owner(&st, &method, &uri, &headers, &body, &name, device_id).await?;
    match st.store.count(&name, device_id).await? {
        Some(c) => Ok(Json(c).into_response()),
        None => Err(ApiError::not_found("no such device")),
    }
}

fn bundle_json(b: &Bundle) -> serde_json::Value {
    json!({
        "version": 1,
        "name": b.name,
        "device_id": b.device_id,
        "registration_id": b.registration_id,
        "identity_key": b64(&b.identity_key),
        "signed_prekey": {
            "id": b.signed_prekey.id,
            "public_key": b64(&b.signed_prekey.public_key),
            "signature": b64(&b.signed_prekey.signature),
        },
        "prekey": b.prekey.as_ref().map(|p| json!({
            "id": p.id,
            "public_key": b64(&p.public_key),
        })),
        "kyber_prekey": {
            "id": b.kyber_prekey.id,
            "public_key": b64(&b.kyber_prekey.public_key),
            "signature": b64(&b.kyber_prekey.signature),
        },
        "kyber_last_resort": b.kyber_last_resort,
    })
}

async fn fetch_one(
    State(st): State<Arc<AppState>>,
    Path((name, device_id)): Path<(String, u32)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_name(&name)?;
    let h = requester(&st, &method, &uri, &headers, &body).await?;
    let one_time = fetch_limit(&st, &h, &name)?;
    match st.store.claim(&name, device_id, one_time).await? {
        Some(b) => Ok(Json(bundle_json(&b)).into_response()),
        None => Err(ApiError::not_found("no such device, or no keys uploaded")),
    }
}

async fn fetch_all(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_name(&name)?;
    let h = requester(&st, &method, &uri, &headers, &body).await?;
    let one_time = fetch_limit(&st, &h, &name)?;
    let bundles = st.store.claim_all(&name, one_time).await?;
    if bundles.is_empty() {
        return Err(ApiError::not_found("no such name, or no keys uploaded"));
    }
    let devices: Vec<_> = bundles.iter().map(bundle_json).collect();
    Ok(Json(json!({ "devices": devices })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    body: String,
}

async fn post_message(
    State(st): State<Arc<AppState>>,
    Path((name, device_id)): Path<(String, u32)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_name(&name)?;
    let h = requester(&st, &method, &uri, &headers, &body).await?;
    let req: PostBody = parse_json(&body)?;
    let message = unb64(&req.body, "body")?;
    if message.is_empty() || message.len() > st.config.max_message_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a message is 1 to {} bytes", st.config.max_message_bytes),
        ));
    }
    rate_limit(&st, &h, &format!("{name}/{device_id}"))?;
    let limits = MailboxLimits {
        max_messages: st.config.mailbox_max_messages,
        max_bytes: st.config.mailbox_max_bytes,
    };
    let now = i64::try_from(now_secs()).unwrap_or(i64::MAX);
    match st
        .store
        .post_message(
            &name,
            device_id,
            &h.name,
            h.device_id,
            &message,
            now,
            limits,
        )
        .await?
    {
        PostOutcome::Stored(id) => {
            Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
        }
        PostOutcome::NoDevice => Err(ApiError::not_found("no such device")),
        PostOutcome::Full => Err(ApiError::new(StatusCode::CONFLICT, "the mailbox is full")),
    }
}

async fn read_messages(
    State(st): State<Arc<AppState>>,
    Path((name, device_id)): Path<(String, u32)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_name(&name)?;
    owner(&st, &method, &uri, &headers, &body, &name, device_id).await?;
    let messages = st
        .store
        .messages(&name, device_id, MAX_MESSAGES_PER_READ)
        .await?;
    let list: Vec<_> = messages
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "sender_name": m.sender_name,
                "sender_device": m.sender_device,
                "body": b64(&m.body),
                "timestamp": m.timestamp,
            })
        })
        .collect();
    Ok(Json(json!({ "messages": list })).into_response())
}

async fn delete_message(
    State(st): State<Arc<AppState>>,
    Path((name, device_id, id)): Path<(String, u32, i64)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    check_name(&name)?;
    owner(&st, &method, &uri, &headers, &body, &name, device_id).await?;
    if st.store.delete_message(&name, device_id, id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found("no such message"))
    }
}

async fn health() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::OPENAPI_JSON,
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn log_request(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let micros = start.elapsed().as_micros() as u64;
    if status >= 500 {
        tracing::error!(%method, %path, status, micros, "request");
    } else if status >= 400 {
        tracing::info!(%method, %path, status, micros, "request");
    } else {
        tracing::debug!(%method, %path, status, micros, "request");
    }
    response
}

/// The router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .route("/v1/devices/{name}/{device_id}", put(register))
        .route("/v1/keys/{name}", get(fetch_all))
        .route("/v1/keys/{name}/{device_id}", get(fetch_one).put(upload))
        .route("/v1/keys/{name}/{device_id}/count", get(count))
        .route(
            "/v1/messages/{name}/{device_id}",
            get(read_messages).post(post_message),
        )
        .route(
            "/v1/messages/{name}/{device_id}/{id}",
            axum::routing::delete(delete_message),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}
