//! `/metrics` as a scraper reads it: valid OpenMetrics text, and the latency histograms
//! moving with an upload (multipart and tus), a change pushed to a watcher and an SSE connect.

use std::collections::{HashMap, HashSet};

use crate::{
    helpers::{SseClient, TestApp, jpeg},
    tus::Tus,
};

/// Samples by `name{labels}` (labels as written), checked against the exposition's rules.
struct Exposition {
    samples: HashMap<String, f64>,
}

impl Exposition {
    async fn scrape(app: &TestApp) -> Exposition {
        let res = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("metrics");
        assert_eq!(res.status(), 200);
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text; version=1.0.0"),
            "{content_type}"
        );
        Exposition::parse(&res.text().await.expect("metrics text"))
    }

    fn parse(text: &str) -> Exposition {
        assert!(text.ends_with("# EOF\n"), "an exposition ends with # EOF");
        let mut types: HashMap<String, String> = HashMap::new();
        let mut samples = HashMap::new();
        for line in text.lines().filter(|l| *l != "# EOF") {
            if let Some(meta) = line.strip_prefix("# ") {
                let mut words = meta.splitn(3, ' ');
                let (kind, family) = (words.next(), words.next().expect("a family name"));
                if kind == Some("TYPE") {
                    let kind = words.next().expect("a type").to_owned();
                    assert!(
                        types.insert(family.to_owned(), kind).is_none(),
                        "{family} declared twice"
                    );
                } else {
                    assert!(matches!(kind, Some("HELP" | "UNIT")), "{line}");
                }
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
            let name = series.split('{').next().unwrap_or_default();
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{line}"
            );
            let family = ["_total", "_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
                .unwrap_or(name);
            let kind = types
                .get(family)
                .unwrap_or_else(|| panic!("{name} has no TYPE before it"));
            if kind == "counter" {
                assert_eq!(name, format!("{family}_total"), "a counter's sample");
            }
            assert!(
                samples.insert(series.to_owned(), value).is_none(),
                "{series} twice"
            );
        }
        let exposition = Exposition { samples };
        for (family, kind) in &types {
            if kind == "histogram" {
                exposition.check_histogram(family);
            }
        }
        exposition
    }

    /// Every series of the histogram: buckets in `le` order never decrease, and `+Inf` holds
    /// the count.
    fn check_histogram(&self, family: &str) {
        let bucket = format!("{family}_bucket{{");
        let mut series: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
        for (name, value) in &self.samples {
            let Some(labels) = name.strip_prefix(&bucket) else {
                continue;
            };
            // Label values here hold no comma.
            let pairs = labels.strip_suffix('}').expect("labels close");
            let (le, others): (Vec<&str>, Vec<&str>) =
                pairs.split(',').partition(|p| p.starts_with("le=\""));
            let le = le.first().expect("a bucket's le")[4..].trim_end_matches('"');
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or_else(|_| panic!("le of {name}"))
            };
            let others = others.join(",");
            series.entry(others).or_default().push((le, *value));
        }
        for (labels, mut buckets) in series {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(buckets.len() > 5, "{family}{{{labels}}}: buckets");
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{{{labels}}}: buckets are cumulative"
            );
            let last = buckets.last().expect("buckets");
            assert_eq!(last.0, f64::INFINITY);
            let braces = |s: &str| {
                if labels.is_empty() {
                    format!("{family}_{s}")
                } else {
                    format!("{family}_{s}{{{labels}}}")
                }
            };
            assert_eq!(Some(&last.1), self.samples.get(&braces("count")));
            assert!(self.samples.contains_key(&braces("sum")));
        }
    }

    /// A sample's value; an absent labelled series has seen nothing yet.
    fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }
}

const MULTIPART: &str =
    "qrupload_upload_duration_seconds_count{kind=\"multipart\",outcome=\"stored\"}";
const TUS: &str = "qrupload_upload_duration_seconds_count{kind=\"tus\",outcome=\"stored\"}";
const DELIVERY: &str = "qrupload_change_delivery_seconds_count";
const CONNECT: &str = "qrupload_sse_connect_seconds_count";

#[tokio::test]
async fn histograms_move_with_uploads_changes_and_connects() {
    let app = TestApp::spawn().await;
    let (id, token) = app.open_session(1).await;
    let before = Exposition::scrape(&app).await;
    assert_eq!(before.get(CONNECT), 0.0);
    assert!(
        before
            .samples
            .contains_key("qrupload_sse_connect_seconds_bucket{le=\"0.001\"}"),
        "millisecond buckets"
    );

    let mut watcher = SseClient::watch(&app, &id, 1).await;
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.is_empty()))
        .await;
    let connected = Exposition::scrape(&app).await;
    assert_eq!(connected.get(CONNECT), 1.0);
    assert_eq!(connected.get(DELIVERY), 0.0, "no change yet");

    let res = app
        .upload(&id, &token, vec![("a.jpg", jpeg(16, 16))], None)
        .await;
    assert_eq!(res.status(), 201);
    watcher
        .snapshot_where(|l| l.as_array().is_some_and(|a| a.len() == 1))
        .await;
    let uploaded = Exposition::scrape(&app).await;
    assert_eq!(uploaded.get(MULTIPART) - connected.get(MULTIPART), 1.0);
    assert!(
        uploaded.get("qrupload_upload_duration_seconds_sum{kind=\"multipart\",outcome=\"stored\"}")
            > 0.0
    );
    assert_eq!(uploaded.get(DELIVERY), 1.0, "one change, one delivery");
    assert!(uploaded.get("qrupload_change_delivery_seconds_sum") > 0.0);

    let refused = app
        .upload(&id, &token, vec![("a.txt", b"not an image".to_vec())], None)
        .await;
    assert!(refused.status().is_client_error());
    let after_refusal = Exposition::scrape(&app).await;
    assert_eq!(
        after_refusal
            .get("qrupload_upload_duration_seconds_count{kind=\"multipart\",outcome=\"rejected\"}"),
        1.0
    );
    assert_eq!(after_refusal.get(MULTIPART), uploaded.get(MULTIPART));

    let tus = Tus::new(&app).await;
    let photo = jpeg(32, 24);
    let res = tus
        .request(reqwest::Method::POST, &tus.endpoint())
        .header("Upload-Length", photo.len().to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(photo)
        .send()
        .await
        .expect("creation-with-upload");
    assert_eq!(res.status(), 201);
    let finished = Exposition::scrape(&app).await;
    assert_eq!(finished.get(TUS), 1.0);
    assert_eq!(finished.get(MULTIPART), uploaded.get(MULTIPART));
    // Every series seen so far is still there: labelled series are never dropped.
    let seen: HashSet<&String> = uploaded.samples.keys().collect();
    assert!(seen.iter().all(|k| finished.samples.contains_key(*k)));
}

#[test]
fn the_parser_refuses_what_a_scraper_would() {
    let bad = [
        "# TYPE a counter\na 1\n# EOF\n",
        "a_total 1\n# EOF\n",
        "# TYPE a counter\na_total 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 1\n# EOF\n",
    ];
    for text in bad {
        let text = text.to_owned();
        assert!(
            std::panic::catch_unwind(move || Exposition::parse(&text)).is_err(),
            "accepted a bad exposition"
        );
    }
}
