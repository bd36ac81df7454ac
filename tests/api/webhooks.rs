//! Webhooks against a real receiver in the test process: every event type signed, retries on
//! 5xx and on a receiver that hangs, delivery after a SIGKILL, two instances on PostgreSQL
//! delivering each event once, and the SSRF refusals at start-up and after DNS resolution.

mod receiver;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use qrupload::api::image::v1 as pb;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{
    faults::process::Server,
    helpers::{TestApp, config, jpeg},
};
use receiver::{Receiver, Reply, accepted};

/// The overrides that point an app at `url` with `secret`, short retries for the tests.
fn endpoint_vars(url: &str, secret: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "QRUPLOAD__WEBHOOKS__ENDPOINTS",
            json!([{ "url": url, "secret": secret }]).to_string(),
        ),
        ("QRUPLOAD__WEBHOOKS__ALLOW_INSECURE", "true".into()),
        ("QRUPLOAD__WEBHOOKS__RETRY_BASE", "100ms".into()),
    ]
}

async fn spawn_app(vars: &[(&'static str, String)]) -> TestApp {
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestApp::spawn_with(&pairs).await
}

fn types_for(received: &[receiver::Received], identifier: &str) -> Vec<String> {
    received
        .iter()
        .filter(|r| accepted(r))
        .filter(|r| {
            serde_json::from_slice::<Value>(&r.body)
                .is_ok_and(|b| b["session"]["identifier"] == identifier)
        })
        .map(|r| r.header("qrupload-event-type"))
        .collect()
}

/// Waits until the app's outbox holds no pending row. A row is deleted only after its 2xx, so
/// from then on the receiver has everything and no more attempts come.
async fn until_outbox_empty(app: &TestApp) {
    let url = format!("sqlite://{}/qrupload.db", app.dir.path().display());
    let db = qrupload::data::connect(&url, 1)
        .await
        .expect("the test database opens");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM webhook_outbox WHERE status = 'pending'",
            ))
            .await
            .expect("count")
            .expect("row");
        if row.try_get::<i64>("", "n").expect("n") == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the outbox did not drain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = db.close().await;
}

