//! The phone's resumable queue in Chromium: a 5 MB photo whose TCP connection is cut mid-file
//! and then refused for a few seconds completes without a click, while the desktop shows its
//! progress and then its tile; and a reload mid-queue finishes every photo exactly once.
//!
//! The phone reaches the app through [`Relay`]: Chromium's offline emulation lets a request
//! already in flight finish, so the cut is made on the TCP connection itself.

use std::{path::Path, time::Duration};

use crate::{
    cdp::{Browser, CHROMIUM},
    helpers::TestApp,
    relay::{Relay, RelayPlan},
    tus_js::padded_jpeg,
};

const WAIT: Duration = Duration::from_secs(10);
const LONG: Duration = Duration::from_secs(40);
const TILES: &str = "document.querySelectorAll('#grid .tile[data-image-id]')";
const PHOTOS: &str = "document.querySelectorAll('#photos .photo[data-image-id]')";

fn chromium() -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    assert!(
        std::env::var_os("QRUPLOAD_TEST_BROWSER").is_none(),
        "QRUPLOAD_TEST_BROWSER is set but {CHROMIUM} is missing"
    );
    eprintln!("skipping: {CHROMIUM} is missing");
    false
}

/// The desktop page on the app, showing a fresh session; returns its upload path.
async fn desktop_session(desktop: &crate::cdp::Page<'_>, app: &TestApp) -> String {
    desktop.goto(&app.url("/")).await;
    desktop
        .wait_for(
            "(document.querySelector('#upload-url').getAttribute('href') || '').includes('#t=')",
            WAIT,
            "the desktop shows the upload link",
        )
        .await;
    let href = desktop
        .eval("document.querySelector('#upload-url').href")
        .await;
    let href = href.as_str().expect("href").to_owned();
    let at = href.find("/m/").expect("an upload path");
    href[at..].to_owned()
}

async fn phone_ready(phone: &crate::cdp::Page<'_>) {
    phone
        .wait_for(
            "!document.querySelector('#file').disabled && /photos left/.test(document.querySelector('#quota').textContent)",
            WAIT,
            "the phone is ready to upload",
        )
        .await;
}

#[tokio::test]
async fn a_photo_cut_mid_file_and_refused_for_seconds_completes_by_itself() {
    if !chromium() {
        return;
    }
    let app = TestApp::spawn().await;
    let relay = Relay::start(app.http, RelayPlan::default()).await;
    let browser = Browser::launch().await;
    let desktop = browser.new_page(1280, 800, false).await;
    let path = desktop_session(&desktop, &app).await;
    let phone = browser.new_page(390, 844, true).await;
    phone.goto(&relay.url(&path)).await;
    phone_ready(&phone).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let photo = dir.path().join("big.jpg");
    std::fs::write(&photo, padded_jpeg(5_000_000)).expect("write the photo");
    // Cut the phone's connection 2.5 MB into the file and refuse it for three seconds.
    relay.set_plan(RelayPlan {
        cut_at: vec![relay.sent() + 2_500_000],
        refuse_for: Duration::from_secs(3),
        rate: Some(4_000_000),
    });
    phone.set_input_files("#file", &[&photo]).await;

    // While it uploads the desktop shows the upload in flight.
    desktop
        .wait_for(
            "/uploading 1 of 1/.test(document.querySelector('.progress-line')?.textContent || '') && document.querySelectorAll('#grid .tile-pending').length === 1",
            LONG,
            "the desktop shows the upload in flight",
        )
        .await;
    phone
        .wait_for(
            "document.querySelector('#uploads .upload')?.dataset.state === 'done'",
            LONG,
            "the upload finishes on the phone without a click",
        )
        .await;
    assert_eq!(relay.cuts(), 1, "the connection was cut once");
    desktop
        .wait_for(
            &format!("{TILES}.length === 1 && document.querySelectorAll('#grid .tile-pending').length === 0"),
            WAIT,
            "the desktop swaps the placeholder for the photo",
        )
        .await;
    assert!(
        relay.sent() < 5_000_000 + 2_500_000,
        "resumed, not restarted: {} bytes through the relay",
        relay.sent()
    );
    assert_eq!(app.metric("qrupload_tus_uploads_finished_total").await, 1.0);
}

#[tokio::test]
async fn a_reload_mid_queue_finishes_each_photo_exactly_once() {
    if !chromium() {
        return;
    }
    let app = TestApp::spawn().await;
    let relay = Relay::start(app.http, RelayPlan::default()).await;
    let browser = Browser::launch().await;
    let desktop = browser.new_page(1280, 800, false).await;
    let path = desktop_session(&desktop, &app).await;
    let phone = browser.new_page(390, 844, true).await;
    phone.goto(&relay.url(&path)).await;
    phone_ready(&phone).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let files: Vec<_> = (0..4)
        .map(|n| {
            let path = dir.path().join(format!("p{n}.jpg"));
            // Different bytes, so that four photos are four images.
            let mut bytes = padded_jpeg(1_500_000 + n * 1000);
            bytes.truncate(bytes.len());
            std::fs::write(&path, bytes).expect("write");
            path
        })
        .collect();
    // A slow uplink, so the queue is still busy when the page reloads.
    relay.set_plan(RelayPlan {
        rate: Some(1_500_000),
        ..Default::default()
    });
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    phone.set_input_files("#file", &refs).await;
    phone
        .wait_for(
            "document.querySelectorAll('#uploads .upload[data-state=\"done\"]').length >= 1",
            LONG,
            "a first photo is done",
        )
        .await;
    phone.eval("location.reload(), true").await;
    phone
        .wait_for(
            "document.readyState === 'complete'",
            WAIT,
            "the page loads again",
        )
        .await;
    desktop
        .wait_for(
            &format!("{TILES}.length === 4"),
            LONG,
            "the desktop shows four photos",
        )
        .await;
    phone
        .wait_for(
            &format!("{PHOTOS}.length === 4"),
            LONG,
            "the phone lists four photos",
        )
        .await;
    // Settle: nothing else is sent after the queue drained.
    phone
        .wait_for(
            "document.querySelectorAll('#uploads .upload[data-state=\"uploading\"], #uploads .upload[data-state=\"queued\"]').length === 0",
            LONG,
            "the queue is empty",
        )
        .await;
    assert_eq!(app.image_rows().await, 4, "each photo exactly once");
    assert_eq!(app.metric("qrupload_tus_uploads_finished_total").await, 4.0);
    // A creation whose answer the reload cut off is asked again with the same client_id and
    // gets the same upload: one creation per photo.
    assert_eq!(app.metric("qrupload_tus_uploads_created_total").await, 4.0);
    assert_eq!(tus_rows(&app).await, 4, "no upload made twice");
}

/// Rows in the app's `tus_uploads` table (finished ones stay while the session is open).
async fn tus_rows(app: &TestApp) -> i64 {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let url = format!("sqlite://{}/qrupload.db", app.dir.path().display());
    let db = qrupload::data::connect(&url, 1)
        .await
        .expect("the database opens");
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT COUNT(*) AS n FROM tus_uploads",
        ))
        .await
        .expect("count")
        .expect("a row");
    let n: i64 = row.try_get("", "n").expect("n");
    let _ = db.close().await;
    n
}
