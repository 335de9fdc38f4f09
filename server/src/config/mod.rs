//! Server configuration: command-line flags, each also read from a `GRAYCAST_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};

pub mod file;

use crate::auth::Tokens;
use crate::store::{Backing, StoreOptions};

/// Default address to serve on: loopback only, as no tokens are configured by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default folder of the embedded store.
pub const DEFAULT_DATA_DIR: &str = "./graycast-data";
/// Default largest serialized value (1 MiB).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Default number of recent changes kept for resuming subscribers.
pub const DEFAULT_CHANGELOG_RETAIN: u64 = 100_000;
/// Default interval between pings (and `progress` messages while idle).
pub const DEFAULT_HEARTBEAT_MS: u64 = 15_000;
/// Default silence after which a WebSocket peer is dropped.
pub const DEFAULT_CLIENT_TIMEOUT_MS: u64 = 45_000;
/// Default bytes of changes queued per subscriber before it is resynced with a snapshot.
pub const DEFAULT_SUBSCRIBER_BUDGET_BYTES: usize = 4 * 1024 * 1024;
/// Default time a new WebSocket connection has to subscribe (and authenticate).
pub const DEFAULT_SUBSCRIBE_TIMEOUT_MS: u64 = 10_000;
/// Default largest number of writes committed in one transaction.
pub const DEFAULT_MAX_BATCH: u64 = 1024;
/// Default history items kept per key (0 keeps them all).
pub const DEFAULT_HISTORY_RETAIN: u64 = 1000;
/// Default bytes the store may hold: 2 GiB, etcd's default quota.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Default key prefix of the etcd store.
pub const DEFAULT_ETCD_PREFIX: &str = "/graycast/";
/// Default seconds a node's etcd lease lives without renewal.
pub const DEFAULT_ETCD_LEASE_TTL: u64 = 5;
/// Default time a client has to send a whole request body.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;

/// The store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// Embedded durable store (a redb file under `--data-dir`).
    Redb,
    /// In-memory store: fast and forgetful, for tests and demos.
    Memory,
    /// An etcd cluster shared by several graycast nodes (`--etcd-endpoints`); needs a
    /// build with the `etcd` cargo feature.
    Etcd,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line (timestamp, level, target, fields, spans), for log
    /// collectors.
    Json,
}

/// graycast: a real-time configuration center with gray releases.
#[derive(Debug, Clone, Parser)]
#[command(name = "graycast", version, about)]
pub struct Config {
    /// A TOML file of these settings, one key per flag (`max-value-bytes = 1048576`); flags
    /// and environment variables override it, relative paths are relative to its folder.
    #[arg(long, env = "GRAYCAST_CONFIG", value_hint = clap::ValueHint::FilePath)]
    pub config: Option<PathBuf>,

    /// Address to serve HTTP and WebSocket on; port 0 picks a free port.
    #[arg(long, env = "GRAYCAST_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Folder of the embedded store; created when missing.
    #[arg(long, env = "GRAYCAST_DATA_DIR", value_hint = clap::ValueHint::DirPath, default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Store backend.
    #[arg(long, env = "GRAYCAST_STORE", value_enum, default_value_t = StoreKind::Redb)]
    pub store: StoreKind,

    /// etcd endpoints of `--store etcd`, comma separated (`http://127.0.0.1:2379`, or
    /// `https://` with `--etcd-ca-file`).
    #[arg(long, env = "GRAYCAST_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,

    /// Prefix of every key graycast keeps in etcd; several deployments can share a cluster
    /// under different prefixes.
    #[arg(long, env = "GRAYCAST_ETCD_PREFIX", default_value = DEFAULT_ETCD_PREFIX)]
    pub etcd_prefix: String,

    /// etcd user (with `--etcd-password`), for clusters with authentication.
    #[arg(long, env = "GRAYCAST_ETCD_USER", requires = "etcd_password")]
    pub etcd_user: Option<String>,

    /// Password of `--etcd-user`.
    #[arg(long, env = "GRAYCAST_ETCD_PASSWORD", hide_env_values = true, requires = "etcd_user")]
    pub etcd_password: Option<String>,

    /// CA certificates (PEM) of the etcd cluster's TLS.
    #[arg(long, env = "GRAYCAST_ETCD_CA_FILE", value_hint = clap::ValueHint::FilePath)]
    pub etcd_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for etcd clusters that require one (with `--etcd-key-file`).
    #[arg(long, env = "GRAYCAST_ETCD_CERT_FILE", value_hint = clap::ValueHint::FilePath, requires = "etcd_key_file")]
    pub etcd_cert_file: Option<PathBuf>,

    /// Private key (PEM) of `--etcd-cert-file`.
    #[arg(long, env = "GRAYCAST_ETCD_KEY_FILE", value_hint = clap::ValueHint::FilePath, requires = "etcd_cert_file")]
    pub etcd_key_file: Option<PathBuf>,

