//! The desktop and mobile pages and the host widget: plain HTML, CSS and JavaScript with no
//! build step, embedded in the binary. Server data is inserted with `textContent` and
//! attributes only. The pages are templates filled once per language ([`i18n`]); the widget
//! carries its strings for every language and picks one in the browser.

pub mod i18n;

use std::sync::LazyLock;

use i18n::{Lang, Page};

pub(crate) const DESKTOP_TEMPLATE: &str = include_str!("desktop.html");
pub(crate) const MOBILE_TEMPLATE: &str = include_str!("mobile.html");
const WIDGET_TEMPLATE: &str = include_str!("widget.js");

/// Where `widget.js` takes its string tables.
const WIDGET_STRINGS_SLOT: &str = "/*@strings*/{}";

static DESKTOP: LazyLock<[String; 3]> =
    LazyLock::new(|| Lang::ALL.map(|lang| i18n::render(DESKTOP_TEMPLATE, lang, Page::Desktop)));
static MOBILE: LazyLock<[String; 3]> =
    LazyLock::new(|| Lang::ALL.map(|lang| i18n::render(MOBILE_TEMPLATE, lang, Page::Mobile)));
static WIDGET: LazyLock<String> =
    LazyLock::new(|| WIDGET_TEMPLATE.replacen(WIDGET_STRINGS_SLOT, &i18n::widget_strings_js(), 1));

pub fn desktop_html(lang: Lang) -> &'static str {
    &DESKTOP[lang as usize]
}

pub fn mobile_html(lang: Lang) -> &'static str {
    &MOBILE[lang as usize]
}

/// `/v1/widget.js`: the `<qrupload-panel>` element with its strings filled in.
pub fn widget_js() -> &'static str {
    &WIDGET
}

/// `/v1/widget-view.js`: the styles, tiles and QR code `widget.js` imports.
pub fn widget_view_js() -> &'static str {
    include_str!("widget_view.js")
}

/// A static asset by file name, with its content type.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    Some(match name {
        "desktop.js" => (include_str!("desktop.js"), "text/javascript; charset=utf-8"),
        "mobile.js" => (include_str!("mobile.js"), "text/javascript; charset=utf-8"),
        "style.css" => (include_str!("style.css"), "text/css; charset=utf-8"),
        "upload_queue.js" => (
            include_str!("upload_queue.js"),
            "text/javascript; charset=utf-8",
        ),
        "downscale_worker.js" => (
            include_str!("downscale_worker.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_filled_in_every_language() {
        for lang in Lang::ALL {
            for html in [desktop_html(lang), mobile_html(lang)] {
                assert!(html.contains(&format!("<html lang=\"{}\">", lang.tag())));
                assert!(
                    !html.contains("{{"),
                    "{}: a placeholder is left",
                    lang.tag()
                );
            }
        }
        assert!(!widget_js().contains(WIDGET_STRINGS_SLOT));
        assert!(widget_js().contains("\"zh-Hant\":{"));
    }
}
