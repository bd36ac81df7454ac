//! The phone page follows the session live, in a real browser: photos arrive on the phone
//! that it did not upload, the member reorders and deletes on the desktop page and the phone
//! shows the new order and the deletion without any action on it; the phone's own move still
//! works; a hidden phone page holds no stream and takes a fresh ticket when it is shown again;
//! Done on the desktop ends uploads on the phone. The upload token appears in no URL the phone
//! requests, and axe-core finds no serious or critical violation on the phone in these states.
//!
//! Needs Debian's Chromium (and `npm ci --prefix tests/browser` for axe-core); skipped without
//! them unless `QRUPLOAD_TEST_BROWSER` is set.

use std::time::Duration;

use serde_json::json;

use crate::{
    cdp::{Browser, Page},
    helpers::{TestApp, jpeg},
    widget_browser::{axe, axe_path},
};

const WAIT: Duration = Duration::from_secs(15);
const TILES: &str = "[...document.querySelectorAll('#grid .tile[data-image-id]')]";
const PHOTOS: &str = "[...document.querySelectorAll('#photos .photo[data-image-id]')]";

fn can_run() -> bool {
    crate::cdp::prerequisites(
        "the live phone test",
        &[(axe_path(), "npm ci --prefix tests/browser")],
    )
}

/// A JavaScript condition: the page's photos (or tiles) are `ids`, in this order.
fn order_is(list: &str, ids: &[&str]) -> String {
    format!(
        "JSON.stringify({list}.map(e => e.dataset.imageId)) === '{}'",
        json!(ids)
    )
}

async fn ids(page: &Page<'_>, list: &str) -> Vec<String> {
    serde_json::from_value(
        page.eval(&format!("{list}.map(e => e.dataset.imageId)"))
            .await,
    )
    .expect("ids")
}

