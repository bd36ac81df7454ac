//! Summaries of the measurements: percentiles and rounding for the JSON line.

use super::*;

pub fn percentiles(sorted: &[f64]) -> Value {
    let at = |p: f64| {
        if sorted.is_empty() {
            Value::Null
        } else {
            let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
            json!(round3(sorted[i]))
        }
    };
    json!({ "min": at(0.0), "p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p999": at(0.999), "max": at(1.0) })
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One run as a table row for the terminal: `mode shape | sent→every watcher p50/p99/max |
/// answer p50/p99 | answer→watcher p50/p99 | KiB per idle watcher | server µs per event`.
pub fn row(r: &Value) -> String {
    let ms = |part: &str, p: &str| {
        r[part][p]
            .as_f64()
            .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
    };
    format!(
        "fanout {:<6} {:<22} | sent→watcher p50 {} p99 {} max {} ms | answer p50 {} p99 {} max {} ms | answer→watcher p50 {} p99 {} ms | {} KiB/idle watcher | {} µs server CPU/event ({} excl. upload) | {}/{} delivered",
        r["mode"].as_str().unwrap_or("?"),
        r["label"].as_str().unwrap_or("?"),
        ms("latency_ms", "p50"),
        ms("latency_ms", "p99"),
        ms("latency_ms", "max"),
        ms("upload_request_ms", "p50"),
        ms("upload_request_ms", "p99"),
        ms("upload_request_ms", "max"),
        ms("receipt_after_upload_answer_ms", "p50"),
        ms("receipt_after_upload_answer_ms", "p99"),
        r["rss_kib_per_idle_watcher"],
        r["server_cpu_us_per_delivered_event"],
        r["server_cpu_us_per_delivered_event_excl_upload"],
        r["deliveries"]["received"],
        r["deliveries"]["expected"],
    )
}
