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