/// Waits until the app counts `n` open watch streams.
async fn watchers_become(app: &TestApp, n: f64, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let open = app.metric("qrupload_watchers").await;
        if open == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {open} watchers, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the browser does when the phone's screen goes off (or another tab comes forward) and
/// back: `document.visibilityState` changes and `visibilitychange` fires.
async fn set_visible(page: &Page<'_>, visible: bool) {
    let state = if visible { "visible" } else { "hidden" };
    page.eval(&format!(
        "Object.defineProperty(document, 'visibilityState', {{ configurable: true, get: () => '{state}' }}); \
         Object.defineProperty(document, 'hidden', {{ configurable: true, get: () => {} }}); \
         document.dispatchEvent(new Event('visibilitychange'))",
        !visible
    ))
    .await;
}

fn stream_urls(page: &Page<'_>) -> Vec<String> {
    page.requested_urls()
        .into_iter()
        .filter(|u| u.contains("/v1/api/sse/events"))
        .collect()
}

#[tokio::test]
async fn the_phone_page_follows_the_desktop_live() {
    if !can_run() {
        return;
    }
    // Quick heartbeats: a stream the phone closed is noticed at the next write at the latest.
    let app = TestApp::spawn_with(|c| c.sse.heartbeat = Duration::from_secs(1)).await;
    let browser = Browser::launch().await;

    // The desktop page makes a session; the phone opens its link.
    let desktop = browser.new_page(1280, 800, false).await;
    desktop.goto(&app.url("/")).await;
    desktop
        .wait_for(
            "(document.querySelector('#upload-url').getAttribute('href') || '').includes('#t=')",
            WAIT,
            "the desktop shows the upload link",
        )
        .await;
    let link = desktop
        .eval("document.querySelector('#upload-url').getAttribute('href')")
        .await;
    let link = link.as_str().expect("the upload link").to_owned();
    let (path, token) = link.split_once("#t=").expect("a token in the fragment");
    let path = path.split_once("/m/").map(|(_, p)| p).expect("a /m/ link");
    let identifier = path.to_owned();
    let token = token.to_owned();

    let phone = browser.new_page(390, 844, true).await;
    phone.record_requests(None).await;
    phone
        .goto(&app.url(&format!("/m/{identifier}#t={token}")))
        .await;
    phone
        .wait_for(
            "!document.querySelector('#file').disabled && /photos left/.test(document.querySelector('#quota').textContent)",
            WAIT,
            "the phone is ready",
        )
        .await;
    // Both pages watch: the desktop over its events URL, the phone with a ticket.
    watchers_become(&app, 2.0, "the desktop and the phone watch").await;

    // Three photos arrive that this phone page did not send (another tab of the same link,
    // say): it shows them from the stream alone.
    let res = app
        .upload(
            &identifier,
            &token,
            vec![
                ("a.jpg", jpeg(60, 40)),
                ("b.jpg", jpeg(61, 40)),
                ("c.jpg", jpeg(62, 40)),
            ],
            None,
        )
        .await;
    assert_eq!(res.status(), 201);
    phone
        .wait_for(
            &format!("{PHOTOS}.length === 3"),
            WAIT,
            "the phone shows the photos it did not upload",
        )
        .await;
    desktop
        .wait_for(
            &format!("{TILES}.length === 3"),
            WAIT,
            "the desktop shows them",
        )
        .await;
    let first = ids(&phone, PHOTOS).await;
    assert_eq!(ids(&desktop, TILES).await, first);
    let [a, b, c] = [first[0].as_str(), first[1].as_str(), first[2].as_str()];

    // The member makes the third photo the cover on the desktop (keyboard).
    let focused = desktop
        .eval(&format!(
            "(b => {{ b.focus(); return document.activeElement === b; }})({TILES}[2].querySelector('.make-cover'))"
        ))
        .await;
    assert_eq!(focused, true);
    desktop.press("Enter").await;
    phone
        .wait_for(
            &order_is(PHOTOS, &[c, a, b]),
            WAIT,
            "the phone shows the desktop's new order",
        )
        .await;
    assert_eq!(
        phone
            .eval(&format!("{PHOTOS}[0].classList.contains('is-cover')"))
            .await,
        true,
        "the new cover is marked on the phone"
    );

    // The member deletes a photo on the desktop.
    desktop
        .eval(&format!(
            "{TILES}.find(t => t.dataset.imageId === '{a}').querySelector('.delete').click()"
        ))
        .await;
    phone
        .wait_for(
            &order_is(PHOTOS, &[c, b]),
            WAIT,
            "the phone drops the photo deleted on the desktop",
        )
        .await;
    phone
        .wait_for(
            "/^28 of 30 photos left/.test(document.querySelector('#quota').textContent)",
            WAIT,
            "the phone's quota counts the deletion",
        )
        .await;
    let violations = axe(&phone).await;
    assert!(violations.is_empty(), "the live phone page: {violations:?}");

    // The phone's own move keeps working alongside the stream, and the desktop follows.
    let focused = phone
        .eval(&format!(
            "(b => {{ b.focus(); return document.activeElement === b; }})({PHOTOS}[0].querySelector('.move-down'))"
        ))
        .await;
    assert_eq!(focused, true);
    phone.press("Enter").await;
    desktop
        .wait_for(
            &order_is(TILES, &[b, c]),
            WAIT,
            "the desktop shows the phone's move",
        )
        .await;
    phone
        .wait_for(
            &order_is(PHOTOS, &[b, c]),
            WAIT,
            "the phone keeps its own move",
        )
        .await;

    // Hidden, the phone holds no stream; shown again, it reconnects with a fresh ticket and
    // catches up with what happened meanwhile.
    let before = stream_urls(&phone).len();
    set_visible(&phone, false).await;
    watchers_become(&app, 1.0, "the hidden phone closes its stream").await;
    let res = app
        .client
        .put(app.url(&format!(
            "/v1/api/upload-sessions/{identifier}/images/order?member_id=1"
        )))
        .json(&json!({ "image_ids": [c, b] }))
        .send()
        .await
        .expect("reorder");
    assert_eq!(res.status(), 200);
    set_visible(&phone, true).await;
    phone
        .wait_for(
            &order_is(PHOTOS, &[c, b]),
            WAIT,
            "the phone catches up when shown again",
        )
        .await;
    watchers_become(&app, 2.0, "the phone watches again").await;
    let urls = stream_urls(&phone);
    assert_eq!(urls.len(), before + 1, "{urls:#?}");
    let tickets: std::collections::BTreeSet<&str> = urls
        .iter()
        .filter_map(|u| u.split_once("ticket=").map(|(_, t)| t))
        .collect();
    assert_eq!(
        tickets.len(),
        urls.len(),
        "a fresh ticket for every connect"
    );

    // Done on the desktop: the phone says so and stops offering uploads and moves.
    desktop
        .eval("document.querySelector('#done').click()")
        .await;
    phone
        .wait_for(
            "/finished on your computer/.test(document.querySelector('#notice-text').textContent) \
             && !document.querySelector('#notice').hidden",
            WAIT,
            "the phone shows the session completed",
        )
        .await;
    assert_eq!(
        phone.eval("document.querySelector('#file').disabled").await,
        true,
        "no more uploads"
    );
    assert_eq!(
        phone
            .eval(&format!(
                "{PHOTOS}.every(p => [...p.querySelectorAll('button')].every(b => b.hidden))"
            ))
            .await,
        true,
        "no more moves or deletes"
    );
    watchers_become(&app, 0.0, "both streams end with the session").await;
    let violations = axe(&phone).await;
    assert!(
        violations.is_empty(),
        "the completed phone page: {violations:?}"
    );

    // The token rode in the fragment and in headers only.
    let urls = phone.requested_urls();
    assert!(!urls.is_empty());
    assert!(
        urls.iter().all(|u| !u.contains(&token)),
        "the upload token in a URL: {urls:#?}"
    );
}
