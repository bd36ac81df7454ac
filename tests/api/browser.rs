//! The desktop and mobile pages in a real browser: the desktop shows the QR link, the phone (a
//! second browser context) opens it and uploads a photo, the desktop grid follows over SSE, the
//! phone deletes the photo, and the desktop completes the session.
//!
//! Needs Debian's Chromium at /usr/bin/chromium; skipped without it unless
//! `QRUPLOAD_TEST_BROWSER` is set. With `QRUPLOAD_SCREENSHOTS=DIR` it also saves screenshots of
//! both pages at desktop and phone sizes into DIR.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use qrupload::biz::imaging::testdata;

use crate::{
    cdp::{Browser, CHROMIUM, Page},
    helpers::TestApp,
};

const WAIT: Duration = Duration::from_secs(10);
/// Shown in the QR code and the link; never visited (the phone opens the app's own origin).
const PUBLIC_BASE_URL: &str = "https://photos.example.com";

const TILES: &str = "document.querySelectorAll('#grid .tile[data-image-id]')";
const PHOTOS: &str = "document.querySelectorAll('#photos .photo[data-image-id]')";

/// Saves a screenshot into `QRUPLOAD_SCREENSHOTS`, when that names a folder.
async fn screenshot(page: &Page<'_>, name: &str) {
    let Some(dir) = std::env::var_os("QRUPLOAD_SCREENSHOTS").map(PathBuf::from) else {
        return;
    };
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    page.screenshot(&dir.join(name)).await;
}

fn text_is(selector: &str, text: &str) -> String {
    format!("document.querySelector('{selector}')?.textContent.trim() === '{text}'")
}