    /// Seconds a node's etcd lease lives without renewal: when the node leading ramps and
    /// the guard dies, another takes over within this.
    #[arg(long, env = "GRAYCAST_ETCD_LEASE_TTL", default_value_t = DEFAULT_ETCD_LEASE_TTL,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub etcd_lease_ttl: u64,

    /// This node's name in a cluster (the election, the guard's counts); the listen
    /// address by default.
    #[arg(long, env = "GRAYCAST_NODE_NAME")]
    pub node_name: Option<String>,

    /// Largest accepted value, in bytes of its JSON serialization.
    #[arg(long, env = "GRAYCAST_MAX_VALUE_BYTES", default_value_t = DEFAULT_MAX_VALUE_BYTES)]
    pub max_value_bytes: usize,

    /// Number of recent changes kept durably so that subscribers can resume with `since`.
    #[arg(long, env = "GRAYCAST_CHANGELOG_RETAIN", default_value_t = DEFAULT_CHANGELOG_RETAIN,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub changelog_retain: u64,

    /// History items kept per key; the oldest go first (the current state always stays).
    /// 0 keeps every item forever.
    #[arg(long, env = "GRAYCAST_HISTORY_RETAIN", default_value_t = DEFAULT_HISTORY_RETAIN)]
    pub history_retain: u64,

    /// Bytes the store may hold (entries, history and change log); a write beyond them is
    /// refused with 507 quota_exceeded, deletes still pass (a deleted key's values count
    /// until --history-retain and --changelog-retain drop them).
    #[arg(long, env = "GRAYCAST_QUOTA_BYTES", default_value_t = DEFAULT_QUOTA_BYTES)]
    pub quota_bytes: u64,

    /// Interval between pings and idle `progress` messages, in milliseconds.
    #[arg(long, env = "GRAYCAST_HEARTBEAT_MS", default_value_t = DEFAULT_HEARTBEAT_MS,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub heartbeat_ms: u64,

    /// Silence after which a WebSocket peer is dropped, in milliseconds.
    #[arg(long, env = "GRAYCAST_CLIENT_TIMEOUT_MS", default_value_t = DEFAULT_CLIENT_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub client_timeout_ms: u64,

    /// Bytes of changes queued for a subscriber that does not keep up; beyond them its
    /// queued changes are dropped and it is resynced with a snapshot.
    #[arg(long, env = "GRAYCAST_SUBSCRIBER_BUDGET_BYTES",
          default_value_t = DEFAULT_SUBSCRIBER_BUDGET_BYTES)]
    pub subscriber_budget_bytes: usize,

    /// Whether the fan-out writes a change straight into a plain-TCP WebSocket's socket
    /// while nothing is queued for it (`false`: every delivery goes through the
    /// connection's own task).
    #[arg(long, env = "GRAYCAST_DIRECT_WRITES", default_value_t = true,
          action = clap::ArgAction::Set, value_name = "BOOL")]
    pub direct_writes: bool,

    /// Time a new WebSocket connection has to subscribe, in milliseconds.
    #[arg(long, env = "GRAYCAST_SUBSCRIBE_TIMEOUT_MS", default_value_t = DEFAULT_SUBSCRIBE_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub subscribe_timeout_ms: u64,

    /// Largest number of concurrent WebSocket subscribers. By default, what the process's
    /// file descriptor limit allows with room left for REST clients and the store.
    #[arg(long, env = "GRAYCAST_MAX_SUBSCRIBERS")]
    pub max_subscribers: Option<usize>,

    /// Largest number of writes committed together in one transaction.
    #[arg(long, env = "GRAYCAST_MAX_BATCH", default_value_t = DEFAULT_MAX_BATCH,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_batch: u64,

    /// Token file (TOML; README "Access tokens"). Without it the server is open and serves only on loopback.
    #[arg(long, env = "GRAYCAST_TOKENS", value_hint = clap::ValueHint::FilePath)]
    pub tokens: Option<PathBuf>,

    /// Host names (besides localhost, 127.0.0.1, [::1] and the listen address) that
    /// requests may be addressed to, comma separated; `*` allows any. Guards against DNS
    /// rebinding.
    #[arg(long, env = "GRAYCAST_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// Origins (such as `https://console.example.com`) whose pages may change
    /// configuration and subscribe, besides the server's own; comma separated.
    #[arg(long, env = "GRAYCAST_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Time a client has to send a whole request body, in milliseconds (408 after it).
    #[arg(long, env = "GRAYCAST_BODY_TIMEOUT_MS", default_value_t = DEFAULT_BODY_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub body_timeout_ms: u64,

    /// Largest document `POST /v1/import` takes, in bytes.
    #[arg(long, env = "GRAYCAST_MAX_IMPORT_BYTES", default_value_t = 256 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_import_bytes: u64,

    /// Certificate chain (PEM) to serve HTTPS and WSS with; needs `--tls-key`.
    #[arg(long, env = "GRAYCAST_TLS_CERT", value_hint = clap::ValueHint::FilePath, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of `--tls-cert`.
    #[arg(long, env = "GRAYCAST_TLS_KEY", value_hint = clap::ValueHint::FilePath, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Log lines as readable text or as one JSON object per line; `GRAYCAST_LOG` sets the
    /// level (`info` by default; `debug`, or per module: `graycast_server::session=debug`).
    #[arg(long, env = "GRAYCAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Number of HTTP worker threads; 0 means one per core.
    #[arg(long, env = "GRAYCAST_WORKERS", default_value_t = 0)]
    pub workers: usize,
}

