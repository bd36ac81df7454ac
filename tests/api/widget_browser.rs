//! The widget in a host's form, in a real browser: the example host application
//! (`examples/listing-form`, Node) on another origin with a strict CSP embeds `<qrupload-panel>`
//! in jwt mode; a phone context uploads three photos and moves one down (the widget follows
//! live); the member reorders them with the keyboard in the widget, and on the bundled desktop
//! page; the form's submit carries the ordered ids. Once in English and once in
//! Traditional Chinese. No JWT appears in any URL the browser requests, and axe-core finds no
//! serious or critical violation on the widget or on either page, in both languages.
//!
//! Needs Chromium, Node and `npm install --prefix tests/browser` (axe-core); skipped without
//! them unless `QRUPLOAD_TEST_BROWSER` is set. With `QRUPLOAD_SCREENSHOTS=DIR` it saves the
//! widget and both pages, in both languages, into DIR.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use qrupload::{
    api::image::v1 as pb,
    biz::Caller,
    conf::{AuthMode, Secret},
};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{
    cdp::{Browser, Page},
    helpers::{TestApp, jpeg},
};

const WAIT: Duration = Duration::from_secs(15);
const SECRET: &str = "the listing example's secret, long enough for HS256";
const MEMBER: u32 = 42;
const PANEL: &str = "document.querySelector('qrupload-panel')";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn axe_path() -> PathBuf {
    root().join("tests/browser/node_modules/axe-core/axe.min.js")
}

/// Whether everything this test needs is here; panics when it is required but missing.
fn can_run() -> bool {
    crate::cdp::prerequisites(
        "the widget browser test",
        &[
            (PathBuf::from("/usr/bin/node"), "apt-get install nodejs"),
            (axe_path(), "npm install --prefix tests/browser"),
        ],
    )
}

/// The example host application, killed on drop.
struct Host {
    _child: tokio::process::Child,
    origin: String,
}

