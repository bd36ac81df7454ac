//! The pages speak English, Traditional and Simplified Chinese, chosen from
//! `Accept-Language`; the widget module is served as JavaScript with CORS.

use reqwest::StatusCode;

use crate::helpers::TestApp;

async fn page(app: &TestApp, path: &str, accept: Option<&str>) -> (String, String, String) {
    let mut req = app.client.get(app.url(path));
    if let Some(value) = accept {
        req = req.header("Accept-Language", value);
    }
    let res = req.send().await.expect("page");
    assert_eq!(res.status(), StatusCode::OK);
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (vary, language) = (header("vary"), header("content-language"));
    (res.text().await.expect("body"), vary, language)
}

#[tokio::test]
async fn both_pages_are_served_in_the_negotiated_language() {
    let app = TestApp::spawn().await;
    let cases = [
        (None, "en", "Upload photos from your phone", "Add photos"),
        (
            Some("fr-FR,fr;q=0.9"),
            "en",
            "Upload photos from your phone",
            "Add photos",
        ),
        (
            Some("zh-TW,zh;q=0.9,en;q=0.8"),
            "zh-Hant",
            "用手機上傳相片",
            "加入相片",
        ),
        (Some("zh-HK"), "zh-Hant", "用手機上傳相片", "加入相片"),
        (
            Some("en;q=0.4, zh-Hant;q=0.9"),
            "zh-Hant",
            "用手機上傳相片",
            "加入相片",
        ),
        (Some("zh-CN"), "zh-Hans", "用手机上传照片", "添加照片"),
        (Some("zh"), "zh-Hans", "用手机上传照片", "添加照片"),
        (
            Some("zh-TW;q=0, zh-SG;q=0.5"),
            "zh-Hans",
            "用手机上传照片",
            "添加照片",
        ),
    ];
    for (accept, lang, desktop_title, mobile_title) in cases {
        for (path, title) in [
            ("/", desktop_title),
            ("/m/AAAAAAAAAAAAAAAAAAAAAA", mobile_title),
        ] {
            let (html, vary, language) = page(&app, path, accept).await;
            assert!(
                html.contains(&format!("<html lang=\"{lang}\">")),
                "{accept:?} {path}"
            );
            assert!(
                html.contains(&format!("<title>{title}</title>")),
                "{accept:?} {path}"
            );
            assert!(
                !html.contains("{{"),
                "{accept:?} {path}: nothing left unfilled"
            );
            assert!(
                vary.to_ascii_lowercase().contains("accept-language"),
                "{path}: {vary}"
            );
            assert_eq!(language, lang, "{path}");
            // The script's strings ride in a JSON data block, never as script.
            assert!(html.contains(r#"<script type="application/json" id="i18n">{"#));
        }
    }
}

#[tokio::test]
async fn the_widget_module_is_javascript_with_cors_for_allowed_origins() {
    let app =
        TestApp::spawn_with(|c| c.cors.allowed_origins = vec!["https://host.example".into()]).await;

    let res = app
        .client
        .get(app.url("/v1/widget.js"))
        .header("Origin", "https://host.example")
        .send()
        .await
        .expect("widget.js");
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(
        h.get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        h.get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://host.example")
    );
    let js = res.text().await.expect("body");
    assert!(js.contains("customElements.define('qrupload-panel'"));
    assert!(js.contains("\"zh-Hant\":{") && js.contains("\"zh-Hans\":{"));
    assert!(!js.contains("innerHTML"), "no HTML-string sinks");

    // The module it imports, under the same rules.
    let res = app
        .client
        .get(app.url("/v1/widget-view.js"))
        .header("Origin", "https://host.example")
        .send()
        .await
        .expect("widget-view.js");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://host.example")
    );
    assert!(js.contains("from './widget-view.js'"));
    assert!(!res.text().await.expect("body").contains("innerHTML"));

    let res = app
        .client
        .get(app.url("/v1/widget.js"))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .expect("widget.js");
    assert!(res.headers().get("access-control-allow-origin").is_none());
}