/// The TLS configuration, and the certificate it serves (SIGHUP replaces it).
pub type Tls = (Arc<rustls::ServerConfig>, Arc<crate::reload::Certificate>);

impl Config {
    /// A configuration with every default, serving on `listen` with the given store.
    pub fn for_tests(store: StoreKind, data_dir: PathBuf) -> Config {
        let mut config = Config::parse_from(["graycast"]);
        config.store = store;
        config.data_dir = data_dir;
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }

    pub fn subscribe_timeout(&self) -> Duration {
        Duration::from_millis(self.subscribe_timeout_ms)
    }

    /// The subscriber limit: the flag's, or derived from the file descriptor limit.
    pub fn subscriber_limit(&self, fd_limit: u64) -> usize {
        self.max_subscribers.unwrap_or_else(|| {
            // A subscriber holds one descriptor; keep an eighth (64 to 4096) for REST
            // clients, the store and the rest, so that subscribers never starve them.
            let spare = (fd_limit / 8).clamp(64, 4096);
            usize::try_from(fd_limit.saturating_sub(spare)).unwrap_or(usize::MAX).max(16)
        })
    }

    pub fn client_timeout(&self) -> Duration {
        Duration::from_millis(self.client_timeout_ms)
    }

    /// The largest request body. Values are limited by their compact size, and a request
    /// may spell one with whitespace and escapes several times larger; a gray release also
    /// carries up to 2 x 10,000 subjects of 256 bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.max_value_bytes.saturating_mul(4).saturating_add(8 * 1024 * 1024)
    }

    /// What the store needs of this configuration; `listen` is the bound address (the
    /// node's default name).
    pub fn store_options(&self, listen: SocketAddr) -> Result<StoreOptions, String> {
        let backing = match self.store {
            StoreKind::Redb => Backing::Redb(self.data_dir.join("graycast.redb")),
            StoreKind::Memory => Backing::Memory,
            StoreKind::Etcd => self.etcd_backing(listen)?,
        };
        Ok(StoreOptions {
            backing,
            changelog_retain: self.changelog_retain,
            history_retain: self.history_retain,
            max_batch: self.max_batch as usize,
            quota_bytes: self.quota_bytes,
        })
    }

    #[cfg(feature = "etcd")]
    fn etcd_backing(&self, listen: SocketAddr) -> Result<Backing, String> {
        if self.etcd_endpoints.is_empty() {
            return Err("--store etcd needs --etcd-endpoints".into());
        }
        let prefix = self.etcd_prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err("--etcd-prefix must name a key prefix, such as /graycast/".into());
        }
        Ok(Backing::Etcd(crate::store::etcd::EtcdOptions {
            endpoints: self.etcd_endpoints.clone(),
            prefix: format!("{prefix}/"),
            user: self.etcd_user.clone(),
            password: self.etcd_password.clone(),
            ca_file: self.etcd_ca_file.clone(),
            cert_file: self.etcd_cert_file.clone(),
            key_file: self.etcd_key_file.clone(),
            lease_ttl: self.etcd_lease_ttl as i64,
            node: self.node_name.clone().unwrap_or_else(|| listen.to_string()),
            lost_answers: None,
        }))
    }

    #[cfg(not(feature = "etcd"))]
    fn etcd_backing(&self, _listen: SocketAddr) -> Result<Backing, String> {
        Err("this build has no etcd support: build with `--features etcd` (it needs protoc)".into())
    }

    /// The TLS configuration of `--tls-cert` and `--tls-key`, if given; the error names
    /// the file and the problem.
    pub fn tls(&self) -> Result<Option<Tls>, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else { return Ok(None) };
        // The handshake asks the certificate each time, so SIGHUP can replace it.
        let certificate = Arc::new(crate::reload::Certificate::load(cert, key)?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some((Arc::new(config), certificate)))
    }

    /// Reads the token file, if one is configured.
    pub fn load_tokens(&self) -> Result<Option<Tokens>, String> {
        self.tokens.as_deref().map(Tokens::load).transpose()
    }

    /// Refuses settings that are unsafe or contradictory.
    pub fn validate(&self) -> Result<(), String> {
        self.store_options(self.listen)?;
        if !self.listen.ip().is_loopback() && self.tokens.is_none() {
            return Err(format!(
                "refusing to serve on {} without access tokens: bind a loopback address",
                self.listen
            ));
        }
        Ok(())
    }
}
