//! Configuration: command-line flags, each also settable through an
//! environment variable (`RK_KEYSERVER_*`).

use std::net::SocketAddr;

use clap::Parser;

/// The reference key server of ratchetkit.
#[derive(Parser, Clone, Debug)]
#[command(name = "ratchetkit-keyserver", version, about)]
pub struct Config {
    /// The address to listen on (port 0: any free port; the address taken
    /// is printed on standard output).
    #[arg(long, env = "RK_KEYSERVER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The database: `sqlite:PATH` or `postgres://USER@HOST:PORT/DB`.
    #[arg(
        long,
        env = "RK_KEYSERVER_DATABASE",
        default_value = "sqlite:keyserver.db"
    )]
    pub database: String,
    /// When set, registering a new name needs this token in the
    /// `X-Registration-Token` header; registration is open otherwise.
    #[arg(long, env = "RK_KEYSERVER_REGISTRATION_TOKEN")]
    pub registration_token: Option<String>,
    /// Signed requests are accepted this many seconds either side of the
    /// server's clock.
    #[arg(long, env = "RK_KEYSERVER_AUTH_WINDOW_SECS", default_value_t = 300)]
    pub auth_window_secs: u64,
    /// The largest request body (bytes); larger ones get 413.
    #[arg(long, env = "RK_KEYSERVER_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// The most one-time prekeys of each kind held per device.
    #[arg(
        long,
        env = "RK_KEYSERVER_MAX_PREKEYS_PER_DEVICE",
        default_value_t = 1000
    )]
    pub max_prekeys_per_device: u64,
    /// Bundle fetches and mailbox posts per second per requesting device
    /// (0: no limit).
    #[arg(long, env = "RK_KEYSERVER_REQUESTER_RATE", default_value_t = 10.0)]
    pub requester_rate: f64,
    /// The burst allowed per requesting device.
    #[arg(long, env = "RK_KEYSERVER_REQUESTER_BURST", default_value_t = 50.0)]
    pub requester_burst: f64,
    /// One-time prekey claims per second per target name (fetches beyond
    /// it are answered without one-time keys, with the last-resort Kyber
    /// prekey), and mailbox posts per second per recipient device (0: no
    /// limit).
    #[arg(long, env = "RK_KEYSERVER_TARGET_RATE", default_value_t = 5.0)]
    pub target_rate: f64,
    /// The burst allowed per target.
    #[arg(long, env = "RK_KEYSERVER_TARGET_BURST", default_value_t = 20.0)]
    pub target_burst: f64,
    /// Registrations of new names per second per client IP address (0: no
    /// limit).
    #[arg(long, env = "RK_KEYSERVER_REGISTRATION_RATE", default_value_t = 1.0)]
    pub registration_rate: f64,
    /// The burst of new-name registrations allowed per client IP address.
    #[arg(long, env = "RK_KEYSERVER_REGISTRATION_BURST", default_value_t = 10.0)]
    pub registration_burst: f64,
    /// The most messages held in one device's mailbox.
    #[arg(
        long,
        env = "RK_KEYSERVER_MAILBOX_MAX_MESSAGES",
        default_value_t = 1000
    )]
    pub mailbox_max_messages: u64,
    /// The most bytes (sum of message bodies) held in one device's mailbox.
    #[arg(long, env = "RK_KEYSERVER_MAILBOX_MAX_BYTES", default_value_t = 16 << 20)]
    pub mailbox_max_bytes: u64,
    /// The largest message body (bytes, decoded).
    #[arg(long, env = "RK_KEYSERVER_MAX_MESSAGE_BYTES", default_value_t = 64 << 10)]
    pub max_message_bytes: usize,
    /// Connections in the PostgreSQL pool (per server process).
    #[arg(long, env = "RK_KEYSERVER_PG_POOL_SIZE", default_value_t = 16)]
    pub pg_pool_size: usize,
    /// Log as JSON lines (default: human-readable lines).
    #[arg(long, env = "RK_KEYSERVER_LOG_JSON")]
    pub log_json: bool,
}