#[tokio::test]
async fn desktop_and_phone_in_a_real_browser() {
    if !Path::new(CHROMIUM).exists() {
        if std::env::var_os("QRUPLOAD_TEST_BROWSER").is_some() {
            panic!(
                "QRUPLOAD_TEST_BROWSER is set but {CHROMIUM} is missing (apt-get install chromium)"
            );
        }
        eprintln!(
            "skipping the browser test: {CHROMIUM} is missing (set QRUPLOAD_TEST_BROWSER to require it)"
        );
        return;
    }
    let app =
        TestApp::spawn_with(|c| c.server.public_base_url = Some(PUBLIC_BASE_URL.into())).await;
    let browser = Browser::launch().await;

    // Desktop: a session, its QR link, waiting for the phone.
    let desktop = browser.new_page(1280, 800, false).await;
    desktop.goto(&app.url("/")).await;
    desktop
        .wait_for(
            "(document.querySelector('#upload-url').getAttribute('href') || '').includes('/m/')",
            WAIT,
            "the desktop shows the upload link",
        )
        .await;
    desktop
        .wait_for(
            &text_is("#status", "Waiting for phone…"),
            WAIT,
            "the desktop waits for the phone",
        )
        .await;
    desktop
        .wait_for(
            "document.querySelector('#qr').complete && document.querySelector('#qr').naturalWidth > 0",
            WAIT,
            "the QR code shows",
        )
        .await;
    let href = desktop
        .eval("document.querySelector('#upload-url').href")
        .await;
    let href = href.as_str().expect("the upload link's href").to_owned();
    let text = desktop
        .eval("document.querySelector('#upload-url').textContent")
        .await;
    assert_eq!(
        text.as_str(),
        Some(href.as_str()),
        "the link shows its own URL"
    );
    assert!(href.starts_with(&format!("{PUBLIC_BASE_URL}/m/")), "{href}");
    assert!(
        href.contains("#t="),
        "the token rides in the fragment: {href}"
    );

    // Phone: its own browser context opens the link (path and fragment) on the app's origin.
    let path = &href[PUBLIC_BASE_URL.len()..];
    let phone = browser.new_page(390, 844, true).await;
    phone.goto(&app.url(path)).await;
    desktop
        .wait_for(
            &text_is("#status", "Phone connected"),
            WAIT,
            "the desktop sees the phone",
        )
        .await;
    phone
        .wait_for(
            "!document.querySelector('#file').disabled && /photos left/.test(document.querySelector('#quota').textContent)",
            WAIT,
            "the phone is ready to upload",
        )
        .await;

    // The phone picks a sideways photo with GPS in its EXIF.
    let dir = tempfile::tempdir().expect("temp dir");
    let photo = dir.path().join("photo.jpg");
    std::fs::write(&photo, testdata::jpeg_with_exif(800, 600, 6, true)).expect("write the photo");
    phone.set_input_files("#file", &[&photo]).await;
    // DOM.setFileInputFiles fires `change`, as a person's pick does.
    phone
        .wait_for(
            "document.querySelectorAll('#uploads .upload').length === 1",
            WAIT,
            "the phone lists the chosen file",
        )
        .await;
    phone
        .wait_for(
            "document.querySelector('#uploads .upload')?.dataset.state === 'done'",
            WAIT,
            "the upload finishes on the phone",
        )
        .await;
    phone
        .wait_for(
            &format!("{PHOTOS}.length === 1"),
            WAIT,
            "the phone lists the photo",
        )
        .await;
    desktop
        .wait_for(
            &format!("{TILES}.length === 1"),
            WAIT,
            "the desktop grid shows the photo",
        )
        .await;
    let phone_id = phone.eval(&format!("{PHOTOS}[0].dataset.imageId")).await;
    let tile_id = desktop.eval(&format!("{TILES}[0].dataset.imageId")).await;
    assert!(phone_id.is_string(), "{phone_id}");
    assert_eq!(
        tile_id, phone_id,
        "the desktop shows the photo the phone uploaded"
    );
    let loaded = |list: &str| {
        format!(
            "[...{list}].every(e => e.querySelector('img').complete && e.querySelector('img').naturalWidth > 0)"
        )
    };
    desktop
        .wait_for(&loaded(TILES), WAIT, "the desktop thumbnail loads")
        .await;
    phone
        .wait_for(&loaded(PHOTOS), WAIT, "the phone thumbnail loads")
        .await;
    let size = desktop
        .eval(&format!(
            "(i => [i.naturalWidth, i.naturalHeight])({TILES}[0].querySelector('img'))"
        ))
        .await;
    assert!(
        size[1].as_u64() > size[0].as_u64(),
        "the sideways photo shows upright: {size}"
    );
    // The count follows the `session` event, which may land a moment after the tile.
    desktop
        .wait_for(
            "document.querySelector('#count').textContent.startsWith('1 / ')",
            WAIT,
            "the desktop counts one photo",
        )
        .await;

    screenshot(&desktop, "desktop-wide.png").await;
    desktop.set_viewport(390, 844, true).await;
    screenshot(&desktop, "desktop-phone.png").await;
    desktop.set_viewport(1280, 800, false).await;
    screenshot(&phone, "mobile-phone.png").await;
    phone.set_viewport(1024, 768, false).await;
    screenshot(&phone, "mobile-wide.png").await;
    phone.set_viewport(390, 844, true).await;

    // The phone deletes it; the desktop grid follows.
    phone
        .eval("document.querySelector('#photos .photo .delete').click()")
        .await;
    phone
        .wait_for(
            &format!("{PHOTOS}.length === 0"),
            WAIT,
            "the phone drops the photo",
        )
        .await;
    desktop
        .wait_for(
            &format!("{TILES}.length === 0"),
            WAIT,
            "the desktop grid drops the photo",
        )
        .await;

    // Done on the desktop completes the session.
    desktop
        .eval("document.querySelector('#done').click()")
        .await;
    desktop
        .wait_for(
            &text_is("#status", "Done"),
            WAIT,
            "the desktop shows the session done",
        )
        .await;
    assert_eq!(
        desktop
            .eval("document.querySelector('#done').disabled")
            .await,
        true,
        "Done is disabled once the session is completed"
    );
}