#[tokio::test]
async fn every_event_type_arrives_once_signed_in_order_with_the_rest_api_shapes() {
    const SECRET: &str = "whsec_every_event_type_4f1c";
    let hooks = Receiver::start(&[]).await;
    let mut vars = endpoint_vars(&hooks.url(), SECRET);
    vars.push(("QRUPLOAD__UPLOAD__RETENTION", "1s".into()));
    let app = spawn_app(&vars).await;

    // Arrange: a session through its whole life over HTTP.
    let (session, token) = app.create_session(7).await;
    let id = session["identifier"]
        .as_str()
        .expect("identifier")
        .to_owned();
    let info = app
        .client
        .get(app.url(&format!("/v1/api/upload-sessions/{id}/upload-info")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("upload-info");
    assert_eq!(info.status(), 200);
    let res = app
        .upload(
            &id,
            &token,
            vec![("a.jpg", jpeg(16, 16)), ("b.jpg", jpeg(24, 16))],
            None,
        )
        .await;
    assert_eq!(res.status(), 201);
    let uploaded: Value = res.json().await.expect("upload json");
    let image_ids: Vec<String> = uploaded["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect();
    // The phone deletes one, the member the other.
    let by_phone = app
        .client
        .delete(app.url(&format!(
            "/v1/api/upload-sessions/{id}/images/{}",
            image_ids[0]
        )))
        .bearer_auth(&token)
        .send()
        .await
        .expect("delete");
    assert_eq!(by_phone.status(), 204);
    let by_member = app
        .client
        .delete(app.url(&format!(
            "/v1/api/upload-sessions/{id}/images/{}?member_id=7",
            image_ids[1]
        )))
        .send()
        .await
        .expect("delete");
    assert_eq!(by_member.status(), 204);
    let rest_session: Value = app
        .client
        .get(app.url(&format!("/v1/api/upload-sessions/{id}?member_id=7")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("session json");
    // Completed twice: one event.
    for _ in 0..2 {
        app.client
            .post(app.url(&format!(
                "/v1/api/upload-sessions/{id}/complete?member_id=7"
            )))
            .send()
            .await
            .expect("complete");
    }

    // A second session expires with an image in it; the retention sweep then deletes it.
    let mut grpc = app.grpc_client().await;
    let short = grpc
        .create_upload_session(pb::CreateUploadSessionRequest {
            member_id: 8,
            ttl_seconds: Some(2),
            max_images: None,
        })
        .await
        .expect("create")
        .into_inner();
    let res = app
        .upload(
            &short.identifier,
            &short.upload_token,
            vec![("c.jpg", jpeg(8, 8))],
            None,
        )
        .await;
    assert_eq!(res.status(), 201);

    // Act + assert: the first session's events, in order.
    let expected = [
        "session.created",
        "session.scanned",
        "image.added",
        "image.added",
        "image.deleted",
        "image.deleted",
        "session.completed",
    ];
    hooks
        .until("the first session's events", |r| {
            types_for(r, &id).len() >= expected.len()
        })
        .await;
    hooks
        .until("the short session's expiry", |r| {
            types_for(r, &short.identifier).contains(&"session.expired".to_owned())
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // past retention (1 s)
    let swept = app
        .services
        .usecase
        .sweep_retention()
        .await
        .expect("retention sweep");
    assert_eq!(swept, 1, "the expired session is swept");
    // A later event marks the end: everything written before it is out by then.
    let (sentinel, _) = app.create_session(9).await;
    let sentinel = sentinel["identifier"].as_str().expect("id").to_owned();
    hooks
        .until("the sentinel", |r| !types_for(r, &sentinel).is_empty())
        .await;
    until_outbox_empty(&app).await;

    let received = hooks.received();
    assert_eq!(types_for(&received, &id), expected);
    assert_eq!(
        types_for(&received, &short.identifier),
        ["session.created", "image.added", "session.expired"],
        "a retention sweep sends no image.deleted"
    );
    assert!(
        received.iter().all(accepted),
        "no attempt failed, so none was repeated"
    );

    let mut ids = BTreeSet::new();
    let session_keys: BTreeSet<String> = rest_session
        .as_object()
        .expect("object")
        .keys()
        .filter(|k| *k != "upload_url")
        .cloned()
        .collect();
    for r in &received {
        let body = r.verified(SECRET);
        assert!(
            ids.insert(body["id"].as_str().expect("id").to_owned()),
            "ids are unique"
        );
        assert!(
            body["created_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        let keys: BTreeSet<String> = body["session"]
            .as_object()
            .expect("session")
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys, session_keys,
            "the REST API's session JSON, without upload_url"
        );
        let image_event = body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("image."));
        assert_eq!(body["image"].is_object(), image_event, "{body}");
        if image_event {
            assert!(
                body["image"]["url"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("/v1/api/images/"))
            );
        }
    }
    // The image events name the images, as the REST API does.
    let first: Vec<Value> = received
        .iter()
        .map(|r| r.verified(SECRET))
        .filter(|b| b["session"]["identifier"] == id.as_str())
        .collect();
    assert_eq!(first[2]["image"]["id"], image_ids[0].as_str());
    assert_eq!(first[3]["image"]["id"], image_ids[1].as_str());
    assert_eq!(first[4]["image"]["id"], image_ids[0].as_str());
    assert_eq!(first[5]["image"]["id"], image_ids[1].as_str());
    assert_eq!(first[2]["image"], uploaded["images"][0]);
    assert_eq!(first[1]["session"]["status"], "scanned");
    assert_eq!(first[6]["session"]["status"], "completed");
    assert_eq!(first[5]["session"]["image_count"], 0);

    assert_eq!(
        app.metric("qrupload_webhook_deliveries_total").await,
        received.len() as f64
    );
    assert_eq!(app.metric("qrupload_webhook_failures_total").await, 0.0);
    assert!(!crate::lifecycle::logs().contains(SECRET));
}

#[tokio::test]
async fn a_receiver_answering_500_twice_gets_the_event_three_times_with_one_id() {
    const SECRET: &str = "whsec_retry_500_b8e2";
    let hooks = Receiver::start(&[Reply::Status(500), Reply::Status(503)]).await;
    let app = spawn_app(&endpoint_vars(&hooks.url(), SECRET)).await;

    app.create_session(3).await;

    let received = hooks
        .until("a delivery after two failures", |r| r.iter().any(accepted))
        .await;
    assert_eq!(received.len(), 3);
    let ids: BTreeSet<String> = received.iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), 1, "one event id across attempts");
    let bodies: BTreeSet<Vec<u8>> = received.iter().map(|r| r.body.to_vec()).collect();
    assert_eq!(bodies.len(), 1, "the same body at every attempt");
    for r in &received {
        assert_eq!(r.verified(SECRET)["type"], "session.created");
    }
    until_outbox_empty(&app).await;
    assert_eq!(app.metric("qrupload_webhook_failures_total").await, 2.0);
    assert_eq!(app.metric("qrupload_webhook_retries_total").await, 2.0);
    assert_eq!(app.metric("qrupload_webhook_deliveries_total").await, 1.0);
    assert_eq!(app.metric("qrupload_webhook_dead_total").await, 0.0);
    assert!(!crate::lifecycle::logs().contains(SECRET));
}

#[tokio::test]
async fn a_receiver_that_hangs_times_out_and_gets_a_retry() {
    const SECRET: &str = "whsec_hang_77a0";
    let hooks = Receiver::start(&[Reply::Hang]).await;
    let mut vars = endpoint_vars(&hooks.url(), SECRET);
    vars.push(("QRUPLOAD__WEBHOOKS__TIMEOUT", "300ms".into()));
    let app = spawn_app(&vars).await;

    app.create_session(4).await;

    let received = hooks
        .until("a delivery after a hang", |r| r.iter().any(accepted))
        .await;
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].reply, Reply::Hang);
    assert_eq!(received[0].id(), received[1].id());
    received[1].verified(SECRET);
    assert_eq!(app.metric("qrupload_webhook_failures_total").await, 1.0);
}

#[tokio::test]
async fn a_redirect_is_a_failed_attempt_and_is_not_followed() {
    let hooks = Receiver::start(&[Reply::Redirect]).await;
    let app = spawn_app(&endpoint_vars(&hooks.url(), "whsec_redirect_c4a1")).await;

    app.create_session(13).await;

    let received = hooks
        .until("a delivery after the redirect", |r| r.iter().any(accepted))
        .await;
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].reply, Reply::Redirect);
    assert_eq!(received[0].id(), received[1].id());
    // Followed, the second request would have been part of the first attempt.
    assert_eq!(app.metric("qrupload_webhook_failures_total").await, 1.0);
}

#[tokio::test]
async fn events_past_max_age_are_dead_and_counted() {
    let hooks = Receiver::start(&[]).await;
    hooks.answer_otherwise(Reply::Status(500));
    let mut vars = endpoint_vars(&hooks.url(), "whsec_dead_1d2e");
    vars.push(("QRUPLOAD__WEBHOOKS__MAX_AGE", "1s".into()));
    let app = spawn_app(&vars).await;

    app.create_session(5).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    while app.metric("qrupload_webhook_dead_total").await < 1.0 {
        assert!(Instant::now() < deadline, "the event was not given up on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attempts = hooks.received().len();
    assert!(attempts >= 2, "retried before giving up: {attempts}");
    until_outbox_empty(&app).await;
    // Dead is final: no attempt after it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hooks.received().len(), attempts);
}

#[tokio::test]
async fn the_outbox_gauges_show_a_waiting_event_until_it_is_delivered() {
    let hooks = Receiver::start(&[]).await;
    hooks.answer_otherwise(Reply::Status(500));
    let app = spawn_app(&endpoint_vars(&hooks.url(), "whsec_gauges_0e9f")).await;

    app.create_session(12).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    while app.metric("qrupload_webhook_outbox_pending").await < 1.0
        || app
            .metric("qrupload_webhook_oldest_pending_age_seconds")
            .await
            <= 0.0
    {
        assert!(
            Instant::now() < deadline,
            "the gauges did not show the event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.metric("qrupload_webhook_outbox_pending").await, 1.0);
    hooks.answer_otherwise(Reply::Status(204));
    hooks
        .until("the delivery", |r| r.iter().any(accepted))
        .await;
    while app.metric("qrupload_webhook_outbox_pending").await > 0.0
        || app
            .metric("qrupload_webhook_oldest_pending_age_seconds")
            .await
            > 0.0
    {
        assert!(
            Instant::now() < deadline,
            "the gauges did not return to zero"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_event_committed_before_a_sigkill_is_delivered_after_restart_and_no_log_has_the_secret()
{
    const SECRET: &str = "whsec_sigkill_never_logged_93ad";
    let hooks = Receiver::start(&[]).await;
    hooks.answer_otherwise(Reply::Status(503));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut vars = endpoint_vars(&hooks.url(), SECRET);
    vars.push(("QRUPLOAD__LOG__LEVEL", "debug".into()));
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // The change commits (201), the receiver refuses it, the process dies with no cleanup.
    let mut first = Server::start(dir.path(), &pairs).await;
    let client = reqwest::Client::new();
    let res = client
        .post(first.url("/v1/api/upload-sessions"))
        .json(&json!({ "member_id": 11 }))
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 201);
    let identifier = res.json::<Value>().await.expect("json")["identifier"]
        .as_str()
        .expect("identifier")
        .to_owned();
    hooks.until("a refused attempt", |r| !r.is_empty()).await;
    first.kill();
    let refused = hooks.received();
    assert!(!refused.iter().any(accepted));
    let event_id = refused[0].id();

    // After restart, the same event arrives.
    hooks.answer_otherwise(Reply::Status(200));
    let second = Server::start(dir.path(), &pairs).await;
    let received = hooks
        .until("the delivery after restart", |r| r.iter().any(accepted))
        .await;
    let delivered = received.iter().find(|r| accepted(r)).expect("delivered");
    assert_eq!(delivered.id(), event_id);
    let body = delivered.verified(SECRET);
    assert_eq!(body["session"]["identifier"], identifier.as_str());
    assert_eq!(body["type"], "session.created");

    // SIGTERM still stops promptly with the dispatcher running.
    let mut second = second;
    second.terminate();
    assert!(second.wait_exit(Duration::from_secs(30)).await.success());
    for output in [first.output(), second.output()] {
        assert!(output.contains("webhook attempt failed") || output.contains("serving"));
        assert!(
            !output.contains(SECRET),
            "the secret is in a log:\n{output}"
        );
    }
    assert!(first.output().contains("webhook attempt failed"));
}

/// A fresh PostgreSQL database: required when `QRUPLOAD_TEST_POSTGRES_URL` is set.
async fn postgres_database() -> Option<String> {
    let Ok(url) = std::env::var("QRUPLOAD_TEST_POSTGRES_URL") else {
        eprintln!("skipping: set QRUPLOAD_TEST_POSTGRES_URL to run the two-instance test");
        return None;
    };
    let admin = qrupload::data::connect(&url, 1)
        .await
        .unwrap_or_else(|e| panic!("QRUPLOAD_TEST_POSTGRES_URL is set but unreachable: {e}"));
    let name = format!(
        "qrupload_w_{}",
        qrupload::biz::new_id().to_lowercase().replace('-', "_")
    );
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let _ = admin.close().await;
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    Some(format!("{base}/{name}"))
}

#[tokio::test]
async fn two_instances_on_postgres_deliver_every_event_exactly_once() {
    const SECRET: &str = "whsec_two_instances_5c3b";
    const SESSIONS: usize = 30;
    let Some(database) = postgres_database().await else {
        return;
    };
    let hooks = Receiver::start(&[]).await;
    let mut vars = endpoint_vars(&hooks.url(), SECRET);
    vars.push(("QRUPLOAD__DATA__DATABASE__URL", database.clone()));
    let a = spawn_app(&vars).await;
    let b = spawn_app(&vars).await;

    // Sessions made and completed on both instances at once: two events each, many rows due
    // together, so both dispatchers claim side by side.
    let work = (0..SESSIONS).map(|n| {
        let app = if n % 2 == 0 { &a } else { &b };
        async move {
            let member = 20 + n as u32;
            let (session, _) = app.create_session(member).await;
            let id = session["identifier"].as_str().expect("id").to_owned();
            let res = app
                .client
                .post(app.url(&format!(
                    "/v1/api/upload-sessions/{id}/complete?member_id={member}"
                )))
                .send()
                .await
                .expect("complete");
            assert_eq!(res.status(), 200);
        }
    });
    futures::future::join_all(work).await;
    hooks
        .until("every event", |r| {
            r.iter().map(|r| r.id()).collect::<BTreeSet<_>>().len() >= 2 * SESSIONS
        })
        .await;
    // Once the outbox is empty, nothing more can be sent: the count is final.
    let db = qrupload::data::connect(&database, 1)
        .await
        .expect("connect");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM webhook_outbox",
            ))
            .await
            .expect("count")
            .expect("row");
        if row.try_get::<i64>("", "n").expect("n") == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the outbox did not drain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let received = hooks.received();
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for r in &received {
        r.verified(SECRET);
        *per_id.entry(r.id()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 2 * SESSIONS);
    assert!(
        per_id.values().all(|n| *n == 1),
        "an event was delivered twice: {per_id:?}"
    );
    let (delivered_a, delivered_b) = (
        a.metric("qrupload_webhook_deliveries_total").await,
        b.metric("qrupload_webhook_deliveries_total").await,
    );
    // Printed, not asserted: two instances may each claim one of a session's events in the
    // same instant, so order across instances is best effort.
    let mut completed_first = 0;
    let mut seen = BTreeSet::new();
    for r in &received {
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        let session = body["session"]["identifier"].to_string();
        if body["type"] == "session.completed" && !seen.contains(&session) {
            completed_first += 1;
        }
        seen.insert(session);
    }
    eprintln!(
        "deliveries: instance a {delivered_a}, instance b {delivered_b}; \
         sessions whose completed arrived before created: {completed_first}"
    );
    assert_eq!(delivered_a + delivered_b, (2 * SESSIONS) as f64);
    assert_eq!(a.metric("qrupload_webhook_failures_total").await, 0.0);
    assert_eq!(b.metric("qrupload_webhook_failures_total").await, 0.0);
}

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
    let c = config(
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
    let endpoints =
        json!([{ "url": format!("https://localhost:{port}/hook"), "secret": "s" }]).to_string();
    let app = TestApp::spawn_with(&[
        ("QRUPLOAD__WEBHOOKS__ENDPOINTS", &endpoints),
        ("QRUPLOAD__WEBHOOKS__RETRY_BASE", "100ms"),
    ])
    .await;

    app.create_session(6).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    while app.metric("qrupload_webhook_failures_total").await < 2.0 {
        assert!(Instant::now() < deadline, "the attempts did not fail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0);
    assert_eq!(app.metric("qrupload_webhook_deliveries_total").await, 0.0);
    assert!(crate::lifecycle::logs().contains("resolves to no public address"));
}
