//! Faults, and proof that nothing is lost: PostgreSQL stopping and coming back during
//! uploads, the server killed with SIGKILL mid-upload, the blob store failing a write, SIGTERM
//! with 1,000 open SSE streams, and secrets kept out of debug logs. Each ends by checking the
//! rows against the blobs: every image row has its blobs, every blob has its row.

mod postgres;
mod secrets;
mod wire;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

use futures::StreamExt;
use qrupload::conf::{Config, Secret};
use sea_orm::EntityTrait;
use serde_json::Value;

use crate::helpers::{TestApp, jpeg, process::Server};
use postgres::{OwnPostgres, hold_commits};
use wire::{
    End, PATIENCE, RawUpload, Watcher, assert_consistent, blob_files, eventually, stored_blobs,
    token_of, upload, within,
};

/// What a 5xx answer may say: the fixed messages of SPEC.md, never a cause.
const SAFE_5XX_MESSAGES: [&str; 2] = ["service unavailable, try again", "internal error"];

async fn create_session(client: &reqwest::Client, base: &str, member_id: u32) -> Value {
    let res = within(
        "create session",
        client
            .post(format!("{base}/v1/api/upload-sessions"))
            .json(&serde_json::json!({ "member_id": member_id }))
            .send(),
    )
    .await
    .expect("create session");
    assert_eq!(res.status(), 201);
    res.json().await.expect("session JSON")
}

fn identifier(session: &Value) -> String {
    session["identifier"]
        .as_str()
        .expect("identifier")
        .to_owned()
}

/// The ids of a 201 upload answer.
async fn uploaded_ids(res: reqwest::Response) -> Vec<String> {
    assert_eq!(res.status(), 201, "upload");
    let body: Value = res.json().await.expect("upload JSON");
    body["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect()
}

/// A 5xx error JSON in SPEC.md's shape, with no internal detail.
fn assert_opaque_5xx(status: u16, body: &Value) {
    assert!(
        (500..600).contains(&status),
        "a 5xx answer, got {status}: {body}"
    );
    assert_eq!(body["code"], status, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        SAFE_5XX_MESSAGES.contains(&message),
        "the message carries no internal detail: {body}"
    );
}

/// 503 `UNAVAILABLE` with `Retry-After`, nothing more said.
async fn assert_unavailable(what: &str, res: reqwest::Result<reqwest::Response>) {
    let res = res.unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = res.status().as_u16();
    assert!(
        res.headers().contains_key("retry-after"),
        "{what}: Retry-After"
    );
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("UNAVAILABLE")),
        "{what}: {body}"
    );
    assert_opaque_5xx(status, &body);
}

async fn session_image_count(client: &reqwest::Client, base: &str, session: &Value) -> u64 {
    let url = format!(
        "{base}/v1/api/upload-sessions/{}?member_id={}",
        identifier(session),
        session["member_id"]
    );
    let res = within("session read", client.get(url).send())
        .await
        .expect("session read");
    assert_eq!(res.status(), 200, "session read");
    let body: Value = res.json().await.expect("session JSON");
    body["image_count"].as_u64().expect("image_count")
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}/qrupload.db?mode=rwc", dir.display())
}

/// An app on [`crate::helpers::config`] as `edit` changes it, with a session of member 1
/// holding one image: where each fault in the app's own process begins.
struct OneImage {
    app: TestApp,
    session: Value,
    id: String,
    token: String,
    /// The app's base URL.
    base: String,
    /// Its blob root.
    root: PathBuf,
}

impl OneImage {
    async fn start(edit: impl FnOnce(&mut Config)) -> OneImage {
        let app = TestApp::spawn_with(edit).await;
        let base = app.url("");
        let root = app.dir.path().join("blobs");
        let (session, token) = app.create_session(1).await;
        let id = identifier(&session);
        uploaded_ids(upload(&app.client, &base, &id, &token, vec![jpeg(40, 30)]).await).await;
        OneImage {
            app,
            session,
            id,
            token,
            base,
            root,
        }
    }

