use std::path::{Path, PathBuf};

use super::*;

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn defaults_match_the_spec() {
    let c = Config::load_with(&configs(), None, vars(&[])).expect("defaults load");
    assert_eq!(c.server.http.addr.to_string(), "0.0.0.0:8000");
    assert_eq!(c.server.grpc.addr.to_string(), "0.0.0.0:9000");
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(10));
    assert_eq!(
        c.data.database.url.expose(),
        "sqlite://data/qrupload.db?mode=rwc"
    );
    assert!(c.data.database.run_migrations);
    assert_eq!(
        (c.data.blob.kind, c.data.blob.root.as_str()),
        (BlobKind::Fs, "data/blobs")
    );
    assert_eq!(c.data.bus.kind, BusKind::Memory);
    assert_eq!(c.upload.session_ttl, Duration::from_secs(30 * 60));
    assert_eq!(c.upload.retention, Duration::from_secs(24 * 3600));
    assert_eq!(c.upload.max_images, 30);
    assert_eq!(c.upload.max_image_bytes, ByteSize(15 << 20));
    assert_eq!(c.upload.max_session_bytes, ByteSize(300 << 20));
    assert_eq!(c.upload.max_pixels, 50_000_000);
    assert_eq!(c.upload.thumbnail_size, 320);
    assert_eq!(
        (c.upload.sweep_interval, c.upload.orphan_min_age),
        (Duration::from_secs(600), Duration::from_secs(3600))
    );
    assert_eq!(c.data.database.acquire_timeout, Duration::from_secs(5));
    assert_eq!(
        (c.sse.retry, c.sse.heartbeat),
        (Duration::from_secs(2), Duration::from_secs(15))
    );
    assert_eq!(c.sse.event.as_str(), "upload_by_qr");
    assert_eq!(c.auth.mode, AuthMode::Dev);
    assert_eq!(
        (c.log.format, c.log.level.as_str()),
        (LogFormat::Text, "info")
    );
    assert!(c.trace.otlp_endpoint.is_none());
}

#[test]
fn environment_overlays_and_variables_win_in_order() {
    let c = Config::load_with(
        &configs(),
        Some("production"),
        vars(&[
            ("QRUPLOAD__DATA__DATABASE__URL", "postgres://u:p@db/q"),
            ("QRUPLOAD__UPLOAD__MAX_IMAGES", "7"),
            (
                "QRUPLOAD__SERVER__PUBLIC_BASE_URL",
                "https://photos.example.com",
            ),
            ("QRUPLOAD__SSE__HEARTBEAT", "500ms"),
            ("OTHER__IGNORED", "x"),
        ]),
    )
    .expect("loads");
    assert_eq!(c.log.format, LogFormat::Json, "from production.yaml");
    assert_eq!(c.data.bus.kind, BusKind::Redis, "from production.yaml");
    assert_eq!(
        c.data.database.url.expose(),
        "postgres://u:p@db/q",
        "variable beats overlay"
    );
    assert_eq!(c.upload.max_images, 7);
    assert_eq!(
        c.server.public_base_url.as_deref(),
        Some("https://photos.example.com")
    );
    assert_eq!(c.sse.heartbeat, Duration::from_millis(500));
    assert!(
        !format!("{c:?}").contains("u:p@"),
        "secrets stay out of Debug output"
    );
}

