//! The SSRF guard: start-up refuses plain http and literal private addresses, and a name
//! that resolves to loopback is refused at delivery without a connection being made.

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use qrupload::conf::{EndpointConf, Secret};
use serde_json::json;
use tokio::time::Instant;

use crate::helpers::{TestApp, config_from_env};

#[tokio::test]
async fn start_up_refuses_private_and_plain_http_endpoints() {
    let dir = tempfile::tempdir().expect("temp dir");
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    for url in [
        "https://169.254.169.254/latest/meta-data/",
        "https://127.0.0.1:8443/hook",
        "https://[::ffff:192.168.0.1]/hook",
        "http://hooks.example.com/hook",
    ] {
        let endpoints = json!([{ "url": url, "secret": "whsec_refused_6b1d" }]).to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_qrupload"))
            .arg("--conf")
            .arg(&configs)
            .arg("serve")
            .env_remove("APP_ENV")
            .env("QRUPLOAD__SERVER__HTTP__ADDR", "127.0.0.1:0")
            .env("QRUPLOAD__SERVER__GRPC__ADDR", "127.0.0.1:0")
            .env(
                "QRUPLOAD__DATA__DATABASE__URL",
                format!("sqlite://{}/q.db?mode=rwc", dir.path().display()),
            )
            .env("QRUPLOAD__WEBHOOKS__ENDPOINTS", &endpoints)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{url}: the service started instead of refusing");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let output = child.wait_with_output().expect("output");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!status.success(), "{url}: exit {status}");
        assert!(text.contains("webhooks.endpoints"), "{url}: {text}");
        assert!(!text.contains("whsec_refused_6b1d"), "{url}: {text}");
    }
    // The same addresses load when development allows them.
    let allowed = json!([{ "url": "http://127.0.0.1:9/hook", "secret": "s" }]).to_string();
    let c = config_from_env(
        dir.path(),
        &[
            ("QRUPLOAD__WEBHOOKS__ENDPOINTS", &allowed),
            ("QRUPLOAD__WEBHOOKS__ALLOW_INSECURE", "true"),
        ],
    );
    assert_eq!(c.webhooks.endpoints.len(), 1);
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_delivery_without_connecting() {
    // A plain TCP listener that only counts connections: none may arrive.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let app = TestApp::spawn_with(|c| {
        c.webhooks.endpoints = vec![EndpointConf {
            url: format!("https://localhost:{port}/hook"),
            secret: Secret::new("s"),
            events: None,
        }];
        c.webhooks.retry_base = Duration::from_millis(100);
    })
    .await;

    app.create_session(6).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    while app.metric("qrupload_webhook_failures_total").await < 2.0 {
        assert!(Instant::now() < deadline, "the attempts did not fail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0);
    assert_eq!(app.metric("qrupload_webhook_deliveries_total").await, 0.0);
    assert!(crate::helpers::logs::logs().contains("resolves to no public address"));
}
