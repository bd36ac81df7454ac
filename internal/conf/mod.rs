//! Typed configuration and its layered loader.
//!
//! Layers, later wins: `{dir}/config.yaml` (development defaults, required), then
//! `{dir}/{APP_ENV}.yaml` (required when `APP_ENV` is set), then environment variables
//! `QRUPLOAD__SECTION__KEY`. Every key is snake_case so a variable can reach it. Durations
//! read as `30m`/`2s`, byte sizes as `15MiB`. A bad value stops start-up with one line that
//! names the key; nothing here falls back silently.

mod units;
mod webhooks;

use std::{net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;

use crate::biz::EventName;

pub use units::{ByteSize, Secret};
pub use webhooks::{EndpointConf, WebhooksConf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Load(#[from] config::ConfigError),
    #[error("config: {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConf,
    pub data: DataConf,
    pub upload: UploadConf,
    pub sse: SseConf,
    pub auth: AuthConf,
    #[serde(default)]
    pub limits: AbuseLimitsConf,
    #[serde(default)]
    pub cors: CorsConf,
    pub log: LogConf,
    #[serde(default)]
    pub trace: TraceConf,
    #[serde(default)]
    pub webhooks: WebhooksConf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConf {
    pub http: HttpConf,
    pub grpc: Listen,
    /// Base of the URLs put in QR codes; unset → the machine's LAN address and HTTP port.
    #[serde(default)]
    pub public_base_url: Option<String>,
    #[serde(with = "units::duration")]
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    pub addr: SocketAddr,
}

/// The HTTP listener and the limits its serve loop enforces on every connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConf {
    pub addr: SocketAddr,
    /// A request head (the first and every later one on a keep-alive connection) must arrive
    /// whole within this time of its first byte; a new connection must send its first head
    /// within this time of being accepted.
    #[serde(with = "units::duration", default = "default_header_read_timeout")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this long. Streams
    /// in flight (SSE) are never idle.
    #[serde(with = "units::duration", default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// A request body must arrive within this time of its head, extended by one second for
    /// every `body_min_rate` bytes received (as Apache's mod_reqtimeout); else 408.
    #[serde(with = "units::duration", default = "default_body_timeout")]
    pub body_timeout: Duration,
    /// Bytes per second that earn a slow body one more second; 0 gives no extension.
    #[serde(default = "default_body_min_rate")]
    pub body_min_rate: ByteSize,
    /// Answer each upload with a `Server-Timing` header: the time of each stage (session
    /// check, body, cleaning, blobs, database, bus). Off by default: it tells a client how
    /// long this server's disk and database take.
    #[serde(default)]
    pub server_timing: bool,
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_body_timeout() -> Duration {
    Duration::from_secs(20)
}

fn default_body_min_rate() -> ByteSize {
    ByteSize(500)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConf {
    pub database: DatabaseConf,
    pub blob: BlobConf,
    pub bus: BusConf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConf {
    pub url: Secret,
    pub run_migrations: bool,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// How long a request waits for a database connection (or a new one to open) before it
    /// answers 503: while the database is away, requests fail fast instead of queueing.
    #[serde(with = "units::duration", default = "default_acquire_timeout")]
    pub acquire_timeout: Duration,
}

fn default_max_connections() -> u32 {
    16
}

fn default_acquire_timeout() -> Duration {
    Duration::from_secs(5)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobKind {
    Fs,
    S3,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobConf {
    pub kind: BlobKind,
    pub root: String,
    #[serde(default)]
    pub s3: S3Conf,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Conf {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub bucket: Option<String>,
    #[serde(default)]
    pub path_style: bool,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    #[serde(default)]
    pub allow_http: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusKind {
    Memory,
    Redis,
    /// Redis Cluster, over sharded pub/sub; `url` lists one or more nodes, comma-separated.
    RedisCluster,
    Nats,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConf {
    pub kind: BusKind,
    #[serde(default)]
    pub url: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadConf {
    #[serde(with = "units::duration")]
    pub session_ttl: Duration,
    #[serde(with = "units::duration")]
    pub retention: Duration,
    pub max_images: u32,
    pub max_image_bytes: ByteSize,
    pub max_session_bytes: ByteSize,
    pub max_pixels: u64,
    pub thumbnail_size: u32,
    /// The longest `ttl_seconds` a gRPC caller may ask for.
    #[serde(with = "units::duration", default = "default_max_session_ttl")]
    pub max_session_ttl: Duration,
    /// Decodes running at once; each holds a decoded frame in memory.
    #[serde(default = "default_max_concurrent_decodes")]
    pub max_concurrent_decodes: usize,
    /// How often the retention and orphan sweeps run (the first run is at start-up).
    #[serde(with = "units::duration", default = "default_sweep_interval")]
    pub sweep_interval: Duration,
    /// A blob with no row is swept only once it is this old: a request in flight writes its
    /// rows within seconds of its blobs.
    #[serde(with = "units::duration", default = "default_orphan_min_age")]
    pub orphan_min_age: Duration,
    /// How long a gRPC `UploadImage` stream may stay silent between messages.
    #[serde(with = "units::duration", default = "default_stream_idle_timeout")]
    pub stream_idle_timeout: Duration,
    /// How long an unfinished resumable (tus) upload lives, at most until its session expires.
    #[serde(with = "units::duration", default = "default_tus_expiry")]
    pub tus_expiry: Duration,
    /// Longest side the phone page downscales photos to before upload; unset: no downscale.
    #[serde(default)]
    pub client_max_edge: Option<u32>,
}

fn default_tus_expiry() -> Duration {
    Duration::from_secs(3600)
}

fn default_max_session_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_max_concurrent_decodes() -> usize {
    2
}

fn default_sweep_interval() -> Duration {
    Duration::from_secs(600)
}

fn default_orphan_min_age() -> Duration {
    Duration::from_secs(3600)
}

fn default_stream_idle_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseConf {
    #[serde(with = "units::duration")]
    pub retry: Duration,
    #[serde(with = "units::duration")]
    pub heartbeat: Duration,
    /// The default snapshot event name; a name that could break the stream fails the load.
    pub event: EventName,
    /// A connection whose client accepts no bytes for this long while data waits (a stalled
    /// watcher, its TCP window full) is dropped.
    #[serde(with = "units::duration", default = "default_write_timeout")]
    pub write_timeout: Duration,
    /// How long a stream ticket stays valid. SPEC fixes it at 60 s; the key exists so tests
    /// can see a ticket expire without waiting a minute, and is not an operator setting.
    #[serde(with = "units::duration", default = "default_ticket_ttl")]
    pub ticket_ttl: Duration,
}

fn default_write_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_ticket_ttl() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    Dev,
    Jwt,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConf {
    pub mode: AuthMode,
    /// Key from which upload tokens are derived (any text of 32+ characters). Instances behind
    /// one URL must share it. Unset: a random key per process, so QR codes of sessions made
    /// before a restart cannot be shown again (their tokens still work).
    #[serde(default)]
    pub upload_token_key: Option<Secret>,
    /// Used when `mode` is `jwt`.
    #[serde(default)]
    pub jwt: JwtConf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum JwtAlgorithm {
    #[default]
    HS256,
    RS256,
}

/// Bearer JWTs of the host application: the member is the `sub` claim, `exp` is required.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConf {
    #[serde(default)]
    pub algorithm: JwtAlgorithm,
    /// HS256: the shared secret (32+ characters).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// RS256: the public key as PEM text, or a path to a PEM file.
    #[serde(default)]
    pub public_key_pem: Option<String>,
    #[serde(default)]
    pub public_key_file: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(with = "units::duration", default = "default_jwt_leeway")]
    pub leeway: Duration,
}

impl Default for JwtConf {
    fn default() -> Self {
        JwtConf {
            algorithm: JwtAlgorithm::default(),
            secret: None,
            public_key_pem: None,
            public_key_file: None,
            issuer: None,
            audience: None,
            leeway: default_jwt_leeway(),
        }
    }
}

fn default_jwt_leeway() -> Duration {
    Duration::from_secs(30)
}

/// Abuse limits of the public HTTP API; 0 turns one off. Refusals answer 429 `RATE_LIMITED`
/// with `Retry-After`. The gRPC API is internal and not limited.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AbuseLimitsConf {
    pub uploads_per_session_per_minute: u32,
    pub uploads_per_ip_per_minute: u32,
    pub sessions_per_member_per_hour: u32,
    pub streams_per_member: u32,
    pub streams_per_ip: u32,
}

impl Default for AbuseLimitsConf {
    fn default() -> Self {
        AbuseLimitsConf {
            uploads_per_session_per_minute: 120,
            uploads_per_ip_per_minute: 600,
            sessions_per_member_per_hour: 120,
            streams_per_member: 32,
            streams_per_ip: 256,
        }
    }
}

/// Cross-origin access to the API and the SSE route. Empty: same origin only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConf {
    /// Exact origins (`https://app.example.com`), as a list or one comma-separated string.
    /// Credentials are allowed for these. `*` alone allows any origin without credentials.
    #[serde(default, deserialize_with = "units::list")]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConf {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceConf {
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

impl Config {
    /// Loads `dir/config.yaml`, the `APP_ENV` overlay and `QRUPLOAD__…` variables.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let app_env = std::env::var("APP_ENV").ok().filter(|e| !e.is_empty());
        Self::load_with(dir, app_env.as_deref(), std::env::vars())
    }

    /// The loader with its inputs explicit, so tests need not touch the process environment.
    pub fn load_with(
        dir: &Path,
        app_env: Option<&str>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut builder =
            config::Config::builder().add_source(config::File::from(dir.join("config.yaml")));
        if let Some(env) = app_env {
            builder = builder.add_source(config::File::from(dir.join(format!("{env}.yaml"))));
        }
        let vars = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with("QRUPLOAD__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("QRUPLOAD")
                .prefix_separator("__")
                .separator("__")
                .source(Some(vars)),
        );
        let config: Config = builder.build()?.try_deserialize()?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        if self.upload.max_images == 0 {
            return invalid("upload.max_images", "must be at least 1");
        }
        if self.upload.thumbnail_size < 16 {
            return invalid("upload.thumbnail_size", "must be at least 16");
        }
        if self.upload.max_concurrent_decodes == 0 {
            return invalid("upload.max_concurrent_decodes", "must be at least 1");
        }
        if self.upload.stream_idle_timeout.is_zero() {
            return invalid("upload.stream_idle_timeout", "must be above zero");
        }
        if self.sse.heartbeat.is_zero() {
            return invalid("sse.heartbeat", "must be above zero");
        }
        if self.upload.tus_expiry.is_zero() {
            return invalid("upload.tus_expiry", "must be above zero");
        }
        if self.upload.client_max_edge.is_some_and(|e| e < 64) {
            return invalid("upload.client_max_edge", "must be at least 64 (or unset)");
        }
        if self.upload.sweep_interval.is_zero() {
            return invalid("upload.sweep_interval", "must be above zero");
        }
        if self.data.database.acquire_timeout.is_zero() {
            return invalid("data.database.acquire_timeout", "must be above zero");
        }
        if self.sse.write_timeout.is_zero() {
            return invalid("sse.write_timeout", "must be above zero");
        }
        let http = &self.server.http;
        for (key, value) in [
            ("server.http.header_read_timeout", http.header_read_timeout),
            ("server.http.idle_timeout", http.idle_timeout),
            ("server.http.body_timeout", http.body_timeout),
        ] {
            if value.is_zero() {
                return invalid(key, "must be above zero");
            }
        }
        if self.data.bus.kind != BusKind::Memory && self.data.bus.url.is_none() {
            return invalid(
                "data.bus.url",
                "is required when data.bus.kind is redis, redis_cluster or nats",
            );
        }
        if self.auth.mode == AuthMode::Jwt {
            let jwt = &self.auth.jwt;
            match jwt.algorithm {
                JwtAlgorithm::HS256 => match &jwt.secret {
                    Some(s) if s.expose().len() >= 32 => {}
                    _ => {
                        return invalid(
                            "auth.jwt.secret",
                            "HS256 needs a secret of 32+ characters",
                        );
                    }
                },
                JwtAlgorithm::RS256 => {
                    if jwt.public_key_pem.is_none() == jwt.public_key_file.is_none() {
                        return invalid(
                            "auth.jwt.public_key_pem",
                            "RS256 needs exactly one of public_key_pem and public_key_file",
                        );
                    }
                }
            }
        }
        for origin in &self.cors.allowed_origins {
            let exact = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.ends_with('/')
                && !origin.contains(['*', ' ', ','])
                && http::HeaderValue::from_str(origin).is_ok();
            let any = origin == "*" && self.cors.allowed_origins.len() == 1;
            if !exact && !any {
                return invalid(
                    "cors.allowed_origins",
                    "each entry must be an exact origin like https://app.example.com, or * alone",
                );
            }
        }
        if let Some(key) = &self.auth.upload_token_key
            && key.expose().len() < 32
        {
            return invalid("auth.upload_token_key", "must be at least 32 characters");
        }
        self.webhooks.validate()?;
        if let Some(url) = &self.server.public_base_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid(
                "server.public_base_url",
                "must start with http:// or https://",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
