//! `webhooks.*`: where events are delivered, and the start-up checks that keep the service
//! from being pointed at itself or its private network (an SSRF probe).
//!
//! `webhooks.endpoints` is a YAML list, or one environment variable holding the list as JSON
//! (`QRUPLOAD__WEBHOOKS__ENDPOINTS='[{"url":"https://…","secret":"…"}]'`), since a list of
//! objects has no `__KEY` spelling.

use std::{collections::HashSet, net::IpAddr, time::Duration};

use reqwest::Url;
use serde::{Deserialize, Deserializer, de::Error as _};

use super::{ConfigError, Secret, units};
use crate::biz::{EventType, RetryPolicy, WebhookRoutes, is_public_ip};

const KEY: &str = "webhooks.endpoints";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConf {
    #[serde(default, deserialize_with = "endpoints")]
    pub endpoints: Vec<EndpointConf>,
    /// An event still failing this long after it happened is dead.
    #[serde(with = "units::duration", default = "default_max_age")]
    pub max_age: Duration,
    /// Development only: allows `http` and private, loopback and link-local addresses.
    #[serde(default)]
    pub allow_insecure: bool,
    /// For tests only (not for operators): the first retry's delay, doubled per failure.
    #[serde(with = "units::duration", default = "default_retry_base")]
    pub retry_base: Duration,
    /// For tests only (not for operators): one attempt's deadline.
    #[serde(with = "units::duration", default = "default_timeout")]
    pub timeout: Duration,
}

impl Default for WebhooksConf {
    fn default() -> Self {
        WebhooksConf {
            endpoints: Vec::new(),
            max_age: default_max_age(),
            allow_insecure: false,
            retry_base: default_retry_base(),
            timeout: default_timeout(),
        }
    }
}

fn default_max_age() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_retry_base() -> Duration {
    RetryPolicy::DEFAULT_BASE
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// One receiver. `Debug` shows the secret as `***` ([`Secret`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConf {
    pub url: String,
    pub secret: Secret,
    /// The event types it wants; omitted: all.
    #[serde(default)]
    pub events: Option<Vec<String>>,
}

impl EndpointConf {
    /// The wanted types; `validate` has already refused unknown names.
    pub fn event_types(&self) -> Option<Vec<EventType>> {
        self.events
            .as_ref()
            .map(|names| names.iter().filter_map(|n| n.parse().ok()).collect())
    }
}

