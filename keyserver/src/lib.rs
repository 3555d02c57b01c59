//! The reference key server of ratchetkit (keyserver/README.md): device
//! registration, signed prekey uploads, one-time prekeys each handed out
//! once, request authentication by identity-key signatures, rate limits
//! and a store-and-forward mailbox, over SQLite or PostgreSQL.

pub mod api;
pub mod auth;
pub mod config;
pub mod ratelimit;
pub mod store;

/// The OpenAPI document, served at `/openapi.json` byte for byte.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");
