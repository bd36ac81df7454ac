//! The desktop and mobile pages: plain HTML, CSS and JavaScript with no build step, embedded
//! in the binary. Server data is inserted with `textContent` and attributes only.

pub const DESKTOP_HTML: &str = include_str!("desktop.html");
pub const MOBILE_HTML: &str = include_str!("mobile.html");

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