    /// On the database at `url`, answering 503 within a second of it going away.
    async fn on_postgres(url: &str) -> OneImage {
        OneImage::start(|c| {
            c.data.database.url = Secret::new(url);
            c.data.database.acquire_timeout = Duration::from_secs(1);
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopping_answers_503_fast_and_leaves_no_half_rows() {
    let Some(pg) = OwnPostgres::start() else {
        return;
    };
    let url = pg.url();
    let OneImage {
        app,
        session,
        id,
        token,
        base,
        root,
    } = OneImage::on_postgres(&url).await;

    // An upload whose first file is stored when the database stops: the rows cannot be
    // written, the answer is 503 and the blobs already written are deleted.
    let raw = RawUpload::start(app.http, &id, &token, &[jpeg(41, 30), jpeg(42, 30)]).await;
    eventually("the first file's blobs are written", || {
        stored_blobs(&root) == 4
    })
    .await;
    tokio::task::block_in_place(|| pg.stop_server());
    let (status, body) = raw.finish().await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("UNAVAILABLE")),
        "{body}"
    );
    assert_opaque_5xx(status, &body);
    eventually("the failed upload's blobs are deleted", || {
        blob_files(&root).len() == 2
    })
    .await;

    // While it is down, whatever needs it answers 503 within the acquire timeout: no hang.
    let session_url = format!("{base}/v1/api/upload-sessions/{id}?member_id=1");
    let events_url =
        format!("{base}/v1/api/sse/events?event=upload_by_qr&member_id=1&identifier={id}");
    let mut form = reqwest::multipart::Form::new();
    form = form.part("file", reqwest::multipart::Part::bytes(jpeg(43, 30)));
    let c = &app.client;
    assert_unavailable(
        "upload",
        within(
            "upload",
            c.post(format!("{base}/v1/api/upload-sessions/{id}/images"))
                .bearer_auth(&token)
                .multipart(form)
                .send(),
        )
        .await,
    )
    .await;
    assert_unavailable(
        "session read",
        within("session read", c.get(&session_url).send()).await,
    )
    .await;
    assert_unavailable(
        "session create",
        within(
            "session create",
            c.post(format!("{base}/v1/api/upload-sessions"))
                .json(&serde_json::json!({ "member_id": 1 }))
                .send(),
        )
        .await,
    )
    .await;
    assert_unavailable(
        "SSE connect",
        within("SSE connect", c.get(&events_url).send()).await,
    )
    .await;
    let ready = within("readyz", c.get(format!("{base}/readyz")).send())
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503, "not ready without a database");
    assert_eq!(blob_files(&root).len(), 2, "nothing written meanwhile");

    // Back: the same app serves again, without a restart.
    tokio::task::block_in_place(|| pg.start_server());
    let ids = uploaded_ids(upload(c, &base, &id, &token, vec![jpeg(44, 30)]).await).await;
    assert_eq!(ids.len(), 1);
    assert_eq!(session_image_count(c, &base, &session).await, 2);
    let mut watcher = Watcher::connect(c, &events_url, None).await;
    within("a snapshot with both images", async {
        while watcher.latest.len() != 2 {
            watcher.next().await.expect("snapshot");
        }
    })
    .await;
    let db = qrupload::data::connect(&url, 1)
        .await
        .expect("connect to the test cluster");
    assert_consistent(&db, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopping_during_a_commit_answers_503_and_keeps_nothing() {
    let Some(pg) = OwnPostgres::start() else {
        return;
    };
    let url = pg.url();
    let OneImage {
        app,
        session,
        id,
        token,
        base,
        root,
    } = OneImage::on_postgres(&url).await;

    // The server shuts down while the upload's COMMIT waits: PostgreSQL ends the session
    // and rolls the transaction back, so the answer is 503 and the blobs go.
    let gate = hold_commits(&url).await;
    let mut raw = RawUpload::start(app.http, &id, &token, &[jpeg(41, 30), jpeg(42, 30)]).await;
    raw.send_rest().await;
    gate.until_a_commit_waits().await;
    tokio::task::block_in_place(|| pg.stop_server());
    let (status, body) = raw.answer().await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("UNAVAILABLE")),
        "{body}"
    );
    assert_opaque_5xx(status, &body);
    eventually("the rolled-back upload's blobs are deleted", || {
        blob_files(&root).len() == 2
    })
    .await;
    drop(gate);

    tokio::task::block_in_place(|| pg.start_server());
    assert_eq!(session_image_count(&app.client, &base, &session).await, 1);
    let db = qrupload::data::connect(&url, 1)
        .await
        .expect("connect to the test cluster");
    assert_consistent(&db, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_during_the_commit_leaves_no_row_without_its_blobs() {
    let Some(pg) = OwnPostgres::start() else {
        return;
    };
    let url = pg.url();
    let OneImage {
        app,
        id,
        token,
        root,
        ..
    } = OneImage::start(|c| c.data.database.url = Secret::new(url.as_str())).await;

    // The phone's connection drops while the COMMIT is on its way: the server cancels the
    // request, yet the database still commits the rows. Their blobs must still be there.
    let gate = hold_commits(&url).await;
    let mut raw = RawUpload::start(app.http, &id, &token, &[jpeg(41, 30), jpeg(42, 30)]).await;
    raw.send_rest().await;
    gate.until_a_commit_waits().await;
    drop(raw);
    eventually("the server cancels the request", || {
        crate::helpers::logs::logs()
            .lines()
            .any(|l| l.contains("upload stopped during its commit") && l.contains(&id))
    })
    .await;
    gate.open().await;
    let db = qrupload::data::connect(&url, 1)
        .await
        .expect("connect to the test cluster");
    within("the held COMMIT lands", async {
        while qrupload::data::entity::image::Entity::find()
            .all(&db)
            .await
            .expect("image rows")
            .len()
            < 3
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_consistent(&db, &root).await;
    assert_eq!(
        app.services
            .usecase
            .sweep_orphans(Duration::ZERO)
            .await
            .expect("orphan sweep"),
        0,
        "blobs with rows are not orphans"
    );
}

#[tokio::test]
async fn sigkill_mid_upload_leaves_no_row_and_the_orphan_blobs_are_swept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("blobs");
    let client = reqwest::Client::new();
    let mut server = Server::start(dir.path(), &[]).await;
    let base = server.url("");
    let session = create_session(&client, &base, 1).await;
    let (id, token) = (identifier(&session), token_of(&session));
    let kept = uploaded_ids(upload(&client, &base, &id, &token, vec![jpeg(40, 30)]).await).await;

    // Two files: the first is stored, the second still arriving, when the process dies.
    let _raw = RawUpload::start(server.http, &id, &token, &[jpeg(41, 30), jpeg(42, 30)]).await;
    eventually("the first file's blobs are written", || {
        stored_blobs(&root) == 4
    })
    .await;
    server.kill();
    assert_eq!(stored_blobs(&root), 4, "the killed request's blobs remain");

    // Restarted on the same folder, sweeping orphans of any age from start-up.
    let server = Server::start(dir.path(), &[("QRUPLOAD__UPLOAD__ORPHAN_MIN_AGE", "0s")]).await;
    let base = server.url("");
    eventually("the orphan blobs are swept", || {
        blob_files(&root).len() == 2
    })
    .await;
    let db = qrupload::data::connect(&sqlite_url(dir.path()), 1)
        .await
        .expect("open the database");
    assert_consistent(&db, &root).await;
    assert_eq!(session_image_count(&client, &base, &session).await, 1);

    // The finished upload is whole, and the session takes uploads again.
    let res = within(
        "kept image",
        client
            .get(format!("{base}/v1/api/images/{}", kept[0]))
            .send(),
    )
    .await
    .expect("get image");
    assert_eq!(res.status(), 200);
    uploaded_ids(upload(&client, &base, &id, &token, vec![jpeg(43, 30)]).await).await;
    assert_eq!(session_image_count(&client, &base, &session).await, 2);
    assert_consistent(&db, &root).await;
}

#[tokio::test]
async fn a_failing_blob_store_answers_5xx_keeps_no_row_and_recovers() {
    let OneImage {
        app,
        session,
        id,
        token,
        base,
        root,
    } = OneImage::start(|_| {}).await;
    let away = app.dir.path().join("blobs.away");

    // The store breaks between the two files of one upload: its root becomes a plain file, so
    // the second file's write fails (and so does deleting the first file's blobs).
    let raw = RawUpload::start(app.http, &id, &token, &[jpeg(41, 30), jpeg(42, 30)]).await;
    eventually("the first file's blobs are written", || {
        stored_blobs(&root) == 4
    })
    .await;
    std::fs::rename(&root, &away).expect("move the blob root away");
    std::fs::write(&root, b"not a folder").expect("a file in its place");
    let (status, body) = raw.finish().await;
    assert_opaque_5xx(status, &body);

    // Meanwhile uploads fail the same way; everything else works, and readiness says why.
    let res = upload(&app.client, &base, &id, &token, vec![jpeg(43, 30)]).await;
    let status = res.status().as_u16();
    assert_opaque_5xx(status, &res.json().await.unwrap_or(Value::Null));
    let c = &app.client;
    let health = within("healthz", c.get(format!("{base}/healthz")).send())
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let ready = within("readyz", c.get(format!("{base}/readyz")).send())
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503, "not ready while the blob store fails");
    assert_eq!(session_image_count(c, &base, &session).await, 1, "no row");

    // The fault goes away. Blobs the failed request could not delete are orphans: no row
    // points at them, and the sweep removes them.
    std::fs::remove_file(&root).expect("remove the file");
    std::fs::rename(&away, &root).expect("restore the blob root");
    let ready = within("readyz", c.get(format!("{base}/readyz")).send())
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    app.services
        .usecase
        .sweep_orphans(Duration::ZERO)
        .await
        .expect("orphan sweep");
    let db = qrupload::data::connect(&sqlite_url(app.dir.path()), 1)
        .await
        .expect("open the database");
    assert_consistent(&db, &root).await;
    assert_eq!(blob_files(&root).len(), 2);

    uploaded_ids(upload(c, &base, &id, &token, vec![jpeg(44, 30)]).await).await;
    assert_eq!(session_image_count(c, &base, &session).await, 2);
    assert_consistent(&db, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_1000_streams_in_time_and_resuming_clients_miss_no_image() {
    const SESSIONS: usize = 10;
    const WATCHERS_PER_SESSION: usize = 100;
    // Client and server sockets: 1,000 of each, twice over.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::tempdir().expect("temp dir");
    // A thousand streams from one address: the per-address stream cap is not under test.
    let unlimited = [
        ("QRUPLOAD__SERVER__SHUTDOWN_GRACE", "3s"),
        ("QRUPLOAD__LIMITS__STREAMS_PER_IP", "0"),
        ("QRUPLOAD__LIMITS__STREAMS_PER_MEMBER", "0"),
    ];
    let mut server = Server::start(dir.path(), &unlimited).await;
    let port = server.http.port();
    let client = reqwest::Client::new();
    let base = server.url("");

    // Ten sessions with one image each; every image ever uploaded is recorded per session.
    let mut sessions = Vec::new();
    let mut uploaded: Vec<BTreeSet<String>> = Vec::new();
    for member in 0..SESSIONS as u32 {
        let session = create_session(&client, &base, member).await;
        let (id, token) = (identifier(&session), token_of(&session));
        let ids = uploaded_ids(upload(&client, &base, &id, &token, vec![jpeg(20, 20)]).await).await;
        uploaded.push(ids.into_iter().collect());
        sessions.push((id, token));
    }
    let events_urls: Vec<String> = sessions
        .iter()
        .enumerate()
        .map(|(member, (id, _))| {
            format!("/v1/api/sse/events?event=upload_by_qr&member_id={member}&identifier={id}")
        })
        .collect();

    // 1,000 watchers, each past its first snapshot.
    let mut watchers: Vec<(usize, Watcher)> = within(
        "1,000 watchers connect",
        futures::stream::iter(0..SESSIONS * WATCHERS_PER_SESSION)
            .map(|n| {
                let s = n % SESSIONS;
                let (client, url, want) =
                    (&client, format!("{base}{}", events_urls[s]), &uploaded[s]);
                async move {
                    let mut w = Watcher::connect(client, &url, None).await;
                    w.until_latest_holds(want).await;
                    (s, w)
                }
            })
            .buffer_unordered(64)
            .collect(),
    )
    .await;

    // One more image per session, then SIGTERM at once: some watchers may not have read it.
    for (s, (id, token)) in sessions.iter().enumerate() {
        let ids = uploaded_ids(upload(&client, &base, id, token, vec![jpeg(21, 20)]).await).await;
        uploaded[s].extend(ids);
    }
    server.terminate();
    let ends = within(
        "every stream ends",
        futures::future::join_all(watchers.iter_mut().map(|(_, w)| w.until_end())),
    )
    .await;
    let broken = ends.iter().filter(|e| **e != End::Closed).count();
    assert_eq!(broken, 0, "every stream was ended by the server, none cut");
    let status = server.wait_exit(PATIENCE).await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let output = server.output();
    assert!(
        !output.contains("drain time over"),
        "everything closed within server.shutdown_grace:\n{output}"
    );

    // Restarted on the same database, blobs and port.
    let addr = format!("127.0.0.1:{port}");
    let mut again = unlimited.to_vec();
    again.push(("QRUPLOAD__SERVER__HTTP__ADDR", &addr));
    let server = Server::start(dir.path(), &again).await;
    let base = server.url("");
    let client = reqwest::Client::new();
    // Half the sessions change while their watchers are away.
    for (s, (id, token)) in sessions.iter().enumerate().take(SESSIONS / 2) {
        let ids = uploaded_ids(upload(&client, &base, id, token, vec![jpeg(22, 20)]).await).await;
        uploaded[s].extend(ids);
    }
    // Every client comes back with its Last-Event-ID, as EventSource does.
    let resumed: Vec<(usize, u64, Watcher, BTreeSet<String>)> = within(
        "1,000 watchers reconnect",
        futures::stream::iter(watchers)
            .map(|(s, old)| {
                let (client, url) = (&client, format!("{base}{}", events_urls[s]));
                async move {
                    let last = old.last_event_id.clone().expect("an event id was seen");
                    let w = Watcher::connect(client, &url, Some(&last)).await;
                    (s, last.parse::<u64>().expect("numeric id"), w, old.seen)
                }
            })
            .buffer_unordered(64)
            .collect(),
    )
    .await;
    // And every session changes once more.
    for (s, (id, token)) in sessions.iter().enumerate() {
        let ids = uploaded_ids(upload(&client, &base, id, token, vec![jpeg(23, 20)]).await).await;
        uploaded[s].extend(ids);
    }
    let uploaded = &uploaded;
    within(
        "every watcher sees every image",
        futures::future::join_all(resumed.into_iter().map(
            |(s, last, mut w, seen_before)| async move {
                // Resuming sends nothing the client already has.
                let first = w.next().await.expect("an event after resuming");
                let id: u64 = first
                    .id
                    .as_deref()
                    .and_then(|i| i.parse().ok())
                    .expect("id");
                assert!(id > last, "resumed at {last}, then got {id}");
                w.until_latest_holds(&uploaded[s]).await;
                let all: BTreeSet<String> = seen_before.union(&w.seen).cloned().collect();
                assert!(all.is_superset(&uploaded[s]), "no image missed");
            },
        )),
    )
    .await;
    let db = qrupload::data::connect(&sqlite_url(dir.path()), 1)
        .await
        .expect("open the database");
    assert_consistent(&db, &dir.path().join("blobs")).await;
}