impl Host {
    async fn start(port: u16, service: &str) -> Host {
        let mut child = tokio::process::Command::new("/usr/bin/node")
            .arg(root().join("examples/listing-form/server.mjs"))
            .env("PORT", port.to_string())
            .env("QRUPLOAD_URL", service)
            .env("JWT_SECRET", SECRET)
            // Short-lived tokens: each stream ends with its JWT, so the widget must reconnect
            // (with a fresh JWT and a fresh ticket) while the test runs.
            .env("JWT_TTL", "4")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let origin = tokio::time::timeout(WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(origin) = line.strip_prefix("listening on ") {
                    return origin.trim().to_owned();
                }
            }
            panic!("the example server exited before listening");
        })
        .await
        .expect("the example server listens in time");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Host {
            _child: child,
            origin,
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn screenshot(page: &Page<'_>, name: &str) {
    let Some(dir) = std::env::var_os("QRUPLOAD_SCREENSHOTS").map(PathBuf::from) else {
        return;
    };
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    page.screenshot(&dir.join(name)).await;
}

/// Runs axe-core on the page (shadow roots included); returns the serious and critical
/// violations as "rule: targets".
pub(crate) async fn axe(page: &Page<'_>) -> Vec<String> {
    let source = std::fs::read_to_string(axe_path()).expect("axe-core");
    page.call(
        "Runtime.evaluate",
        serde_json::json!({ "expression": source, "returnByValue": true }),
    )
    .await;
    let found = page
        .eval(
            "axe.run(document, { resultTypes: ['violations'] }).then(r => r.violations \
             .filter(v => v.impact === 'serious' || v.impact === 'critical') \
             .map(v => v.id + ': ' + v.nodes.map(n => JSON.stringify(n.target)).join(', ')))",
        )
        .await;
    serde_json::from_value(found).expect("a list of violations")
}

fn ids_js() -> String {
    format!("{PANEL}.imageIds")
}

async fn ids(page: &Page<'_>) -> Vec<String> {
    serde_json::from_value(page.eval(&ids_js()).await).expect("ids")
}

async fn stored_order(app: &TestApp, identifier: &str) -> Vec<String> {
    stored_order_of(app, MEMBER, identifier).await
}

/// Focuses a button of the widget's `n`th tile (0-based) and presses `key` on it.
async fn press_on_tile(page: &Page<'_>, n: usize, class: &str, key: &str) {
    let focused = page
        .eval(&format!(
            "(b => {{ b.focus(); return {PANEL}.shadowRoot.activeElement === b; }})\
             ({PANEL}.shadowRoot.querySelectorAll('.tile')[{n}].querySelector('.{class}'))"
        ))
        .await;
    assert_eq!(focused, true, "tile {n}'s {class} button takes the focus");
    page.press(key).await;
}

struct Words {
    lang: &'static str,
    accept_language: &'static str,
    connected: &'static str,
    make_cover_3: &'static str,
    /// A finished file's line on the phone.
    uploaded: &'static str,
}

async fn one_listing(app: &TestApp, dev: &TestApp, browser: &Browser, host: &Host, words: &Words) {
    let lang = words.lang;
    // The PC: sign in at the host, open the listing form.
    let pc = browser.new_page(1280, 900, false).await;
    pc.record_requests(Some(words.accept_language)).await;
    pc.goto(&format!("{}/?lang={lang}", host.origin)).await;
    pc.eval("document.querySelector('#member_id').value = '42'; document.querySelector('form').submit()")
        .await;
    pc.wait_for(
        &format!("!!{PANEL}?.shadowRoot?.querySelector('.qr svg path')"),
        WAIT,
        "the widget shows its QR code",
    )
    .await;
    let identifier = pc.eval(&format!("{PANEL}.identifier")).await;
    let identifier = identifier
        .as_str()
        .expect("the widget's session")
        .to_owned();
    pc.wait_for(
        "window.qruploadEvents.some(e => e.type === 'qrupload:change')",
        WAIT,
        "the widget announces the (empty) list once on load",
    )
    .await;

    // The phone opens the upload link of the QR code and uploads three photos.
    let session = app
        .services
        .usecase
        .get_session(&Caller::Member(MEMBER), &identifier)
        .await
        .expect("the widget made a session for the signed-in member");
    let token = app
        .services
        .usecase
        .upload_token(&session)
        .expect("upload token");
    let phone = browser.new_page(390, 844, true).await;
    phone.record_requests(Some(words.accept_language)).await;
    phone
        .goto(&app.url(&format!("/m/{identifier}#t={token}")))
        .await;
    pc.wait_for(
        &format!(
            "{PANEL}.shadowRoot.querySelector('.status').textContent === '{}'",
            words.connected
        ),
        WAIT,
        "the widget sees the phone",
    )
    .await;
    phone
        .wait_for(
            "!document.querySelector('#file').disabled",
            WAIT,
            "the phone is ready",
        )
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let files: Vec<PathBuf> = (0..3)
        .map(|n| {
            let path = dir.path().join(format!("{n}.jpg"));
            std::fs::write(&path, jpeg(60 + n, 40)).expect("write a photo");
            path
        })
        .collect();
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    phone.set_input_files("#file", &refs).await;
    pc.wait_for(
        &format!("{}.length === 3", ids_js()),
        WAIT,
        "the widget shows the three photos",
    )
    .await;
    pc.wait_for(
        &format!(
            "[...{PANEL}.shadowRoot.querySelectorAll('.tile img')].every(i => i.complete && i.naturalWidth > 0)"
        ),
        WAIT,
        "the thumbnails load under the host's CSP",
    )
    .await;
    let first = ids(&pc).await;
    assert_eq!(stored_order(app, &identifier).await, first);

    // The phone moves its first photo down (keyboard); the widget follows live.
    phone
        .wait_for(
            "document.querySelectorAll('#photos .photo').length === 3",
            WAIT,
            "the phone lists the three photos",
        )
        .await;
    let focused = phone
        .eval("(b => { b.focus(); return document.activeElement === b; })(document.querySelector('#photos .photo .move-down'))")
        .await;
    assert_eq!(focused, true);
    phone.press("Enter").await;
    let uploaded = vec![first[1].clone(), first[0].clone(), first[2].clone()];
    pc.wait_for(
        &format!(
            "JSON.stringify({}) === '{}'",
            ids_js(),
            serde_json::json!(uploaded)
        ),
        WAIT,
        "the widget shows the phone's new order",
    )
    .await;
    assert_eq!(stored_order(app, &identifier).await, uploaded);
    assert_eq!(
        pc.eval(&format!(
            "{PANEL}.shadowRoot.querySelectorAll('.tile')[2].querySelector('.cover').getAttribute('aria-label')"
        ))
        .await,
        words.make_cover_3,
        "the buttons' names are translated"
    );
    screenshot(&pc, &format!("widget-{lang}.png")).await;

    // The keyboard: "make cover" on the third photo, then "move later" (where the focus stays).
    press_on_tile(&pc, 2, "cover", "Enter").await;
    let cover_first = vec![
        uploaded[2].clone(),
        uploaded[0].clone(),
        uploaded[1].clone(),
    ];
    pc.wait_for(
        &format!(
            "JSON.stringify({}) === '{}'",
            ids_js(),
            serde_json::json!(cover_first)
        ),
        WAIT,
        "the third photo becomes the cover",
    )
    .await;
    let focused = pc
        .eval(&format!(
            "{PANEL}.shadowRoot.activeElement?.closest('.tile')?.dataset.imageId"
        ))
        .await;
    assert_eq!(
        focused.as_str(),
        Some(uploaded[2].as_str()),
        "the focus follows the photo"
    );
    pc.press(" ").await;
    let wanted = vec![
        uploaded[0].clone(),
        uploaded[2].clone(),
        uploaded[1].clone(),
    ];
    pc.wait_for(
        &format!(
            "JSON.stringify({}) === '{}'",
            ids_js(),
            serde_json::json!(wanted)
        ),
        WAIT,
        "the cover moves one place later",
    )
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while stored_order(app, &identifier).await != wanted {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the service stores the order"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last_change = pc
        .eval("window.qruploadEvents.filter(e => e.type === 'qrupload:change').pop().detail.image_ids")
        .await;
    assert_eq!(
        last_change,
        serde_json::json!(wanted),
        "qrupload:change carries the order"
    );

    // Accessibility of the widget with photos in it, and of both pages, in this language.
    let violations = axe(&pc).await;
    assert!(violations.is_empty(), "{lang} widget: {violations:?}");
    let violations = axe(&phone).await;
    assert!(violations.is_empty(), "{lang} mobile page: {violations:?}");
    let states = phone
        .eval("JSON.stringify([...document.querySelectorAll('.upload-state')].map(e => e.textContent))")
        .await;
    assert_eq!(
        states.as_str(),
        Some(
            serde_json::json!(vec![words.uploaded; 3])
                .to_string()
                .as_str()
        ),
        "{lang}: every file line says it is uploaded, in the page's language"
    );
    screenshot(&phone, &format!("mobile-{lang}.png")).await;
    // The bundled desktop page speaks dev mode: it runs against a dev-mode instance.
    let desktop = browser.new_page(1280, 800, false).await;
    desktop.record_requests(Some(words.accept_language)).await;
    desktop.goto(&dev.url("/")).await;
    desktop
        .wait_for(
            "document.querySelector('#qr').complete && document.querySelector('#qr').naturalWidth > 0",
            WAIT,
            "the desktop page shows its QR code",
        )
        .await;
    assert_eq!(desktop.eval("document.documentElement.lang").await, lang);
    let link = desktop
        .eval("document.querySelector('#upload-url').getAttribute('href')")
        .await;
    let link = link.as_str().expect("the upload link").to_owned();
    let (path, token) = link.split_once("#t=").expect("a token in the fragment");
    let dev_id = path.rsplit('/').next().expect("identifier");
    let res = dev
        .upload(
            dev_id,
            token,
            vec![("a.jpg", jpeg(50, 40)), ("b.jpg", jpeg(40, 50))],
            None,
        )
        .await;
    assert_eq!(res.status(), 201);
    desktop
        .wait_for(
            "document.querySelectorAll('#grid .tile').length === 2",
            WAIT,
            "the desktop page shows the photos",
        )
        .await;
    let shown = desktop
        .eval("[...document.querySelectorAll('#grid .tile')].map(t => t.dataset.imageId)")
        .await;
    let focused = desktop
        .eval("(b => { b.focus(); return document.activeElement === b; })(document.querySelectorAll('#grid .tile')[1].querySelector('.make-cover'))")
        .await;
    assert_eq!(focused, true);
    desktop.press("Enter").await;
    let swapped = serde_json::json!([shown[1], shown[0]]);
    desktop
        .wait_for(
            &format!(
                "JSON.stringify([...document.querySelectorAll('#grid .tile')].map(t => t.dataset.imageId)) === '{swapped}'"
            ),
            WAIT,
            "the desktop page makes the second photo the cover",
        )
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while serde_json::json!(stored_order_of(dev, 1, dev_id).await) != swapped {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the desktop's order is stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let violations = axe(&desktop).await;
    assert!(violations.is_empty(), "{lang} desktop page: {violations:?}");
    screenshot(&desktop, &format!("desktop-{lang}.png")).await;

    // The streams end with their short-lived JWTs and come back, each with a new ticket.
    let stream_urls = || {
        pc.requested_urls()
            .into_iter()
            .filter(|u| u.contains("/v1/api/sse/events"))
            .collect::<Vec<_>>()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while stream_urls().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the widget reconnects"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tickets: std::collections::BTreeSet<String> = pc
        .requested_urls()
        .iter()
        .filter(|u| u.contains("/v1/api/sse/events"))
        .filter_map(|u| u.split_once("ticket=").map(|(_, t)| t.to_owned()))
        .collect();
    let streams = pc
        .requested_urls()
        .iter()
        .filter(|u| u.contains("/v1/api/sse/events"))
        .count();
    assert!(
        streams >= 2,
        "the widget reconnected: {streams} stream requests"
    );
    assert_eq!(tickets.len(), streams, "a fresh ticket for every connect");
    // Still live after its reconnects: completing the session (as the host would, over gRPC)
    // reaches the widget as `qrupload:complete` with the ordered ids.
    app.grpc_client()
        .await
        .complete_upload_session(pb::CompleteUploadSessionRequest {
            member_id: MEMBER,
            identifier: identifier.clone(),
        })
        .await
        .expect("complete");
    pc.wait_for(
        "window.qruploadEvents.some(e => e.type === 'qrupload:complete')",
        WAIT,
        "the widget announces the completed session",
    )
    .await;
    let complete = pc
        .eval("window.qruploadEvents.find(e => e.type === 'qrupload:complete').detail")
        .await;
    assert_eq!(complete["identifier"], identifier.as_str());
    assert_eq!(complete["image_ids"], serde_json::json!(wanted));

    // The host's plain form submit carries the ordered ids.
    pc.eval("document.querySelector('#listing button[type=submit]').click()")
        .await;
    pc.wait_for(
        "!!document.querySelector('#saved-ids')",
        WAIT,
        "the host saves the listing",
    )
    .await;
    let saved = pc
        .eval("document.querySelector('#saved-ids').textContent")
        .await;
    assert_eq!(saved.as_str(), Some(wanted.join(",").as_str()));

    // No JWT in any URL the browser asked for; the stream went with tickets.
    let urls: Vec<String> = [&pc, &phone, &desktop]
        .iter()
        .flat_map(|p| p.requested_urls())
        .collect();
    assert!(
        urls.iter()
            .any(|u| u.contains("/v1/api/sse/events") && u.contains("ticket=")),
        "{urls:#?}"
    );
    for url in &urls {
        assert!(!url.contains("eyJ"), "a JWT in a URL: {url}");
    }
}

#[tokio::test]
async fn the_widget_in_a_host_form_under_a_strict_csp_in_jwt_mode() {
    if !can_run() {
        return;
    }
    let port = free_port();
    let host_origin = format!("http://127.0.0.1:{port}");
    let app = TestApp::spawn_with(|c| {
        c.auth.mode = AuthMode::Jwt;
        c.auth.jwt.secret = Some(Secret::new(SECRET));
        c.cors.allowed_origins = vec![host_origin.clone()];
    })
    .await;
    let service = format!("http://{}", app.http);
    let host = Host::start(port, &service).await;
    assert_eq!(host.origin, host_origin);
    let dev = TestApp::spawn().await;
    let browser = Browser::launch().await;

    one_listing(
        &app,
        &dev,
        &browser,
        &host,
        &Words {
            lang: "en",
            accept_language: "en-GB,en;q=0.9",
            connected: "Phone connected",
            make_cover_3: "Make photo 3 the cover",
            uploaded: "Uploaded",
        },
    )
    .await;
    one_listing(
        &app,
        &dev,
        &browser,
        &host,
        &Words {
            lang: "zh-Hant",
            accept_language: "zh-TW,zh;q=0.9",
            connected: "手機已連線",
            make_cover_3: "將第 3 張相片設為封面",
            uploaded: "已上傳",
        },
    )
    .await;
}

/// Dev mode (`member-id`), a session named by `session-url`, `lang="zh-Hans"`, `setOrder`
/// and drag and drop, with the host page served by a tiny server on another origin.
#[tokio::test]
async fn the_widget_in_dev_mode_shows_a_named_session_and_reorders_by_script_and_by_drag() {
    if !can_run() {
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("host listener");
    let host = format!("http://{}", listener.local_addr().expect("address"));
    let app = TestApp::spawn_with(|c| c.cors.allowed_origins = vec![host.clone()]).await;
    let service = format!("http://{}", app.http);
    // The host made this session itself (over gRPC) and names it.
    let created = app
        .grpc_client()
        .await
        .create_upload_session(pb::CreateUploadSessionRequest {
            member_id: 5,
            ttl_seconds: None,
            max_images: None,
        })
        .await
        .expect("create")
        .into_inner();
    let id = created.identifier.clone();
    let res = app
        .upload(
            &id,
            &created.upload_token,
            vec![
                ("a.jpg", jpeg(50, 40)),
                ("b.jpg", jpeg(51, 40)),
                ("c.jpg", jpeg(52, 40)),
            ],
            None,
        )
        .await;
    assert_eq!(res.status(), 201);
    let uploaded = stored_order_of(&app, 5, &id).await;

    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Host</title>\
         <script type=\"module\" src=\"{service}/v1/widget.js\"></script></head><body><main>\
         <form id=\"f\"><qrupload-panel member-id=\"5\" lang=\"zh-Hans\" api-base=\"{service}\" \
         session-url=\"/v1/api/upload-sessions/{id}\"></qrupload-panel></form></main></body></html>"
    );
    let csp = format!(
        "default-src 'none'; script-src {service}; connect-src {service}; img-src {service}"
    );
    let router = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let (html, csp) = (html.clone(), csp.clone());
            async move {
                (
                    [
                        ("content-type", "text/html; charset=utf-8".to_owned()),
                        ("content-security-policy", csp),
                    ],
                    html,
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });

    let browser = Browser::launch().await;
    let page = browser.new_page(1280, 800, false).await;
    page.goto(&format!("{host}/")).await;
    page.wait_for(
        &format!("{PANEL}?.imageIds?.length === 3"),
        WAIT,
        "the widget shows the named session's photos",
    )
    .await;
    assert_eq!(ids(&page).await, uploaded);
    assert_eq!(
        page.eval(&format!(
            "{PANEL}.shadowRoot.querySelector('.tile .delete').getAttribute('aria-label')"
        ))
        .await,
        "删除第 1 张照片",
        "lang=\"zh-Hans\" wins over the document's language"
    );
    assert_eq!(
        page.eval("document.querySelector('#f input[type=hidden]').name")
            .await,
        "qrupload_image_ids",
        "the default form field name"
    );

    // setOrder from script.
    let wanted = vec![
        uploaded[1].clone(),
        uploaded[2].clone(),
        uploaded[0].clone(),
    ];
    let answered = page
        .eval(&format!(
            "{PANEL}.setOrder({}).then(images => images.map(i => i.id))",
            serde_json::json!(wanted)
        ))
        .await;
    assert_eq!(answered, serde_json::json!(wanted));
    assert_eq!(stored_order_of(&app, 5, &id).await, wanted);
    assert_eq!(
        page.eval("document.querySelector('#f input[type=hidden]').value")
            .await,
        wanted.join(",")
    );
    // A list that is not the session's is refused and the order stays.
    let refused = page
        .eval(&format!(
            "{PANEL}.setOrder({}).then(() => 'accepted', e => e.reason)",
            serde_json::json!(wanted[..2])
        ))
        .await;
    assert_eq!(refused, "INVALID_ARGUMENT");
    assert_eq!(ids(&page).await, wanted);

    // Drag the last photo onto the left half of the first: it becomes the cover.
    page.eval(&format!(
        "(() => {{ const tiles = {PANEL}.shadowRoot.querySelectorAll('.tile'); \
         const dt = new DataTransfer(); const r = tiles[0].getBoundingClientRect(); \
         tiles[2].dispatchEvent(new DragEvent('dragstart', {{ bubbles: true, composed: true, dataTransfer: dt }})); \
         tiles[0].dispatchEvent(new DragEvent('dragover', {{ bubbles: true, cancelable: true, dataTransfer: dt, clientX: r.left + 2, clientY: r.top + 2 }})); \
         tiles[0].dispatchEvent(new DragEvent('drop', {{ bubbles: true, cancelable: true, dataTransfer: dt, clientX: r.left + 2, clientY: r.top + 2 }})); \
         tiles[2].dispatchEvent(new DragEvent('dragend', {{ bubbles: true }})); }})()"
    ))
    .await;
    let dragged = vec![wanted[2].clone(), wanted[0].clone(), wanted[1].clone()];
    let deadline = tokio::time::Instant::now() + WAIT;
    while stored_order_of(&app, 5, &id).await != dragged {
        assert!(tokio::time::Instant::now() < deadline, "the drop is stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ids(&page).await, dragged);

    // Moved elsewhere in the page, it keeps its session and follows it again.
    page.eval(&format!("document.body.appendChild({PANEL}).identifier"))
        .await;
    assert_eq!(page.eval(&format!("{PANEL}.identifier")).await, id.as_str());
    let res = app
        .upload(
            &id,
            &created.upload_token,
            vec![("d.jpg", jpeg(53, 40))],
            None,
        )
        .await;
    assert_eq!(res.status(), 201);
    page.wait_for(
        &format!("{}.length === 4", ids_js()),
        WAIT,
        "the moved widget shows the next upload",
    )
    .await;
}

async fn stored_order_of(app: &TestApp, member_id: u32, identifier: &str) -> Vec<String> {
    let mut grpc = app.grpc_client().await;
    grpc.get_images_by_identifier(pb::GetImagesByIdentifierRequest {
        member_id,
        identifier: identifier.to_owned(),
    })
    .await
    .expect("list")
    .into_inner()
    .images
    .into_iter()
    .map(|i| i.id)
    .collect()
}