#[test]
fn bad_values_name_their_key() {
    let cases = [
        ("QRUPLOAD__SERVER__SHUTDOWN_GRACE", "soon", "shutdown_grace"),
        ("QRUPLOAD__UPLOAD__MAX_IMAGES", "many", "max_images"),
        (
            "QRUPLOAD__UPLOAD__MAX_IMAGE_BYTES",
            "15 parsecs",
            "max_image_bytes",
        ),
        ("QRUPLOAD__SERVER__HTTP__ADDR", "not-an-address", "addr"),
        ("QRUPLOAD__DATA__BUS__KIND", "carrier-pigeon", "kind"),
        ("QRUPLOAD__DATA__BUS__KIND", "redis_cluster", "data.bus.url"),
        ("QRUPLOAD__SSE__EVENT", "bad\nname", "sse.event"),
        ("QRUPLOAD__UPLOAD__MAX_IMAGES", "0", "upload.max_images"),
        ("QRUPLOAD__AUTH__MODE", "jwt", "auth.jwt.secret"),
        ("QRUPLOAD__AUTH__JWT__ALGORITHM", "ES512", "algorithm"),
        ("QRUPLOAD__LIMITS__STREAMS_PER_IP", "-1", "streams_per_ip"),
        (
            "QRUPLOAD__CORS__ALLOWED_ORIGINS",
            "https://ok.example,*",
            "cors.allowed_origins",
        ),
        (
            "QRUPLOAD__CORS__ALLOWED_ORIGINS",
            "https://ok.example/",
            "cors.allowed_origins",
        ),
    ];
    for (key, value, expected) in cases {
        let err = Config::load_with(&configs(), None, vars(&[(key, value)]))
            .expect_err(key)
            .to_string();
        assert!(err.contains(expected), "{key}={value:?} → {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    let missing =
        Config::load_with(&configs(), Some("nosuchenv"), vars(&[])).expect_err("missing overlay");
    assert!(missing.to_string().contains("nosuchenv"), "{missing}");
}

#[test]
fn a_redis_cluster_bus_names_its_nodes() {
    let c = Config::load_with(
        &configs(),
        None,
        vars(&[
            ("QRUPLOAD__DATA__BUS__KIND", "redis_cluster"),
            (
                "QRUPLOAD__DATA__BUS__URL",
                "redis://10.0.0.1:6379,redis://10.0.0.2:6379",
            ),
        ]),
    )
    .expect("loads");
    assert_eq!(c.data.bus.kind, BusKind::RedisCluster);
    assert_eq!(
        c.data.bus.url.as_ref().map(|u| u.expose()),
        Some("redis://10.0.0.1:6379,redis://10.0.0.2:6379")
    );
}

#[test]
fn jwt_mode_and_origins_from_variables() {
    let c = Config::load_with(
        &configs(),
        None,
        vars(&[
            ("QRUPLOAD__AUTH__MODE", "jwt"),
            (
                "QRUPLOAD__AUTH__JWT__SECRET",
                "0123456789abcdef0123456789abcdef",
            ),
            (
                "QRUPLOAD__CORS__ALLOWED_ORIGINS",
                "https://a.example, https://b.example:8443",
            ),
        ]),
    )
    .expect("loads");
    assert_eq!(c.auth.mode, AuthMode::Jwt);
    assert_eq!(
        c.cors.allowed_origins,
        ["https://a.example", "https://b.example:8443"]
    );
    assert!(
        !format!("{c:?}").contains("0123456789abcdef"),
        "secret hidden"
    );
    let short = Config::load_with(
        &configs(),
        None,
        vars(&[
            ("QRUPLOAD__AUTH__MODE", "jwt"),
            ("QRUPLOAD__AUTH__JWT__SECRET", "short"),
        ]),
    );
    assert!(short.is_err());
    let rs256 = Config::load_with(
        &configs(),
        None,
        vars(&[
            ("QRUPLOAD__AUTH__MODE", "jwt"),
            ("QRUPLOAD__AUTH__JWT__ALGORITHM", "RS256"),
        ]),
    )
    .expect_err("RS256 needs a key");
    assert!(rs256.to_string().contains("public_key"), "{rs256}");
}

#[test]
fn byte_sizes() {
    assert_eq!(ByteSize::parse("15MiB"), Ok(ByteSize(15 << 20)));
    assert_eq!(ByteSize::parse("512 KiB"), Ok(ByteSize(512 << 10)));
    assert_eq!(ByteSize::parse("1GB"), Ok(ByteSize(1_000_000_000)));
    assert_eq!(ByteSize::parse("42"), Ok(ByteSize(42)));
    assert!(ByteSize::parse("MiB").is_err());
    assert!(ByteSize::parse("99999999999999999999GiB").is_err());
}
