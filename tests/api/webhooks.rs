//! Webhooks against a real receiver in the test process: every event type signed and in
//! order, retries on 5xx, on a receiver that hangs and on a redirect, dead after max_age, and
//! the outbox gauges. A SIGKILL and two instances: `durability`; the SSRF guard: `ssrf`.

mod durability;
mod receiver;
mod ssrf;

use std::{collections::BTreeSet, time::Duration};

use qrupload::conf::{Config, EndpointConf, Secret};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::helpers::{Caller, TestApp, jpeg};
use receiver::{Receiver, Reply, accepted};

/// The variables that point the binary at `url` with `secret`, short retries for the tests.
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

/// Points `c` at the receiver at `url` with `secret`, with short retries.
fn deliver_to(c: &mut Config, url: &str, secret: &str) {
    c.webhooks.endpoints = vec![EndpointConf {
        url: url.to_owned(),
        secret: Secret::new(secret),
        events: None,
    }];
    c.webhooks.allow_insecure = true;
    c.webhooks.retry_base = Duration::from_millis(100);
}

/// An app pointed at `url` with `secret` and short retries, then as `edit` changes it.
async fn spawn_app(url: &str, secret: &str, edit: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(|c| {
        deliver_to(c, url, secret);
        edit(c);
    })
    .await
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
    until_none(
        &url,
        "SELECT COUNT(*) AS n FROM webhook_outbox WHERE status = 'pending'",
    )
    .await;
}

/// Waits until `count` (a `SELECT COUNT(*) AS n …`) on the database at `url` gives 0.
async fn until_none(url: &str, count: &str) {
    let db = qrupload::data::connect(url, 1)
        .await
        .expect("the test database opens");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), count))
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
    let app = spawn_app(&hooks.url(), SECRET, |c| {
        c.upload.retention = Duration::from_secs(1);
    })
    .await;

    // Arrange: a session through its whole life over HTTP.
    let (id, token) = app.open_session(7).await;
    assert_eq!(app.upload_info(&id, &token).await.status(), 200);
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
        .delete_image(&id, &image_ids[0], Caller::Phone(&token))
        .await;
    assert_eq!(by_phone.status(), 204);
    let by_member = app
        .delete_image(&id, &image_ids[1], Caller::Member(7))
        .await;
    assert_eq!(by_member.status(), 204);
    let rest_session: Value = app
        .get_session(&id, 7)
        .await
        .json()
        .await
        .expect("session json");
    // Completed twice: one event.
    for _ in 0..2 {
        app.complete(&id, 7).await;
    }

    // A second session expires with an image in it; the retention sweep then deletes it.
    let short = app.grpc_session(8, Some(2)).await;
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
    assert!(!crate::helpers::logs::logs().contains(SECRET));
}

#[tokio::test]
async fn a_receiver_answering_500_twice_gets_the_event_three_times_with_one_id() {
    const SECRET: &str = "whsec_retry_500_b8e2";
    let hooks = Receiver::start(&[Reply::Status(500), Reply::Status(503)]).await;
    let app = spawn_app(&hooks.url(), SECRET, |_| {}).await;

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
    assert!(!crate::helpers::logs::logs().contains(SECRET));
}

#[tokio::test]
async fn a_receiver_that_hangs_times_out_and_gets_a_retry() {
    const SECRET: &str = "whsec_hang_77a0";
    let hooks = Receiver::start(&[Reply::Hang]).await;
    let app = spawn_app(&hooks.url(), SECRET, |c| {
        c.webhooks.timeout = Duration::from_millis(300);
    })
    .await;

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
    let app = spawn_app(&hooks.url(), "whsec_redirect_c4a1", |_| {}).await;

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
    let app = spawn_app(&hooks.url(), "whsec_dead_1d2e", |c| {
        c.webhooks.max_age = Duration::from_secs(1);
    })
    .await;

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
    let app = spawn_app(&hooks.url(), "whsec_gauges_0e9f", |_| {}).await;

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

/// The receiver helper in README.md, run as written against a real delivery: it accepts the
/// signature, and refuses a changed body and a stale timestamp.
#[tokio::test]
async fn the_readme_receiver_helper_verifies_a_real_delivery() {
    const SECRET: &str = "whsec_readme_helper_2a7e";
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: python3 is not installed");
        return;
    }
    let readme = include_str!("../../README.md");
    let helper = readme
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has a python block");
    let hooks = Receiver::start(&[]).await;
    let app = spawn_app(&hooks.url(), SECRET, |_| {}).await;
    app.create_session(14).await;
    let received = hooks.until("a delivery", |r| r.iter().any(accepted)).await;
    let delivery = &received[0];
    let header = delivery.header("qrupload-signature");
    let t: i64 = header
        .trim_start_matches("t=")
        .split(',')
        .next()
        .and_then(|t| t.parse().ok())
        .expect("t");
    let stale = header.replacen(&format!("t={t}"), &format!("t={}", t - 301), 1);

    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("body"), &delivery.body).expect("body");
    let script = format!(
        "{helper}\nimport sys\nbody = open(sys.argv[1], 'rb').read()\n\
         print(verify({SECRET:?}, {header:?}, body), verify({SECRET:?}, {header:?}, body + b' '), \
         verify({SECRET:?}, {stale:?}, body))\n"
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(dir.path().join("body"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "True False False"
    );
}
