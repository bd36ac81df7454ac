//! The tus server driven by the real `tus-js-client` (npm, run by Node from `tests/js/`):
//! a plain upload, a resume after the connection is cut mid-file and refused for a while,
//! and a 15 MiB file over a throttled link.

use std::{path::PathBuf, process::Stdio, sync::OnceLock, time::Duration};

use serde_json::Value;

use crate::{
    helpers::{TestApp, jpeg},
    relay::{Relay, RelayPlan},
    tus::{Tus, multipart_sha},
};

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// Node with `tus-js-client` installed, or `None` to skip (only when Node is absent outside
/// CI). Installs the package when it is missing.
fn node() -> Option<PathBuf> {
    static READY: OnceLock<Option<PathBuf>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let found = std::process::Command::new("node")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI is set but node is not installed"
                );
                eprintln!("skipping: node is not installed");
                return None;
            }
            if !js_dir().join("node_modules/tus-js-client").exists() {
                let status = std::process::Command::new("npm")
                    .args(["install", "--no-audit", "--no-fund"])
                    .current_dir(js_dir())
                    .status()
                    .expect("npm runs");
                assert!(status.success(), "npm install in tests/js");
            }
            Some(PathBuf::from("node"))
        })
        .clone()
}

/// Runs the client; returns its JSON outcome.
async fn tus_js(endpoint: &str, token: &str, file: &[u8], extra: Value) -> Value {
    let node = node().expect("node");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("photo.jpg");
    std::fs::write(&path, file).expect("write the file");
    let mut opts = serde_json::json!({
        "endpoint": endpoint,
        "token": token,
        "file": path.display().to_string(),
    });
    if let (Some(o), Some(e)) = (opts.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let child = tokio::process::Command::new(node)
        .arg(js_dir().join("tus_upload.mjs"))
        .arg(opts.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the client finishes")
        .expect("node output");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| panic!("client output: {text}"))
}

async fn stored_sha(tus: &Tus<'_>) -> Vec<String> {
    tus.images()
        .await
        .iter()
        .filter_map(|i| i["sha256"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn tus_js_client_uploads_a_photo() {
    if node().is_none() {
        return;
    }
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let photo = jpeg(800, 600);
    let outcome = tus_js(&tus.endpoint(), &tus.token, &photo, serde_json::json!({})).await;
    assert_eq!(outcome["ok"], true, "{outcome}");
    assert_eq!(outcome["lastProgress"], photo.len() as u64);
    assert_eq!(
        stored_sha(&tus).await,
        vec![multipart_sha(&app, &photo).await]
    );
}

#[tokio::test]
async fn tus_js_client_resumes_after_a_cut_and_a_refusal() {
    if node().is_none() {
        return;
    }
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let photo = crate::tus::big_photo();
    let len = photo.len() as u64;
    let relay = Relay::start(
        app.http,
        RelayPlan {
            cut_at: vec![len * 2 / 5],
            refuse_for: Duration::from_millis(1500),
            rate: None,
        },
    )
    .await;
    let endpoint = relay.url(&format!("/v1/api/upload-sessions/{}/tus/", tus.identifier));
    let outcome = tus_js(&endpoint, &tus.token, photo, serde_json::json!({})).await;
    assert_eq!(outcome["ok"], true, "{outcome}");
    assert_eq!(relay.cuts(), 1);
    assert!(
        outcome["retries"].as_u64().is_some_and(|r| r >= 1),
        "{outcome}"
    );
    // Resumed, not restarted: the bytes before the cut were sent once.
    assert!(
        relay.sent() < len + len / 5,
        "{} bytes sent for a {len}-byte file",
        relay.sent()
    );
    assert_eq!(
        stored_sha(&tus).await,
        vec![multipart_sha(&app, photo).await]
    );
}

/// A JPEG of exactly `size` bytes: a small photo padded with comment segments, which the
/// cleaning strips (decoding stays cheap).
pub fn padded_jpeg(size: usize) -> Vec<u8> {
    let photo = jpeg(640, 480);
    let mut out = photo[..2].to_vec();
    let mut left = size - photo.len();
    while left > 0 {
        // A segment is its 4-byte head and payload; never leave less than a head's worth.
        let mut segment = left.min(65_000 + 4);
        if left - segment > 0 && left - segment < 4 {
            segment -= 4;
        }
        let payload = segment - 4;
        out.extend_from_slice(&[0xFF, 0xFE]);
        out.extend_from_slice(&((payload + 2) as u16).to_be_bytes());
        out.extend(std::iter::repeat_n(b'q', payload));
        left -= segment;
    }
    out.extend_from_slice(&photo[2..]);
    out
}

#[tokio::test]
async fn tus_js_client_sends_15_mib_over_a_throttled_link() {
    if node().is_none() {
        return;
    }
    let app = TestApp::spawn().await;
    let tus = Tus::new(&app).await;
    let file = padded_jpeg(15 << 20);
    assert_eq!(file.len(), 15 << 20);
    let relay = Relay::start(
        app.http,
        RelayPlan {
            rate: Some(6 << 20),
            ..Default::default()
        },
    )
    .await;
    let endpoint = relay.url(&format!("/v1/api/upload-sessions/{}/tus/", tus.identifier));
    let outcome = tus_js(
        &endpoint,
        &tus.token,
        &file,
        serde_json::json!({ "chunkSize": 4 << 20 }),
    )
    .await;
    assert_eq!(outcome["ok"], true, "{outcome}");
    assert_eq!(outcome["lastProgress"], file.len() as u64);
    let images = tus.images().await;
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["width"], 640);
}