impl WebhooksConf {
    /// The repository's routing table: the endpoint's URL is its key in the outbox.
    pub fn routes(&self) -> WebhookRoutes {
        WebhookRoutes {
            endpoints: self
                .endpoints
                .iter()
                .map(|e| (e.url.clone(), e.event_types()))
                .collect(),
        }
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            base: self.retry_base,
            cap: RetryPolicy::DEFAULT_CAP,
            max_age: self.max_age,
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        for (key, value) in [
            ("webhooks.max_age", self.max_age),
            ("webhooks.retry_base", self.retry_base),
            ("webhooks.timeout", self.timeout),
        ] {
            if value.is_zero() {
                return invalid(key, "must be above zero".into());
            }
        }
        let mut seen = HashSet::new();
        for (n, endpoint) in self.endpoints.iter().enumerate() {
            if let Err(message) = self.check_url(&endpoint.url) {
                return invalid(KEY, format!("entry {n}: {message}"));
            }
            if !seen.insert(endpoint.url.as_str()) {
                return invalid(KEY, format!("entry {n}: the same url is listed twice"));
            }
            if endpoint.secret.expose().is_empty() {
                return invalid(KEY, format!("entry {n}: secret must not be empty"));
            }
            if let Some(events) = &endpoint.events {
                if events.is_empty() {
                    return invalid(
                        KEY,
                        format!(
                            "entry {n}: events must name at least one event, or be left out for all"
                        ),
                    );
                }
                if let Some(unknown) = events.iter().find(|e| e.parse::<EventType>().is_err()) {
                    let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                    return invalid(
                        KEY,
                        format!(
                            "entry {n}: unknown event {unknown:?} (known: {})",
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// https only, and no literal address outside the public internet, unless
    /// `allow_insecure`. Names are checked after resolution, at each delivery.
    fn check_url(&self, text: &str) -> Result<(), String> {
        // The outbox keys rows by URL in a column of this size.
        if text.len() > 2048 {
            return Err("url is longer than 2048 bytes".into());
        }
        let url = Url::parse(text).map_err(|e| format!("url is not a URL ({e})"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_insecure => {}
            _ => return Err("url must be https (http only with webhooks.allow_insecure)".into()),
        }
        // The URL parser writes every IPv4 spelling (`0x7f.1`, `2130706433`) as dotted decimal
        // and IPv6 in brackets, so a literal address is recognised however it was written.
        let Some(host) = url.host_str() else {
            return Err("url has no host".into());
        };
        let ip: Option<IpAddr> = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok();
        if let Some(ip) = ip
            && !self.allow_insecure
            && !is_public_ip(ip)
        {
            return Err(format!(
                "url's address {ip} is not public (loopback, private, link-local, CGNAT, \
                 unspecified, multicast or reserved); allowed only with webhooks.allow_insecure"
            ));
        }
        Ok(())
    }
}

/// A YAML list of `{url, secret, events?}`, or a string holding that list as JSON.
fn endpoints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EndpointConf>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    let value = match value {
        serde_json::Value::String(text) if text.trim().is_empty() => return Ok(Vec::new()),
        // Syntax errors are reported by position only: the text may hold a secret.
        serde_json::Value::String(text) => serde_json::from_str(&text).map_err(|e| {
            D::Error::custom(format!(
                "{KEY}: not a JSON list (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?,
        other => other,
    };
    serde_json::from_value(value).map_err(|e| {
        D::Error::custom(format!(
            "{KEY}: must be a list of {{url, secret, events?}}: {}",
            redact(&e.to_string())
        ))
    })
}

/// serde's "invalid type: string \"…\"" quotes the value, which may be a secret put in the
/// wrong place; keep the message, drop the quoted text.
fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        match c {
            '"' if !quoted => {
                quoted = true;
                out.push_str("\"…");
            }
            '"' => {
                quoted = false;
                out.push('"');
            }
            _ if quoted => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{biz::EventType, conf::Config};

    fn load(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let vars = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        Config::load_with(&configs, None, vars).map_err(|e| e.to_string())
    }

    fn endpoints(json: &str) -> Result<Config, String> {
        load(&[("QRUPLOAD__WEBHOOKS__ENDPOINTS", json)])
    }

    #[test]
    fn defaults_are_no_endpoints_a_day_and_secure() {
        let c = load(&[]).expect("defaults load");
        assert!(c.webhooks.endpoints.is_empty());
        assert_eq!(c.webhooks.max_age.as_secs(), 24 * 3600);
        assert!(!c.webhooks.allow_insecure);
        assert_eq!(c.webhooks.retry_base.as_secs(), 5);
        assert_eq!(c.webhooks.timeout.as_secs(), 5);
    }

    #[test]
    fn endpoints_come_from_one_json_variable_and_hide_the_secret() {
        let c = endpoints(
            r#"[{"url":"https://hooks.example.com/a","secret":"whsec_abc"},
                {"url":"https://hooks.example.com/b","secret":"whsec_def","events":["session.completed","image.added"]}]"#,
        )
        .expect("loads");
        let routes = c.webhooks.routes();
        assert_eq!(routes.endpoints.len(), 2);
        assert_eq!(routes.endpoints[0].1, None);
        assert_eq!(
            routes.endpoints[1].1,
            Some(vec![EventType::SessionCompleted, EventType::ImageAdded])
        );
        let debug = format!("{c:?}");
        assert!(!debug.contains("whsec_abc") && !debug.contains("whsec_def"));
    }

    #[test]
    fn an_unknown_event_stops_start_up_naming_the_key() {
        let e = endpoints(
            r#"[{"url":"https://hooks.example.com","secret":"s","events":["session.finished"]}]"#,
        )
        .expect_err("refused");
        assert!(e.contains("webhooks.endpoints"), "{e}");
        assert!(e.contains("session.finished"), "{e}");
    }

    #[test]
    fn malformed_lists_are_refused_without_echoing_their_text() {
        let e = endpoints(r#"[{"url":"https://h.example.com","secret":"topsecret""#)
            .expect_err("refused");
        assert!(
            e.contains("webhooks.endpoints") && !e.contains("topsecret"),
            "{e}"
        );
        let e = endpoints(r#"{"url":"https://h.example.com","secret":"topsecret"}"#)
            .expect_err("refused");
        assert!(
            e.contains("webhooks.endpoints") && !e.contains("topsecret"),
            "{e}"
        );
        let e = endpoints(r#"[{"url":"https://h.example.com"}]"#).expect_err("refused");
        assert!(e.contains("secret"), "{e}");
    }

    #[test]
    fn only_https_to_public_literal_addresses_unless_insecure() {
        for url in [
            "http://hooks.example.com/",
            "ftp://hooks.example.com/",
            "https://127.0.0.1/",
            "https://0x7f.1/",
            "https://2130706433/",
            "https://10.0.0.8/",
            "https://172.20.1.1/",
            "https://192.168.0.10/",
            "https://169.254.169.254/latest/meta-data/",
            "https://100.64.1.1/",
            "https://0.0.0.0/",
            "https://224.0.0.251/",
            "https://[::1]/",
            "https://[::]/",
            "https://[fe80::1]/",
            "https://[fd00::5]/",
            "https://[ff02::1]/",
            "https://[::ffff:10.0.0.1]/",
            &format!("https://hooks.example.com/{}", "a".repeat(2048)),
        ] {
            let json = format!(r#"[{{"url":"{url}","secret":"s"}}]"#);
            let e = endpoints(&json).expect_err(url);
            assert!(e.contains("webhooks.endpoints"), "{url}: {e}");
        }
        endpoints(r#"[{"url":"https://93.184.215.14/hook","secret":"s"}]"#).expect("public");
        load(&[
            (
                "QRUPLOAD__WEBHOOKS__ENDPOINTS",
                r#"[{"url":"http://127.0.0.1:9/hook","secret":"s"}]"#,
            ),
            ("QRUPLOAD__WEBHOOKS__ALLOW_INSECURE", "true"),
        ])
        .expect("allowed in development");
    }

    #[test]
    fn endpoints_read_from_a_yaml_list_too() {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/config.yaml");
        std::fs::copy(base, dir.path().join("config.yaml")).expect("copy");
        std::fs::write(
            dir.path().join("staging.yaml"),
            "webhooks:\n  endpoints:\n    - url: https://hooks.example.com/q\n      secret: whsec_y\n      events: [session.created]\n  max_age: 2h\n",
        )
        .expect("overlay");
        let c = Config::load_with(dir.path(), Some("staging"), Vec::new()).expect("loads");
        assert_eq!(c.webhooks.endpoints[0].url, "https://hooks.example.com/q");
        assert_eq!(c.webhooks.endpoints[0].secret.expose(), "whsec_y");
        assert_eq!(
            c.webhooks.endpoints[0].event_types(),
            Some(vec![EventType::SessionCreated])
        );
        assert_eq!(c.webhooks.max_age.as_secs(), 7200);
    }
}
